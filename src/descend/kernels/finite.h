#ifndef DESCEND_FINITE_H
#define DESCEND_FINITE_H
#include <stdint.h>

enum { FINITE_F64, FINITE_F32, FINITE_BF16, FINITE_F16 };

/* The index of the first of `count` tensors holding a NaN or an infinity, or -1. */
int64_t first_nonfinite(void *const *ptrs, const int64_t *sizes, int64_t count, int kind, int threads);

#endif
