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
#include "parse.h"
#include "gather.h"
#include "lowbit.h"
#include "torch_ptr.h"

#define CHUNK ((int64_t)1 << 15)

/* The loop bodies, numbered in the order of the generated DESCEND_BODIES, then the shaped bodies of DESCEND_SHAPED
 * (descend/kernels/_layout.py). */
#define BODY_ID(name) BODY_##name,
enum { DESCEND_BODIES(BODY_ID) DESCEND_SHAPED(BODY_ID) N_ALG };
#define BODY_COUNT(name) +1
enum { N_RANGE = 0 DESCEND_BODIES(BODY_COUNT) };
#define BODY_NAME(name) #name,
static const char *const alg_names[N_ALG] = {DESCEND_BODIES(BODY_NAME) DESCEND_SHAPED(BODY_NAME)};
#define BODY_TABLE(name) name##_table,
static const range_fn (*const tables[N_RANGE])[N_COMBO] = {DESCEND_BODIES(BODY_TABLE)};
static const shaped_fn (*const shaped_tables[N_ALG - N_RANGE + 1])[N_COMBO] = {DESCEND_SHAPED(BODY_TABLE) NULL};
#define BODY_NULL(name) NULL,
#define BODY_SIZER(name) name##_slot_size,
static const slot_size_fn sizers[N_ALG] = {DESCEND_BODIES(BODY_NULL) DESCEND_SHAPED(BODY_SIZER)};
#define BODY_SCRATCH(name) name##_scratch,
static const scratch_fn scratch_fns[N_ALG - N_RANGE + 1] = {DESCEND_SHAPED(BODY_SCRATCH) NULL};
#define BODY_INTERFACE(name) name##_interface,
static const char *const alg_interfaces[N_ALG] = {DESCEND_BODIES(BODY_INTERFACE) DESCEND_SHAPED(BODY_INTERFACE)};

static const char *const combo_names[N_COMBO] = {"float32",         "float64",          "bfloat16",
                                                 "bfloat16+float32", "float16",          "float16+float32",
                                                 "float32+bfloat16", "float32+bfloat16 stochastic",
                                                 "bfloat16 stochastic"};

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
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("f16c"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return ISA_AVX2;
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
    const int64_t align = job->align;
    while (lo < hi && t < job->n) {
        const int64_t end = off[t + 1] < hi ? off[t + 1] : hi;
        if (end > lo) {
            int64_t first = lo - off[t], last = end - off[t];
            if (align > 1) { /* whole blocks: each one is run by the chunk holding its first element */
                const int64_t size = off[t + 1] - off[t];
                first = (first + align - 1) / align * align;
                last = (last + align - 1) / align * align;
                first = first < size ? first : size;
                last = last < size ? last : size;
            }
            while (last > first) { /* with split32, no range crosses a multiple of 2^32 */
                const int64_t cut = job->split32 ? ((first >> 32) + 1) << 32 : last;
                const int64_t upto = cut < last ? cut : last;
                fn(job, t, first, upto);
                first = upto;
            }
            lo = end;
        }
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
        if (parse_job(item, &parsed[k], N_ALG, sizers) != 0) {
            k++;
            goto done;
        }
        const int alg = parsed[k].alg, combo = parsed[k].combo;
        if (alg >= N_RANGE) { /* a shaped body: parse_job refused low-bit storage for it */
            parsed[k].shaped = shaped_tables[alg - N_RANGE][current_isa][combo];
            continue;
        }
        parsed[k].fn = tables[alg][current_isa][combo];
        job_t *job = &parsed[k].job;
        if (job->lowbit && job->state_format == SFMT_BF16 && job->param_mode == PMODE_NEAREST &&
            combo != COMBO_F16_F32) { /* bfloat16 state: the body's own loop loads and stores it */
            const int own = combo == COMBO_F32 ? (job->stochastic ? COMBO_F32_BF16SR : COMBO_F32_BF16)
                                               : (job->stochastic ? COMBO_BF16_BF16SR : COMBO_BF16);
            parsed[k].fn = tables[alg][current_isa][own];
            job->split32 = job->stochastic;
        } else if (job->lowbit) { /* the low-bit wrapper, running the body with float32 state */
            job->inner = parsed[k].fn;
            job->inner_f32 = tables[alg][current_isa][COMBO_F32];
            parsed[k].fn = lowbit_table[current_isa][combo == COMBO_F32 ? 0 : combo == COMBO_BF16_F32 ? 1 : 2];
        }
    }
    if (check_disjoint(parsed, njobs) != 0) goto done;
    threads = effective_threads(threads);
    for (Py_ssize_t i = 0; i < njobs; i++) { /* a shaped body's scratch memory, had before anything runs */
        if (!parsed[i].shaped) continue;
        const int ct_bytes = parsed[i].combo == COMBO_F64 ? 8 : 4;
        parsed[i].scratch = PyMem_Malloc(scratch_fns[parsed[i].alg - N_RANGE](&parsed[i].job, threads, ct_bytes));
        if (!parsed[i].scratch) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < njobs; i++) {
        if (parsed[i].shaped) parsed[i].shaped(&parsed[i].job, parsed[i].scratch, threads);
        else run_job(&parsed[i].job, parsed[i].fn, threads);
    }
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

/* bump_versions(tensors, fn, offset, types): advance each tensor's autograd version through torch's bump_version at
 * `fn`, the tensor's at::Tensor being `offset` bytes into its Python object, for as long as the tensors are of one of
 * `types`; returns how many were handled (the caller advances the rest). A tensor without a version (made under
 * inference mode), whose bump throws, is passed over, as torch's own increment_version passes it over. */
static PyObject *bump_versions(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *tensors, *fn_obj, *types;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, "O!OnO!", &PyList_Type, &tensors, &fn_obj, &offset, &PyTuple_Type, &types)) return NULL;
    void *fn = PyLong_AsVoidPtr(fn_obj);
    if (PyErr_Occurred()) return NULL;
    if (!fn || offset < (Py_ssize_t)sizeof(PyObject) || offset > 4096) {
        PyErr_SetString(PyExc_ValueError, "bump_versions: a null function or an offset out of range");
        return NULL;
    }
    const Py_ssize_t n = PyList_GET_SIZE(tensors), ntypes = PyTuple_GET_SIZE(types);
    Py_ssize_t k = 0;
    for (; k < n; k++) {
        PyObject *t = PyList_GET_ITEM(tensors, k);
        int known = 0;
        for (Py_ssize_t m = 0; m < ntypes && !known; m++) known = (PyObject *)Py_TYPE(t) == PyTuple_GET_ITEM(types, m);
        if (!known) break;
        (void)bump_tensor((tensor_bump_fn)fn, (const char *)t + offset);
    }
    return PyLong_FromSsize_t(k);
}

