/* descend.kernels._fused: one call updates every tensor of a param group.
 *
 * The caller passes the algorithm, the storage combination, the flag bits and the host scalars (already rounded to
 * the compute dtype), and per tensor the param, the grad and the state slots, each as an address (an int, as torch's
 * data_ptr() gives) or as an object with the buffer protocol (a C-contiguous NumPy array). The tensors are seen as
 * one concatenated range cut into fixed-size chunks, and the chunks are shared among OpenMP threads, so many small
 * tensors cost about what one large one does. The GIL is released while the kernel runs.
 *
 * The loops are compiled for AVX-512, AVX2 and the x86-64 baseline; the best one the CPU supports is chosen when the
 * module loads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <omp.h>

#include "common.h"
#include "finite.h"
#include "fork.h"
#include "spans.h"
#include "gather.h"

#define CHUNK ((int64_t)1 << 15)

/* The loop bodies, numbered in the order of the generated DESCEND_BODIES (descend/kernels/_layout.py). */
#define BODY_ID(name) BODY_##name,
enum { DESCEND_BODIES(BODY_ID) N_ALG };
#define BODY_NAME(name) #name,
static const char *const alg_names[N_ALG] = {DESCEND_BODIES(BODY_NAME)};
#define BODY_TABLE(name) name##_table,
static const range_fn (*const tables[N_ALG])[N_COMBO] = {DESCEND_BODIES(BODY_TABLE)};
#define BODY_INTERFACE(name) name##_interface,
static const char *const alg_interfaces[N_ALG] = {DESCEND_BODIES(BODY_INTERFACE)};

static const char *const combo_names[N_COMBO] = {"float32", "float64", "bfloat16", "bfloat16+float32",
                                                 "float16", "float16+float32"};
/* Storage of params and grads, and of the state: item size and the buffer-protocol format character. */
static const int param_size[N_COMBO] = {4, 8, 2, 2, 2, 2};
static const int state_size[N_COMBO] = {4, 8, 2, 4, 2, 4};
static const char param_format[N_COMBO] = {'f', 'd', 0, 0, 'e', 'e'};
static const char state_format[N_COMBO] = {'f', 'd', 0, 'f', 'e', 'f'};

static const char *const isa_names[N_ISA] = {"avx512", "avx2", "baseline"};
static int best_isa = ISA_BASE;
static int current_isa = ISA_BASE;
static int default_threads = 0; /* 0: OpenMP's default */

static int detect_isa(void) {
#if !(defined(__x86_64__) || defined(__i386__))
    return ISA_BASE;
#else
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
    return ISA_BASE;
#endif
}

/* Runs fn over the global range [lo, hi) of the concatenated tensors. */
static void run_span(const job_t *job, range_fn fn, int64_t lo, int64_t hi) {
    const int64_t *off = job->offsets;
    int a = 0, b = job->n; /* first index k in [0, n] with off[k] > lo, minus one */
    while (a < b) {
        const int mid = (a + b) / 2;
        if (off[mid] <= lo) a = mid + 1; else b = mid;
    }
    int t = a - 1;
    while (lo < hi && t < job->n) {
        const int64_t end = off[t + 1] < hi ? off[t + 1] : hi;
        if (end > lo) fn(job, t, lo - off[t], end - off[t]);
        if (end > lo) lo = end;
        t++;
    }
}

static void run_job(const job_t *job, range_fn fn, int threads) {
    const int64_t total = job->offsets[job->n];
    const int64_t nchunks = (total + CHUNK - 1) / CHUNK;
    if (threads > nchunks) threads = (int)nchunks;
    if (threads <= 1) {
        if (total > 0) run_span(job, fn, 0, total);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t c = 0; c < nchunks; c++) {
        const int64_t lo = c * CHUNK;
        run_span(job, fn, lo, lo + CHUNK < total ? lo + CHUNK : total);
    }
}

static int effective_threads(int requested) {
    if (default_threads == FORK_CHILD_THREADS) return 1; /* a forked child, until set_num_threads: fork.h */
    if (requested > 0) return requested;
    if (default_threads > 0) return default_threads;
    return omp_get_max_threads();
}

