/* The range functions of low-bit storage (lowbit_impl.h), for every instruction set and param dtype, in one table.
 * Each instruction set is a `#pragma GCC target` region, as for the bodies (instances.h). */
#include "lowbit.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,prefer-vector-width=512")
#define LB_LANES 16 /* the 8-bit decode's vectors of intrinsics, in float32 lanes (0: none) */
#else
#define LB_LANES 0
#endif
#define ISA avx512
#include "lowbit_types.h"
#undef ISA
#undef LB_LANES
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define LB_LANES 8
#else
#define LB_LANES 0
#endif
#define ISA avx2
#include "lowbit_types.h"
#undef ISA
#undef LB_LANES
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC pop_options
#endif
#define ISA base
#define LB_LANES 0
#include "lowbit_types.h"
#undef ISA
#undef LB_LANES

const range_fn lowbit_table[N_ISA][3] = {
    {lowbit_avx512_f32, lowbit_avx512_bf16, lowbit_avx512_f16},
    {lowbit_avx2_f32, lowbit_avx2_bf16, lowbit_avx2_f16},
    {lowbit_base_f32, lowbit_base_bf16, lowbit_base_f16},
};
