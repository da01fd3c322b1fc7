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

#ifdef __cplusplus
}
#endif
#endif
