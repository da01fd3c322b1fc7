/* The non-finite check of nan_policy "skip" and "raise": which tensor, if any, holds a NaN or an infinity.
 *
 * It reads each gradient once and tests the exponent bits (all ones means NaN or infinity), so it needs no
 * floating-point arithmetic and works alike for float64, float32, bfloat16 and float16. Large tensors are split
 * across threads; the GIL is released by the caller.
 */
#include <stdint.h>

#include "finite.h"

#define SPLIT ((int64_t)1 << 16)

#define ANY_EXPONENT_ONES(T, MASK)                                                                                   \
    static int any_##T(const T *x, int64_t n, int threads) {                                                         \
        int hit = 0;                                                                                                 \
        if (n < SPLIT || threads <= 1) {                                                                             \
            for (int64_t i = 0; i < n; i++) hit |= (x[i] & (MASK)) == (MASK);                                       \
            return hit;                                                                                              \
        }                                                                                                            \
        _Pragma("omp parallel for reduction(|:hit) schedule(static) num_threads(threads)")                          \
        for (int64_t i = 0; i < n; i++) hit |= (x[i] & (MASK)) == (MASK);                                           \
        return hit;                                                                                                  \
    }

ANY_EXPONENT_ONES(uint64_t, UINT64_C(0x7FF0000000000000))
ANY_EXPONENT_ONES(uint32_t, UINT32_C(0x7F800000))

static int any_half(const uint16_t *x, int64_t n, int threads, uint16_t mask) {
    int hit = 0;
    if (n < SPLIT || threads <= 1) {
        for (int64_t i = 0; i < n; i++) hit |= (x[i] & mask) == mask;
        return hit;
    }
#pragma omp parallel for reduction(| : hit) schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; i++) hit |= (x[i] & mask) == mask;
    return hit;
}

int64_t first_nonfinite(void *const *ptrs, const int64_t *sizes, int64_t count, int kind, int threads) {
    for (int64_t k = 0; k < count; k++) {
        int hit;
        switch (kind) {
        case FINITE_F64: hit = any_uint64_t((const uint64_t *)ptrs[k], sizes[k], threads); break;
        case FINITE_F32: hit = any_uint32_t((const uint32_t *)ptrs[k], sizes[k], threads); break;
        case FINITE_BF16: hit = any_half((const uint16_t *)ptrs[k], sizes[k], threads, 0x7F80u); break;
        default: hit = any_half((const uint16_t *)ptrs[k], sizes[k], threads, 0x7C00u); break;
        }
        if (hit) return k;
    }
    return -1;
}