static PyMethodDef methods[] = {
    {"run", fused_run, METH_VARARGS,
     "run(jobs, threads): check every job (alg, combo, flags, values, params, grads, states, sizes[, lowbit[, "
     "shapes]]), then run them."},
    {"set_num_threads", fused_set_num_threads, METH_O, "Set the default thread count (0: OpenMP's default)."},
    {"address", fused_address, METH_O, "address(buffer): where the buffer's first element is."},
    {"get_num_threads", fused_get_num_threads, METH_NOARGS, "The thread count a step uses by default."},
    {"isa", fused_isa, METH_NOARGS, "The instruction set the kernels run with."},
    {"first_nonfinite", fused_first_nonfinite, METH_VARARGS,
     "first_nonfinite(addresses, sizes, kind, threads): the first tensor holding NaN or inf, or -1."},
    {"set_isa", fused_set_isa, METH_O, "Run with another instruction set the CPU supports (for tests)."},
    {"compile_plan", compile_plan, METH_VARARGS,
     "compile_plan(planned, entries, keys, nslots, reader, hints, shim): a torch group's plan as a capsule for "
     "gather()."},
    {"plan_uses_shim", plan_uses_shim, METH_O,
     "plan_uses_shim(plan): whether a compiled plan reads the tensors' metadata with torch's C functions."},
    {"gather", gather, METH_VARARGS,
     "gather(params, plan, state, dtype, layout, types): check a torch group against its plan and return its "
     "gradients' addresses, or None if the plan no longer holds."},
    {"scalar_op", scalar_op, METH_VARARGS,
     "scalar_op(addresses, is_double, op, value): read (0), add to (1) or set (2) scalars; their common value, or "
     "None if they differ."},
    {"bump_versions", bump_versions, METH_VARARGS,
     "bump_versions(tensors, fn, offset, types): advance the tensors' autograd versions through torch's function at "
     "fn; how many were handled."},
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
    if (PyModule_AddIntConstant(m, "Q8_BLOCK", (long)Q8_BLOCK) < 0) goto fail;
    return m;
fail:
    Py_XDECREF(interface);
    Py_XDECREF(algs);
    Py_XDECREF(combos);
    Py_XDECREF(isas);
    Py_DECREF(m);
    return NULL;
}
