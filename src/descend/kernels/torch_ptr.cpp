/* The one C++ file of the kernels: calls into functions torch exports that report trouble with C++ exceptions,
 * made so that they cannot throw: the data-pointer reader, a tensor-flag reader (at::native::is_neg) and the
 * version counter's bump (torch::autograd::impl::bump_version).
 *
 * torch exports, as an integer address, the function its compiled wrappers use to read a tensor's data pointer from
 * its Python object (torch._C._dynamo.guards._torchinductor_pyobject_tensor_data_ptr). It is what tensor.data_ptr()
 * computes, without the Python method call, so the plan's checks (gather.c) use it where torch has it. It reports a
 * tensor it cannot read (one without storage, or one torch forbids writing through) with a C++ exception, which must
 * not cross the C code that calls it: here it becomes a return code, and the caller asks data_ptr() instead, which
 * raises the Python error. No torch header is needed.
 */
#include "torch_ptr.h"

extern "C" int read_data_ptr(data_ptr_reader reader, PyObject *tensor, void **out) noexcept {
    try {
        *out = reader(tensor);
        return 0;
    } catch (...) {
        return -1;
    }
}

extern "C" int read_tensor_flag(tensor_flag_fn fn, const void *tensor, int *out) noexcept {
    try {
        *out = fn(tensor) ? 1 : 0;
        return 0;
    } catch (...) {
        return -1;
    }
}

extern "C" int bump_tensor(tensor_bump_fn fn, const void *tensor) noexcept {
    try {
        fn(tensor);
        return 0;
    } catch (...) {
        return -1;
    }
}
