/* lowbit_impl.h once per param dtype, for the instruction set ISA (lowbit.c). */
#define LB_PT f32
#define LB_IS_F32 1
#define LB_IS_BF16 0
#include "lowbit_impl.h"
#undef LB_PT
#undef LB_IS_F32
#undef LB_IS_BF16

#define LB_PT bf16
#define LB_IS_F32 0
#define LB_IS_BF16 1
#include "lowbit_impl.h"
#undef LB_PT
#undef LB_IS_F32
#undef LB_IS_BF16

#define LB_PT f16
#define LB_IS_F32 0
#define LB_IS_BF16 0
#include "lowbit_impl.h"
#undef LB_PT
#undef LB_IS_F32
#undef LB_IS_BF16