/* Sets *ptr to the address of one item: an int, or a buffer whose view is kept in *view (released by the caller).
 * Returns 0, or -1 with an exception set. An empty tensor may have any address, null included. */
static char empty_tensor;

static int item_address(PyObject *item, Py_buffer *view, int writable, int itemsize, char format, int64_t *size,
                        const char *what, Py_ssize_t index, void **ptr) {
    if (PyLong_Check(item)) {
        *ptr = PyLong_AsVoidPtr(item);
        if (*ptr == NULL && PyErr_Occurred()) return -1;
        if (*ptr == NULL && *size != 0) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] is a null address", what, index);
            return -1;
        }
        if (*ptr == NULL) *ptr = &empty_tensor;
        else if ((uintptr_t)*ptr % (uintptr_t)itemsize) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] is not aligned to its item size %d", what, index, itemsize);
            return -1;
        }
        return 0;
    }
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(item, view, flags) != 0) {
        PyErr_Clear();
        view->obj = NULL;
        PyErr_Format(PyExc_ValueError, "%s[%zd] (%.80s) is not a C-contiguous%s buffer", what, index,
                     Py_TYPE(item)->tp_name, writable ? ", writable" : "");
        return -1;
    }
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@') fmt++;
    if (view->itemsize != itemsize || format == 0 || fmt[0] != format || fmt[1] != 0) {
        PyErr_Format(PyExc_TypeError, "%s[%zd] has item format '%s' of size %zd; expected '%c' of size %d", what,
                     index, view->format ? view->format : "B", view->itemsize, format ? format : '?', itemsize);
        return -1;
    }
    const int64_t n = (int64_t)(view->len / itemsize);
    if (*size < 0) {
        *size = n;
    } else if (n != *size) {
        PyErr_Format(PyExc_ValueError, "%s[%zd] has %lld elements, its parameter has %lld", what, index,
                     (long long)n, (long long)*size);
        return -1;
    }
    if (view->buf && n > 0 && (uintptr_t)view->buf % (uintptr_t)itemsize) { /* a load would be undefined */
        PyErr_Format(PyExc_ValueError, "%s[%zd] is not aligned to its item size %d", what, index, itemsize);
        return -1;
    }
    *ptr = view->buf ? view->buf : (void *)&empty_tensor;
    return 0;
}

/* One parsed call: the job, the function that runs it, and what must be released after it ran. */
typedef struct {
    job_t job;
    range_fn fn;
    int combo;
    PyObject *seqs[2 + MAX_STATES];
    int64_t *offsets;
    void **ptrs;
    Py_buffer *views;
    Py_ssize_t nviews;
} parsed_t;

static void parsed_release(parsed_t *pj) {
    for (Py_ssize_t k = 0; k < pj->nviews; k++) PyBuffer_Release(&pj->views[k]);
    PyMem_Free(pj->views);
    PyMem_Free(pj->ptrs);
    PyMem_Free(pj->offsets);
    for (int s = 0; s < 2 + MAX_STATES; s++) Py_XDECREF(pj->seqs[s]);
    memset(pj, 0, sizeof *pj);
}

/* Parses and checks one call (alg, combo, flags, values, params, grads, states, sizes) into *pj, which must be
 * zeroed. Returns 0, or -1 with an exception set (what was taken is released by parsed_release). */
