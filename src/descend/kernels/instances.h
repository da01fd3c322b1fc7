/* Instantiates a family's range functions (the file named by IMPL) for every instruction set and storage
 * combination, then the family's table. Before including this, define IMPL (a header name) and FAMILY (the table's
 * name) and, in IMPL, one function per algorithm named with KNAME(alg).
 *
 * Each instruction set is a `#pragma GCC target` region, so the same C loops are vectorised for AVX-512, AVX2 or the
 * x86-64 baseline; the module picks one at run time. No FMA is formed: the build passes -ffp-contract=off. On
 * other architectures the three instantiations are the same portable code and the baseline is always chosen.
 */
#include "lowbit.h"

#define KCAT3(a, b, c) a##_##b##_##c
#define KCAT(a, b, c) KCAT3(a, b, c)
#define KNAME(alg) KCAT(alg, ISA, COMBO)

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,prefer-vector-width=512")
#endif
#define ISA avx512
#include "combos.h"
#undef ISA
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define ISA avx2
#include "combos.h"
#undef ISA
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC pop_options
#endif

#define ISA base
#include "combos.h"
#undef ISA
