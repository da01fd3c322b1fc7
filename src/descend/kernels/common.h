/* Shared declarations of the fused kernels: the job a step hands to the range functions, the storage types and
 * their conversions to the compute type.
 *
 * A range function updates elements [lo, hi) of tensor t of a job. It is instantiated once per instruction set and
 * per storage combination (instances.h, combos.h); the module (_fused.c) splits the work into chunks and picks the
 * instantiation at run time. A shaped body (one whose rule reduces over whole tensors, as Adafactor's means) has
 * instead a function that updates every tensor of a job, threads included, and two that say which state slots a
 * tensor of a given shape has and how much scratch memory a call needs (shaped_fn, slot_size_fn, scratch_fn).
 *
 * Every conversion here is exact or rounds to nearest even, and no arithmetic is reordered: the build uses
 * -ffp-contract=off and no fast-math, so each C expression rounds exactly as the NumPy reference does.
 */
#ifndef DESCEND_KERNELS_COMMON_H
#define DESCEND_KERNELS_COMMON_H

#include <stdint.h>
#include <string.h>

#include "interface.h"

#define MAX_STATES 3
#define MAX_VALUES 16

typedef struct job_s job_t;
typedef void (*range_fn)(const job_t *job, int t, int64_t lo, int64_t hi);

/* Low-bit storage (lowbit.h): how the state is stored, and how 16-bit params are rounded. */
enum { SFMT_F32 = 0, SFMT_BF16 = 1, SFMT_Q8 = 2 };
enum { PMODE_NEAREST = 0, PMODE_STOCHASTIC = 1, PMODE_KAHAN = 2 };
#define Q8_BLOCK 256 /* elements per block of the 8-bit format, each block with its own scale */

struct job_s {
    int n;                      /* tensors */
    const int64_t *offsets;     /* n + 1 prefix sums of the sizes */
    void *const *param;         /* n pointers each */
    const void *const *grad;
    void *const *state[MAX_STATES]; /* NULL where the algorithm does not use the slot */
    unsigned flags;             /* algorithm-specific bits, see the family sources */
    double values[MAX_VALUES];  /* scalars, already rounded to the compute dtype on the host */
    /* Low-bit storage, read by lowbit.c only (lowbit 0: the body runs on the arrays as they are). */
    int lowbit;
    int state_format;           /* SFMT_*: float32, bfloat16 or the 8-bit blockwise format */
    int stochastic;             /* state stores round stochastically (else to nearest even) */
    int param_mode;             /* PMODE_*: how 16-bit params are stored */
    unsigned nonneg;            /* bit s: slot s is never negative (the 8-bit format keeps no sign for it) */
    int64_t align;              /* a range handed to the range function starts and ends at a multiple of this
                                   within its tensor, or at the tensor's end (the 8-bit blocks) */
    int split32;                /* ranges are cut where the index's high 32 bits change (a body keying the stream) */
    uint64_t seed, step;        /* the random stream's seed and position */
    const int64_t *ids;         /* per tensor, the parameter's number in the stream's key */
    void *const *scale[MAX_STATES]; /* 8-bit: per tensor, the float32 scale of each block of each slot */
    void *const *comp;          /* PMODE_KAHAN: per tensor, the compensation buffer (the param's dtype) */
    range_fn inner;             /* the body with float32 state for the param dtype */
    range_fn inner_f32;         /* the body with float32 params, grads and state */
    const int64_t *dims;        /* shaped bodies: per tensor (ndim, batch, rows, columns), see SHAPE_DIMS */
};

/* A shaped body sees tensor t as dims[4t .. 4t+3] = (ndim, B, m, n): with two dimensions or more, B matrices of m
 * rows and n columns (the leading dimensions flattened); with fewer, one row of n elements (B = m = 1). */
#define SHAPE_DIMS 4
/* Runs a shaped job with `threads` threads and the scratch memory scratch_fn asked for. */
typedef void (*shaped_fn)(const job_t *job, void *scratch, int threads);
/* The elements state slot `slot` has for a tensor of dims (ndim, B, m, n), or -1 where such a tensor has none. */
typedef int64_t (*slot_size_fn)(int slot, const int64_t *dims);
/* The bytes of scratch memory a shaped job needs with `threads` threads and a compute type of ct_bytes bytes. */
typedef size_t (*scratch_fn)(const job_t *job, int threads, int ct_bytes);