static int parse_job(PyObject *args, parsed_t *pj) {
    int alg, combo;
    unsigned int flags;
    PyObject *values_obj, *params_obj, *grads_obj, *states_obj, *sizes_obj;
    if (!PyArg_ParseTuple(args, "iiIOOOOO", &alg, &combo, &flags, &values_obj, &params_obj, &grads_obj,
                          &states_obj, &sizes_obj))
        return -1;
    if (alg < 0 || alg >= N_ALG) {
        PyErr_Format(PyExc_ValueError, "unknown algorithm id %d", alg);
        return -1;
    }
    if (combo < 0 || combo >= N_COMBO) {
        PyErr_Format(PyExc_ValueError, "unknown dtype combination %d", combo);
        return -1;
    }
    job_t *job = &pj->job;
    job->flags = flags;
    pj->combo = combo;
    PyObject *values = PySequence_Fast(values_obj, "values must be a sequence of floats");
    if (!values) return -1;
    Py_ssize_t nvalues = PySequence_Fast_GET_SIZE(values);
    if (nvalues > MAX_VALUES) {
        Py_DECREF(values);
        PyErr_Format(PyExc_ValueError, "at most %d values, got %zd", MAX_VALUES, nvalues);
        return -1;
    }
    for (Py_ssize_t k = 0; k < nvalues; k++) {
        job->values[k] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(values, k));
    }
    Py_DECREF(values);
    if (PyErr_Occurred()) return -1;

    PyObject **seqs = pj->seqs;
    seqs[0] = PySequence_Fast(params_obj, "params must be a sequence");
    if (!seqs[0]) return -1;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seqs[0]);
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many tensors in one call");
        return -1;
    }
    seqs[1] = PySequence_Fast(grads_obj, "grads must be a sequence");
    if (!seqs[1]) return -1;
    PyObject *states = PySequence_Fast(states_obj, "states must be a sequence of up to 3 sequences or None");
    if (!states) return -1;
    if (PySequence_Fast_GET_SIZE(states) > MAX_STATES) {
        Py_DECREF(states);
        PyErr_Format(PyExc_ValueError, "at most %d state slots", MAX_STATES);
        return -1;
    }
    for (Py_ssize_t s = 0; s < PySequence_Fast_GET_SIZE(states); s++) {
        PyObject *slot = PySequence_Fast_GET_ITEM(states, s);
        if (slot == Py_None) continue;
        seqs[2 + s] = PySequence_Fast(slot, "each state slot must be a sequence or None");
        if (!seqs[2 + s]) {
            Py_DECREF(states);
            return -1;
        }
    }
    Py_DECREF(states);
    for (int s = 1; s < 2 + MAX_STATES; s++) {
        if (seqs[s] && PySequence_Fast_GET_SIZE(seqs[s]) != n) {
            PyErr_Format(PyExc_ValueError, "%s has %zd entries for %zd params", s == 1 ? "grads" : "a state slot",
                         PySequence_Fast_GET_SIZE(seqs[s]), n);
            return -1;
        }
    }
    PyObject *sizes = NULL;
    if (sizes_obj != Py_None) {
        sizes = PySequence_Fast(sizes_obj, "sizes must be a sequence of ints or None");
        if (!sizes) return -1;
        if (PySequence_Fast_GET_SIZE(sizes) != n) {
            Py_DECREF(sizes);
            PyErr_Format(PyExc_ValueError, "sizes has %zd entries for %zd params", PySequence_Fast_GET_SIZE(sizes), n);
            return -1;
        }
    }

    pj->offsets = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
    pj->ptrs = PyMem_Calloc((size_t)((2 + MAX_STATES) * n + 1), sizeof(void *));
    pj->views = PyMem_Calloc((size_t)((2 + MAX_STATES) * n + 1), sizeof(Py_buffer));
    if (!pj->offsets || !pj->ptrs || !pj->views) {
        Py_XDECREF(sizes);
        PyErr_NoMemory();
        return -1;
    }
    int64_t *offsets = pj->offsets;
    void **ptrs = pj->ptrs;
    offsets[0] = 0;
    for (Py_ssize_t t = 0; t < n; t++) {
        int64_t size = -1;
        if (sizes) {
            long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(sizes, t));
            if (v < 0) {
                if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "sizes[%zd] is negative: %lld", t, v);
                Py_DECREF(sizes);
                return -1;
            }
            size = v;
        }
        for (int s = 0; s < 2 + MAX_STATES; s++) {
            if (!seqs[s]) continue;
            static const char *const what[2 + MAX_STATES] = {"params", "grads", "states[0]", "states[1]",
                                                             "states[2]"};
            PyObject *item = PySequence_Fast_GET_ITEM(seqs[s], t);
            Py_buffer *view = &pj->views[pj->nviews];
            void *ptr = NULL;
            const int rc = item_address(item, view, s != 1, s < 2 ? param_size[combo] : state_size[combo],
                                        s < 2 ? param_format[combo] : state_format[combo], &size, what[s], t, &ptr);
            if (view->obj) pj->nviews++;
            if (rc != 0) {
                Py_XDECREF(sizes);
                return -1;
            }
            ptrs[s * n + t] = ptr;
        }
        if (size < 0) {
            PyErr_Format(PyExc_ValueError, "params[%zd] is an address, so sizes must be given", t);
            Py_XDECREF(sizes);
            return -1;
        }
        /* Every array of tensor t must have memory of its own: a gradient that is (part of) the memory being
         * written would be read after it changed, and two written arrays that overlap give order-dependent bits. */
        for (int a = 0; a < 2 + MAX_STATES && size > 0; a++) {
            if (!seqs[a]) continue;
            const char *lo_a = (const char *)ptrs[a * n + t];
            const char *hi_a = lo_a + size * (a < 2 ? param_size[combo] : state_size[combo]);
            for (int b = a + 1; b < 2 + MAX_STATES; b++) {
                if (!seqs[b] || (a == 1 && b == 1)) continue;
                const char *lo_b = (const char *)ptrs[b * n + t];
                const char *hi_b = lo_b + size * (b < 2 ? param_size[combo] : state_size[combo]);
                if (lo_a < hi_b && lo_b < hi_a) {
                    PyErr_Format(PyExc_ValueError, "the arrays of tensor %zd share memory (%s and %s)", t,
                                 a == 0 ? "param" : a == 1 ? "grad" : "a state slot", b == 1 ? "grad" : "a state slot");
                    Py_XDECREF(sizes);
                    return -1;
                }
            }
        }
        offsets[t + 1] = offsets[t] + size;
    }
    Py_XDECREF(sizes);

    job->n = (int)n;
    job->offsets = offsets;
    job->param = ptrs;
    job->grad = (const void *const *)(ptrs + n);
    for (int s = 0; s < MAX_STATES; s++) job->state[s] = seqs[2 + s] ? ptrs + (2 + s) * n : NULL;
    pj->fn = tables[alg][current_isa][combo];
    return 0;
}

