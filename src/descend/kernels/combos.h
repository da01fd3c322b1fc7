/* Includes IMPL once per storage combination (see common.h), defining for each:
 *   PT, ST: the storage types of params (and grads) and of the state; CT: the compute type;
 *   LDP/STP, LDS/STS: load to CT and store from CT (rounding to nearest even for 16-bit types);
 *   SQRT, ABS: the correctly rounded square root and the absolute value in CT; NEG(x, s): x with its sign bit xor-ed with s (SIGN_T, SIGN_BIT).
 */
#define CT float
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
#define STS(x) (x)
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
#define STS(x) bf16_store(x)
#include IMPL
#undef COMBO
#undef ST
#undef LDS
#undef STS

#define COMBO bf16_f32
#define ST float
#define LDS(x) (x)
#define STS(x) (x)
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
#define STS(x) f16_store(x)
#include IMPL
#undef COMBO
#undef ST
#undef LDS
#undef STS

#define COMBO f16_f32
#define ST float
#define LDS(x) (x)
#define STS(x) (x)
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
#define STS(x) (x)
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