/* Instruction sets, best first, and storage combinations (param and grad dtype, state dtype). */
enum { ISA_AVX512 = 0, ISA_AVX2 = 1, ISA_BASE = 2, N_ISA = 3 };
enum {
    COMBO_F32 = 0,      /* float32 params, grads and state */
    COMBO_F64 = 1,      /* float64 everywhere, float64 math */
    COMBO_BF16 = 2,     /* bfloat16 params, grads and state, float32 math */
    COMBO_BF16_F32 = 3, /* bfloat16 params and grads, float32 state */
    COMBO_F16 = 4,      /* float16 params, grads and state, float32 math */
    COMBO_F16_F32 = 5,  /* float16 params and grads, float32 state */
    COMBO_F32_BF16 = 6, /* float32 params and grads, bfloat16 state (low-bit storage, to nearest even) */
    COMBO_F32_BF16SR = 7,  /* float32 params and grads, bfloat16 state rounded stochastically */
    COMBO_BF16_BF16SR = 8, /* bfloat16 params, grads and state, the state rounded stochastically */
    N_COMBO = 9
};

typedef struct { uint16_t bits; } bf16_t;
typedef struct { uint16_t bits; } f16_t;

static inline __attribute__((always_inline)) uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline __attribute__((always_inline)) float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline __attribute__((always_inline)) uint64_t f64_bits(double f) {
    uint64_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline __attribute__((always_inline)) double f64_from_bits(uint64_t u) {
    double f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* -x as NumPy's negative computes it (the sign bit flipped), selected without a branch. */
static inline __attribute__((always_inline)) float neg_if_f32(float x, uint32_t sign) {
    return f32_from_bits(f32_bits(x) ^ sign);
}

static inline __attribute__((always_inline)) double neg_if_f64(double x, uint64_t sign) {
    return f64_from_bits(f64_bits(x) ^ sign);
}

static inline __attribute__((always_inline)) float bf16_load(bf16_t h) {
    return f32_from_bits((uint32_t)h.bits << 16);
}

/* Round to nearest even, as torch's c10::BFloat16 does; NaN becomes the canonical quiet NaN 0x7FC0. */
static inline __attribute__((always_inline)) bf16_t bf16_store(float f) {
    uint32_t u = f32_bits(f);
    uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    bf16_t h = {(uint16_t)(f != f ? 0x7FC0u : rounded)};
    return h;
}

/* IEEE half to float, exact (normal, subnormal, zero, inf and NaN), without branches. */
static inline __attribute__((always_inline)) float f16_load(f16_t h) {
    const uint32_t w = (uint32_t)h.bits << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = f32_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t magnitude = two_w < (1u << 27) ? f32_bits(denormalized) : f32_bits(normalized);
    return f32_from_bits(sign | magnitude);
}

/* Float to IEEE half, rounding to nearest even (overflow to inf, gradual underflow), without branches. */
static inline __attribute__((always_inline)) f16_t f16_store(float f) {
    float base = (__builtin_fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    bias = bias < 0x71000000u ? 0x71000000u : bias;
    base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_bits(base);
    const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
    f16_t h = {(uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign))};
    return h;
}

/* NumPy's maximum: the first argument if it is NaN or not smaller, else the second (so NaN propagates). */
#define NP_MAXIMUM(a, b) (((a) >= (b) || (a) != (a)) ? (a) : (b))

/* The range functions of one algorithm, [ISA][combo], in the order of the enums above. */
#define TABLE_ROW(alg, isa)                                                                                    \
    { alg##_##isa##_f32, alg##_##isa##_f64, alg##_##isa##_bf16, alg##_##isa##_bf16_f32, alg##_##isa##_f16,    \
      alg##_##isa##_f16_f32, alg##_##isa##_f32_bf16, alg##_##isa##_f32_bf16sr, alg##_##isa##_bf16_bf16sr }
#define DEFINE_TABLE(alg) const range_fn alg##_table[N_ISA][N_COMBO] = \
    {TABLE_ROW(alg, avx512), TABLE_ROW(alg, avx2), TABLE_ROW(alg, base)}
/* A shaped body keeps no low-bit state (combos.h skips it for those combinations, LOWBIT_COMBO): NULL there. */
#define SHAPED_TABLE_ROW(alg, isa)                                                                             \
    { alg##_##isa##_f32, alg##_##isa##_f64, alg##_##isa##_bf16, alg##_##isa##_bf16_f32, alg##_##isa##_f16,    \
      alg##_##isa##_f16_f32, NULL, NULL, NULL }
#define DEFINE_SHAPED_TABLE(alg) const shaped_fn alg##_table[N_ISA][N_COMBO] = \
    {SHAPED_TABLE_ROW(alg, avx512), SHAPED_TABLE_ROW(alg, avx2), SHAPED_TABLE_ROW(alg, base)}

/* Calls F(args..., k) with k the constant equal to f, for f < 2, 4, 8 or 16: each flag combination gets its own
 * loop with the flags folded in, so no branch is left inside the vectorised loops. */
#define KCASE(F, k, ...) \
    case k:              \
        F(__VA_ARGS__, k##u); break;
#define SWITCH2(F, f, ...) switch (f) { KCASE(F, 0, __VA_ARGS__) KCASE(F, 1, __VA_ARGS__) default: break; }
#define SWITCH4(F, f, ...)                                                                                     \
    switch (f) {                                                                                               \
        KCASE(F, 0, __VA_ARGS__) KCASE(F, 1, __VA_ARGS__) KCASE(F, 2, __VA_ARGS__) KCASE(F, 3, __VA_ARGS__)    \
        default: break;                                                                                        \
    }
#define SWITCH8(F, f, ...)                                                                                     \
    switch (f) {                                                                                               \
        KCASE(F, 0, __VA_ARGS__) KCASE(F, 1, __VA_ARGS__) KCASE(F, 2, __VA_ARGS__) KCASE(F, 3, __VA_ARGS__)    \
        KCASE(F, 4, __VA_ARGS__) KCASE(F, 5, __VA_ARGS__) KCASE(F, 6, __VA_ARGS__) KCASE(F, 7, __VA_ARGS__)    \
        default: break;                                                                                        \
    }
#define SWITCH16(F, f, ...)                                                                                    \
    switch (f) {                                                                                               \
        KCASE(F, 0, __VA_ARGS__) KCASE(F, 1, __VA_ARGS__) KCASE(F, 2, __VA_ARGS__) KCASE(F, 3, __VA_ARGS__)    \
        KCASE(F, 4, __VA_ARGS__) KCASE(F, 5, __VA_ARGS__) KCASE(F, 6, __VA_ARGS__) KCASE(F, 7, __VA_ARGS__)    \
        KCASE(F, 8, __VA_ARGS__) KCASE(F, 9, __VA_ARGS__) KCASE(F, 10, __VA_ARGS__) KCASE(F, 11, __VA_ARGS__)  \
        KCASE(F, 12, __VA_ARGS__) KCASE(F, 13, __VA_ARGS__) KCASE(F, 14, __VA_ARGS__) KCASE(F, 15, __VA_ARGS__) \
        default: break;                                                                                        \
    }

/* Opens every loop body: the param and grad pointers of tensor t, and the sign that flips the gradient under
 * maximize (flag bit 0 of every algorithm). */
#define KPROLOGUE                                      \
    PT *restrict p = (PT *)j->param[t];                \
    const PT *restrict g = (const PT *)j->grad[t];     \
    const SIGN_T sign = (j->flags & 1u) ? SIGN_BIT : 0; \
    KSTREAM
#define KINLINE static inline __attribute__((always_inline)) void
/* A body's scalar `name`, in the compute type, and its state slot `name` of tensor t (indices from interface.h). */
#define VAL(body, name) ((CT)j->values[body##_v_##name])
#define SLOT(body, name) ((ST *)j->state[body##_s_##name][t])
/* NumPy's sign: -1, 0 (for either zero) or 1, and NaN for NaN; written as three selects, which the compiler turns
 * into vector blends (the nested conditional it compiled to branches, which kept the whole loop scalar). */
#define KSIGN(x)                                            \
    __extension__({                                         \
        const CT ksign_x_ = (x);                            \
        CT ksign_s_ = ksign_x_ > 0 ? (CT)1 : (CT)0;         \
        ksign_s_ = ksign_x_ < 0 ? (CT)-1 : ksign_s_;        \
        ksign_x_ != ksign_x_ ? ksign_x_ : ksign_s_;         \
    })
#define KRANGE_ARGS const job_t *j, int t, int64_t lo, int64_t hi

/* Declares the table of every loop body named in the generated interface.h (from descend/kernels/_layout.py), and of
 * every shaped body with its two plain functions. */
#define DECLARE_TABLE(name) extern const range_fn name##_table[N_ISA][N_COMBO];
DESCEND_BODIES(DECLARE_TABLE)
#define DECLARE_SHAPED(name)                                         \
    extern const shaped_fn name##_table[N_ISA][N_COMBO];            \
    int64_t name##_slot_size(int slot, const int64_t *dims);        \
    size_t name##_scratch(const job_t *job, int threads, int ct_bytes);
DESCEND_SHAPED(DECLARE_SHAPED)

#endif