static const char *slot_name(int slot) { return slot == 0 ? "param" : slot == 1 ? "grad" : "a state slot"; }

/* Across the tensors of every call of a run, no memory that is written may be another tensor's param, state or
 * gradient: the kernel's bits would depend on the order in which tensors and threads run, and differ from the
 * reference, which reads everything before it writes. (Within one tensor, parse_job checked it already.) Two
 * gradients may share memory: both are only read. Returns 0, or -1 with a ValueError set. */
static int check_disjoint(parsed_t *parsed, Py_ssize_t njobs) {
    size_t count = 0;
    for (Py_ssize_t j = 0; j < njobs; j++) {
        for (int s = 0; s < 2 + MAX_STATES; s++)
            if (parsed[j].seqs[s]) count += (size_t)parsed[j].job.n;
    }
    if (count < 2) return 0;
    span_t *spans = PyMem_Malloc(count * sizeof(span_t));
    if (!spans) {
        PyErr_NoMemory();
        return -1;
    }
    size_t m = 0;
    for (Py_ssize_t j = 0; j < njobs; j++) {
        const parsed_t *pj = &parsed[j];
        const Py_ssize_t n = pj->job.n;
        for (Py_ssize_t t = 0; t < n; t++) {
            const int64_t size = pj->offsets[t + 1] - pj->offsets[t];
            if (size <= 0) continue;
            for (int s = 0; s < 2 + MAX_STATES; s++) {
                if (!pj->seqs[s]) continue;
                const char *lo = (const char *)pj->ptrs[s * n + t];
                const int item = s < 2 ? param_size[pj->combo] : state_size[pj->combo];
                spans[m++] = (span_t){lo, lo + size * item, j, t, s};
            }
        }
    }
    if (sort_spans(spans, m) != 0) {
        PyMem_Free(spans);
        PyErr_NoMemory();
        return -1;
    }
    const span_t *first = NULL, *second = NULL;
    int rc = 0;
    if (shared_span(spans, m, &first, &second)) {
        PyErr_Format(PyExc_ValueError,
                     "tensor %zd of call %zd and tensor %zd of call %zd share memory (%s and %s); memory a step "
                     "writes must belong to one tensor",
                     first->tensor, first->job, second->tensor, second->job, slot_name(first->slot),
                     slot_name(second->slot));
        rc = -1;
    }
    PyMem_Free(spans);
    return rc;
}

