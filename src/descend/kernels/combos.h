/* Includes IMPL once per storage combination (see common.h), defining for each:
 *   PT, ST: the storage types of params (and grads) and of the state; CT: the compute type;
 *   LDP/STP, LDS/STS: load to CT and store from CT (rounding to nearest even for 16-bit types); STS(x, i, s) stores
 *   the value x of element i of state slot s, so that a combination rounding stochastically takes its random bits
 *   from the stream (lowbit.h) at that element and slot, which KSTREAM (in every body's KPROLOGUE) keys;
 *   SQRT, ABS: the correctly rounded square root and the absolute value in CT; NEG(x, s): x with its sign bit xor-ed with s (SIGN_T, SIGN_BIT).
 */
#define CT float
#define KSTREAM (void)0
#define SQRT __builtin_sqrtf
#define SIGN_T uint32_t
#define SIGN_BIT 0x80000000u
#define NEG(x, s) neg_if_f32((x), (s))
#define ABS __builtin_fabsf

#define COMBO f32
#define PT float
#define ST float
#define LDP(x) (x)
#define STP(x) (x)
#define LDS(x) (x)
#define STS(x, i, s) (x)
#include IMPL
#undef COMBO
#undef PT
#undef ST
#undef LDP
#undef STP
#undef LDS
#undef STS

#define COMBO bf16
#define PT bf16_t
#define ST bf16_t
#define LDP(x) bf16_load(x)
#define STP(x) bf16_store(x)
#define LDS(x) bf16_load(x)
#define STS(x, i, s) bf16_store(x)
#include IMPL
#undef COMBO
#undef ST
#undef LDS
#undef STS

#define COMBO bf16_f32
#define ST float
#define LDS(x) (x)
#define STS(x, i, s) (x)
#include IMPL
#undef COMBO
#undef PT
#undef ST
#undef LDP
#undef STP
#undef LDS
#undef STS

#define COMBO f16
#define PT f16_t
#define ST f16_t
#define LDP(x) f16_load(x)
#define STP(x) f16_store(x)
#define LDS(x) f16_load(x)
#define STS(x, i, s) f16_store(x)
#include IMPL
#undef COMBO
#undef ST
#undef LDS
#undef STS

#define COMBO f16_f32
#define ST float
#define LDS(x) (x)
#define STS(x, i, s) (x)
#include IMPL
#undef COMBO
#undef PT
#undef ST
#undef LDP
#undef STP
#undef LDS
#undef STS

/* bfloat16 state for float32 params, rounded to nearest even; then rounded stochastically, for float32 and bfloat16
 * params (the low-bit formats of descend.lowbit, chosen by the module for a job with low-bit storage). */
#define LOWBIT_COMBO /* these three are the low-bit storage of descend.lowbit, which a shaped body does not keep */
#define COMBO f32_bf16
#define PT float
#define ST bf16_t
#define LDP(x) (x)
#define STP(x) (x)
#define LDS(x) bf16_load(x)
#define STS(x, i, s) bf16_store(x)
#include IMPL
#undef COMBO
#undef STS

#undef KSTREAM
#define KSTREAM                                                                                                     \
    const uint32_t kstream0 = stream_key(j->seed, j->step, (uint64_t)j->ids[t], (uint32_t)((uint64_t)lo >> 32), 0); \
    const uint32_t kstream1 = stream_key(j->seed, j->step, (uint64_t)j->ids[t], (uint32_t)((uint64_t)lo >> 32), 1); \
    (void)kstream0;                                                                                                 \
    (void)kstream1
/* 16 random bits for element i of slot s: word s / 2 of the stream, its low or high half. */
#define KRAND16(i, s) ((lowbias32((uint32_t)(i) + ((s) >> 1 ? kstream1 : kstream0)) >> (((s) & 1) * 16)) & 0xFFFFu)
#define COMBO f32_bf16sr
#define STS(x, i, s) ((bf16_t){bf16_bits_sr((x), KRAND16((i), (s)))})
#include IMPL
#undef COMBO
#undef PT
#undef LDP
#undef STP

#define COMBO bf16_bf16sr
#define PT bf16_t
#define LDP(x) bf16_load(x)
#define STP(x) bf16_store(x)
#include IMPL
#undef COMBO
#undef PT
#undef ST
#undef LDP
#undef STP
#undef LDS
#undef STS
#undef KRAND16
#undef KSTREAM
#define KSTREAM (void)0
#undef LOWBIT_COMBO

#undef CT
#undef SQRT
#undef SIGN_T
#undef SIGN_BIT
#undef NEG
#undef ABS

#define CT double
#define SQRT __builtin_sqrt
#define SIGN_T uint64_t
#define SIGN_BIT 0x8000000000000000ull
#define NEG(x, s) neg_if_f64((x), (s))
#define ABS __builtin_fabs
#define COMBO f64
#define PT double
#define ST double
#define LDP(x) (x)
#define STP(x) (x)
#define LDS(x) (x)
#define STS(x, i, s) (x)
#include IMPL
#undef COMBO
#undef PT
#undef ST
#undef LDP
#undef STP
#undef LDS
#undef STS
#undef CT
#undef SQRT
#undef SIGN_T
#undef SIGN_BIT
#undef NEG
#undef ABS
#undef KSTREAM
