/* Low-bit storage, element by element: the random stream, stochastic rounding to bfloat16, and the 8-bit blockwise
 * format. Each function restates one of descend/lowbit.py, which is the reference; the tests hold them equal bit for
 * bit.
 *
 * The stream. A store that rounds stochastically takes 16 random bits. They come from a counter-based stream keyed by
 * (seed, step, parameter, element index), so the bits do not depend on threads, chunks or the order of the work:
 * stream_key mixes (seed, step, parameter, high half of the index, word) into 32 bits with splitmix64's finaliser,
 * and each element's word is lowbias32(low half of the index + key). Word 0 serves slots 0 (low 16 bits) and 1
 * (high 16 bits), word 1 serves slot 2 (low) and the parameter (high).
 *
 * The 8-bit format. A block of Q8_BLOCK elements keeps a float32 scale, the power of two at or below its largest
 * magnitude, and one byte per element: the element divided by the scale (exactly, as the scale is a power of two) as a
 * small float with 3 mantissa bits. A slot that can be negative gets a sign bit and 4 exponent bits (magnitudes from
 * 2^-17 to 1.875, subnormal below 2^-14); a slot that cannot (a second moment) gets 5 exponent bits (2^-33 to 1.875,
 * subnormal below 2^-30). Rounding to it adds rounding bits below the third mantissa bit and truncates, as for
 * bfloat16: to nearest even, or stochastically with 16 random bits.
 */
#ifndef DESCEND_KERNELS_LOWBIT_H
#define DESCEND_KERNELS_LOWBIT_H

#include "common.h"

#define LB_INLINE static inline __attribute__((always_inline))

static inline uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The key of one word of the stream for the elements of a tensor whose index has high half `high`. */
static inline uint32_t stream_key(uint64_t seed, uint64_t step, uint64_t param, uint32_t high, uint32_t word) {
    uint64_t z = splitmix64_mix(seed ^ 0x9E3779B97F4A7C15ull);
    z = splitmix64_mix(z ^ step);
    z = splitmix64_mix(z ^ param);
    z = splitmix64_mix(z ^ (((uint64_t)high << 1) | word));
    return (uint32_t)z;
}

LB_INLINE uint32_t lowbias32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

/* bfloat16 by stochastic rounding: the 16 bits below bfloat16's precision are added to 16 random bits and dropped,
 * so a value rounds up with probability equal to its distance from the value below. NaN becomes 0x7FC0. */
LB_INLINE uint16_t bf16_bits_sr(float f, uint32_t r16) {
    const uint32_t u = f32_bits(f);
    return (uint16_t)(f != f ? 0x7FC0u : (u + r16) >> 16);
}

LB_INLINE uint16_t bf16_bits_rne(float f) {
    const uint32_t u = f32_bits(f);
    return (uint16_t)(f != f ? 0x7FC0u : (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* The 8-bit format's two maps: E exponent bits, bias 2^E - 1, codes c < 8 subnormal (c * 2^(emin - 3)), codes from 8
 * the float32 bits (c + Q8_OFF) << 20. */
#define Q8S_OFF ((127u - 15u) << 3)          /* signed: E = 4 */
#define Q8S_MIN_NORMAL ((127u - 15u + 1u) << 23) /* 2^-14 as float32 bits */
#define Q8S_MAX 127u
#define Q8U_OFF ((127u - 31u) << 3)          /* unsigned: E = 5 */
#define Q8U_MIN_NORMAL ((127u - 31u + 1u) << 23) /* 2^-30 */
#define Q8U_MAX 255u

/* The magnitude code of y in [0, 2) (finite): stochastically with 16 random bits r16, or to nearest even. Written
 * without a conditional floating-point operation (the compiler may not speculate one), so the loops vectorise: below
 * the normals y + 2^emin holds y's code, above them y + 0 is y. */
LB_INLINE uint32_t q8_magnitude(float y, uint32_t r16, int stochastic, uint32_t off, uint32_t min_normal,
                                uint32_t cmax) {
    const uint32_t sub = -(uint32_t)(y < f32_from_bits(min_normal));
    const uint32_t v = f32_bits(y + f32_from_bits(min_normal & sub));
    const uint32_t base = ((min_normal >> 20) & sub) | (off & ~sub);
    const uint32_t add = stochastic ? r16 << 4 : 0x7FFFFu + ((v >> 20) & 1u);
    const uint32_t c = ((v + add) >> 20) - base;
    return c > cmax ? cmax : c;
}

/* The maps as float16. A signed code (sign, 4 exponent bits, 3 mantissa bits) is a float16 whose exponent's top bit
 * is 0: its sign at bit 15 and the rest at bits 7..13 give its value exactly, subnormals included (float16's bias and
 * smallest normal are the signed map's). An unsigned code shifted left by 7 is a float16 with the same fields and a
 * bias 16 smaller, so its value is that float16's times Q8U_HALF_UNIT; the codes from Q8U_TOP have float16's infinity
 * exponent, and are read as the code 8 below (one binade lower, the same mantissa) times twice that. */
#define Q8U_HALF_UNIT 0x1.0p-16f
#define Q8U_TOP 248

LB_INLINE float q8_value(uint32_t c, uint32_t off, uint32_t min_normal) {
    const uint32_t sub = -(uint32_t)(c < 8u);
    const uint32_t small = f32_bits((float)(int32_t)(c & 7u) * (f32_from_bits(min_normal) * 0.125f));
    return f32_from_bits((small & sub) | (((c + off) << 20) & ~sub));
}

/* The scale of a block whose largest magnitude has float32 bits `maxbits` (NaN bits where it holds NaN or inf), as
 * float32 bits, and the bits of its inverse. */
LB_INLINE void q8_scale(uint32_t maxbits, uint32_t *scale, uint32_t *inverse) {
    if (maxbits >= 0x7F800000u) {
        *scale = 0x7FC00000u;
        *inverse = 0;
        return;
    }
    uint32_t e = maxbits >> 23;
    e = e == 0 ? 1 : e;
    *scale = e << 23;
    *inverse = e == 254 ? 0x00400000u : (254u - e) << 23;
}

/* lowbit.c: per instruction set, the range function for float32, bfloat16 and float16 params. */
extern const range_fn lowbit_table[N_ISA][3];

#endif