/* run(jobs, threads): every job is parsed and checked before the first one runs, so a refusal changes nothing. */
static PyObject *fused_run(PyObject *self, PyObject *args) {
    PyObject *jobs_obj, *ran = NULL;
    int threads;
    if (!PyArg_ParseTuple(args, "Oi|O!", &jobs_obj, &threads, &PyList_Type, &ran)) return NULL;
    PyObject *jobs = PySequence_Fast(jobs_obj, "jobs must be a sequence of tuples");
    if (!jobs) return NULL;
    const Py_ssize_t njobs = PySequence_Fast_GET_SIZE(jobs);
    parsed_t *parsed = PyMem_Calloc((size_t)(njobs ? njobs : 1), sizeof(parsed_t));
    PyObject *result = NULL;
    if (!parsed) {
        Py_DECREF(jobs);
        return PyErr_NoMemory();
    }
    Py_ssize_t k = 0;
    for (; k < njobs; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(jobs, k);
        if (!PyTuple_Check(item)) {
            PyErr_Format(PyExc_TypeError, "jobs[%zd] must be a tuple", k);
            k++;
            goto done;
        }
        if (parse_job(item, &parsed[k]) != 0) {
            k++;
            goto done;
        }
    }
    if (check_disjoint(parsed, njobs) != 0) goto done;
    threads = effective_threads(threads);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < njobs; i++) run_job(&parsed[i].job, parsed[i].fn, threads);
    Py_END_ALLOW_THREADS
    /* Said before any Python code runs again, so a signal handler's exception cannot hide that the jobs ran. */
    if (ran && PyList_Append(ran, Py_True) != 0) goto done;
    result = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < k; i++) parsed_release(&parsed[i]);
    PyMem_Free(parsed);
    Py_DECREF(jobs);
    return result;
}

/* address(buffer): where a buffer's first element is (strided and read-only buffers included). */
static PyObject *fused_address(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_RECORDS_RO) != 0) return NULL;
    PyObject *result = PyLong_FromVoidPtr(view.buf);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *fused_set_num_threads(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0 || n > 4096) return PyErr_Format(PyExc_ValueError, "thread count must be in [0, 4096], got %ld", n);
    default_threads = (int)n;
    Py_RETURN_NONE;
}

static PyObject *fused_get_num_threads(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(effective_threads(0));
}

static PyObject *fused_isa(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(isa_names[current_isa]);
}

static PyObject *fused_set_isa(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    for (int k = 0; k < N_ISA; k++) {
        if (strcmp(name, isa_names[k]) == 0) {
            if (k < best_isa)
                return PyErr_Format(PyExc_ValueError, "this CPU does not support %s; the best it supports is %s",
                                    name, isa_names[best_isa]);
            current_isa = k;
            Py_RETURN_NONE;
        }
    }
    return PyErr_Format(PyExc_ValueError, "unknown instruction set %R; known: avx512, avx2, baseline", arg);
}

static PyObject *fused_first_nonfinite(PyObject *self, PyObject *args) {
    PyObject *addresses, *sizes_obj;
    int kind, threads;
    if (!PyArg_ParseTuple(args, "O!O!ii", &PyList_Type, &addresses, &PyList_Type, &sizes_obj, &kind, &threads))
        return NULL;
    const Py_ssize_t count = PyList_GET_SIZE(addresses);
    if (PyList_GET_SIZE(sizes_obj) != count)
        return PyErr_Format(PyExc_ValueError, "got %zd addresses and %zd sizes", count, PyList_GET_SIZE(sizes_obj));
    if (kind < FINITE_F64 || kind > FINITE_F16) return PyErr_Format(PyExc_ValueError, "unknown dtype kind %d", kind);
    void **ptrs = PyMem_Malloc(sizeof(void *) * (count ? count : 1));
    int64_t *sizes = PyMem_Malloc(sizeof(int64_t) * (count ? count : 1));
    if (!ptrs || !sizes) {
        PyMem_Free(ptrs);
        PyMem_Free(sizes);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        sizes[k] = PyLong_AsLongLong(PyList_GET_ITEM(sizes_obj, k));
        ptrs[k] = PyLong_AsVoidPtr(PyList_GET_ITEM(addresses, k));
        if (PyErr_Occurred() || sizes[k] < 0 || (ptrs[k] == NULL && sizes[k] > 0)) {
            PyMem_Free(ptrs);
            PyMem_Free(sizes);
            if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "tensor %zd has a bad address or size", k);
            return NULL;
        }
    }
    int64_t first;
    const int n_threads = effective_threads(threads);
    Py_BEGIN_ALLOW_THREADS first = first_nonfinite(ptrs, sizes, count, kind, n_threads);
    Py_END_ALLOW_THREADS PyMem_Free(ptrs);
    PyMem_Free(sizes);
    return PyLong_FromLongLong(first);
}

