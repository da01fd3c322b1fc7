#ifndef DESCEND_TORCH_PTR_H
#define DESCEND_TORCH_PTR_H
#include <Python.h>

#ifdef __cplusplus
extern "C" {
#endif

/* torch's reader of a tensor's data pointer from its Python object (see torch_ptr.cpp). */
typedef void *(*data_ptr_reader)(PyObject *);

/* *out = reader(tensor): 0, or -1 if the reader threw (nothing is set, no Python exception). */
int read_data_ptr(data_ptr_reader reader, PyObject *tensor, void **out)
#ifdef __cplusplus
    noexcept
#endif
    ;

/* A function of torch's reading one flag of a tensor from a pointer to its at::Tensor (at::native::is_neg). */
#ifdef __cplusplus
typedef bool (*tensor_flag_fn)(const void *);
#else
typedef _Bool (*tensor_flag_fn)(const void *);
#endif

/* *out = fn(tensor) as 0 or 1: 0, or -1 if fn threw (nothing is set, no Python exception). */
int read_tensor_flag(tensor_flag_fn fn, const void *tensor, int *out)
#ifdef __cplusplus
    noexcept
#endif
    ;

/* A function of torch's advancing a tensor's autograd version, from a pointer to its at::Tensor
 * (torch::autograd::impl::bump_version). */
typedef void (*tensor_bump_fn)(const void *);

/* fn(tensor): 0, or -1 if fn threw (a tensor made under inference mode has no version). */
int bump_tensor(tensor_bump_fn fn, const void *tensor)
#ifdef __cplusplus
    noexcept
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