static PyMethodDef methods[] = {
    {"run", fused_run, METH_VARARGS,
     "run(jobs, threads): check every job (alg, combo, flags, values, params, grads, states, sizes), then run them."},
    {"set_num_threads", fused_set_num_threads, METH_O, "Set the default thread count (0: OpenMP's default)."},
    {"address", fused_address, METH_O, "address(buffer): where the buffer's first element is."},
    {"get_num_threads", fused_get_num_threads, METH_NOARGS, "The thread count a step uses by default."},
    {"isa", fused_isa, METH_NOARGS, "The instruction set the kernels run with."},
    {"first_nonfinite", fused_first_nonfinite, METH_VARARGS,
     "first_nonfinite(addresses, sizes, kind, threads): the first tensor holding NaN or inf, or -1."},
    {"set_isa", fused_set_isa, METH_O, "Run with another instruction set the CPU supports (for tests)."},
    {"compile_plan", compile_plan, METH_VARARGS,
     "compile_plan(planned, entries, keys): a torch group's plan as a capsule for gather()."},
    {"gather", gather, METH_VARARGS,
     "gather(params, plan, state, dtype, layout, types): check a torch group against its plan and return its "
     "gradients' addresses, or None if the plan no longer holds."},
    {"scalar_op", scalar_op, METH_VARARGS,
     "scalar_op(addresses, is_double, op, value): read (0), add to (1) or set (2) scalars; their common value, or "
     "None if they differ."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fused", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fused(void) {
    if (fork_init(&default_threads) != 0) return PyErr_NoMemory();
    if (gather_init() < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    best_isa = current_isa = detect_isa();
    PyObject *algs = PyTuple_New(N_ALG), *combos = PyTuple_New(N_COMBO), *isas = PyTuple_New(N_ISA - best_isa);
    PyObject *interface = PyTuple_New(N_ALG);
    if (!algs || !combos || !isas || !interface) goto fail;
    for (int k = 0; k < N_ALG; k++) PyTuple_SET_ITEM(algs, k, PyUnicode_FromString(alg_names[k]));
    for (int k = 0; k < N_ALG; k++)
        PyTuple_SET_ITEM(interface, k, Py_BuildValue("(ss)", alg_names[k], alg_interfaces[k]));
    if (PyModule_AddObject(m, "INTERFACE", interface) < 0) goto fail;
    interface = NULL;
    for (int k = 0; k < N_COMBO; k++) PyTuple_SET_ITEM(combos, k, PyUnicode_FromString(combo_names[k]));
    for (int k = best_isa; k < N_ISA; k++) PyTuple_SET_ITEM(isas, k - best_isa, PyUnicode_FromString(isa_names[k]));
    if (PyModule_AddObject(m, "ALGORITHMS", algs) < 0) goto fail;
    algs = NULL;
    if (PyModule_AddObject(m, "COMBOS", combos) < 0) goto fail;
    combos = NULL;
    if (PyModule_AddObject(m, "SUPPORTED_ISAS", isas) < 0) goto fail;
    isas = NULL;
    if (PyModule_AddIntConstant(m, "CHUNK", (long)CHUNK) < 0) goto fail;
    return m;
fail:
    Py_XDECREF(interface);
    Py_XDECREF(algs);
    Py_XDECREF(combos);
    Py_XDECREF(isas);
    Py_DECREF(m);
    return NULL;
}
