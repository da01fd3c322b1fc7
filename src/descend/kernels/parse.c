/* Parsing a kernel call from Python (parse.h): each array as an address or a buffer, checked for format, size,
 * alignment and writability, and the memory of every tensor checked against every other's before anything runs. */
#include "parse.h"

#include "spans.h"

/* Storage of params and grads, and of the state: item size and the buffer-protocol format character. */
static const int param_size[N_COMBO] = {4, 8, 2, 2, 2, 2, 4, 4, 2};
static const int state_size[N_COMBO] = {4, 8, 2, 4, 2, 4, 2, 2, 2};
static const char param_format[N_COMBO] = {'f', 'd', 0, 0, 'e', 'e', 'f', 'f', 0};
static const char state_format[N_COMBO] = {'f', 'd', 0, 'f', 'e', 'f', 'H', 'H', 'H'};
/* Combinations from COMBO_F32_BF16 on are chosen by the module for low-bit storage, never named by a caller. */
#define N_CALLER_COMBO COMBO_F32_BF16

/* Sets *ptr to the address of one item: an int, or a buffer whose view is kept in *view (released by the caller).
 * Returns 0, or -1 with an exception set. An empty tensor may have any address, null included. */
static char empty_tensor;

/* Sets *ptr to the address of one array: an int, or a buffer whose view is kept in *view (released by the caller),
 * of `expect` elements where expect >= 0, else of the parameter's *size (set here if it is not known yet). A
 * shaped_slot is a state slot of a shaped body, whose expected size its parameter's shape gives. */
static int item_address_of(PyObject *item, Py_buffer *view, int writable, int itemsize, char format, int64_t *size,
                           int64_t expect, const char *what, Py_ssize_t index, int shaped_slot, void **ptr) {
    if (PyLong_Check(item)) {
        *ptr = PyLong_AsVoidPtr(item);
        if (*ptr == NULL && PyErr_Occurred()) return -1;
        if (*ptr == NULL && (expect >= 0 ? expect : *size) != 0) {
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
    if (expect >= 0) {
        if (n != expect) {
            PyErr_Format(PyExc_ValueError,
                         shaped_slot ? "%s[%zd] has %lld elements, its parameter's shape gives it %lld"
                                     : "%s[%zd] has %lld elements; expected %lld",
                         what, index, (long long)n, (long long)expect);
            return -1;
        }
    } else if (*size < 0) {
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

/* 1 (with an exception set) if buffer `view` of array s is not of the shape its role asks: an elementwise state
 * slot or a compensation buffer of its param's shape (where the param is a buffer too: `param`), a block scale array
 * of one dimension; else 0. The sizes alone would let a state of another shape through, which the reference
 * refuses, and the kernel is to refuse what the reference does. */
static int shape_refused(const Py_buffer *view, const Py_buffer *param, int s, int64_t expect, const char *what,
                         Py_ssize_t index) {
    if (s >= ARR_SCALE && s < ARR_COMP) {
        if (view->ndim == 1) return 0;
        PyErr_Format(PyExc_ValueError, "%s[%zd] has %d dimensions; a scale array has one", what, index, view->ndim);
        return 1;
    }
    if (s < ARR_STATE || expect >= 0 || !param) return 0; /* the gradient is the front's; a shaped slot, the body's */
    int same = view->ndim == param->ndim;
    for (int d = 0; same && d < view->ndim; d++) same = view->shape[d] == param->shape[d];
    if (same) return 0;
    PyErr_Format(PyExc_ValueError, "%s[%zd] is not of its parameter's shape (%d and %d dimensions)", what, index,
                 view->ndim, param->ndim);
    return 1;
}

void parsed_release(parsed_t *pj) {
    for (Py_ssize_t k = 0; k < pj->nviews; k++) PyBuffer_Release(&pj->views[k]);
    PyMem_Free(pj->views);
    PyMem_Free(pj->ptrs);
    PyMem_Free(pj->offsets);
    PyMem_Free(pj->ids);
    PyMem_Free(pj->counts);
    PyMem_Free(pj->dims);
    PyMem_Free(pj->scratch);
    for (int s = 0; s < N_ARRAYS; s++) Py_XDECREF(pj->seqs[s]);
    memset(pj, 0, sizeof *pj);
}

/* Item size and buffer format of the state in each low-bit format (SFMT_*). */
static const int lowbit_size[3] = {4, 2, 1};
static const char lowbit_format[3] = {'f', 'H', 'B'};

/* Takes the per-tensor sequence `obj` (or None where allowed) as array a of the call. 0, or -1 with an exception. */
static int take_seq(parsed_t *pj, int a, PyObject *obj, Py_ssize_t n, const char *what) {
    if (obj == Py_None) return 0;
    pj->seqs[a] = PySequence_Fast(obj, what);
    if (!pj->seqs[a]) return -1;
    if (PySequence_Fast_GET_SIZE(pj->seqs[a]) != n) {
        PyErr_Format(PyExc_ValueError, "%s has %zd entries for %zd params", what, PySequence_Fast_GET_SIZE(pj->seqs[a]),
                     n);
        return -1;
    }
    return 0;
}

/* The low-bit part of a call: (state_format, stochastic, param_mode, nonneg, seed, step, ids, scales, comps). */
static int parse_lowbit(PyObject *obj, parsed_t *pj, Py_ssize_t n) {
    job_t *job = &pj->job;
    PyObject *ids_obj, *scales_obj, *comps_obj;
    unsigned long long seed, step;
    unsigned int nonneg;
    if (!PyArg_ParseTuple(obj, "iiiIKKOOO", &job->state_format, &job->stochastic, &job->param_mode, &nonneg, &seed,
                          &step, &ids_obj, &scales_obj, &comps_obj))
        return -1;
    if (job->state_format < SFMT_F32 || job->state_format > SFMT_Q8) {
        PyErr_Format(PyExc_ValueError, "unknown state format %d", job->state_format);
        return -1;
    }
    if (job->param_mode < PMODE_NEAREST || job->param_mode > PMODE_KAHAN) {
        PyErr_Format(PyExc_ValueError, "unknown param mode %d", job->param_mode);
        return -1;
    }
    if (pj->combo != 0 && pj->combo != 3 && pj->combo != 5) {
        PyErr_Format(PyExc_ValueError, "low-bit storage takes the float32-state combination of the param dtype, not %d",
                     pj->combo);
        return -1;
    }
    if (job->param_mode != PMODE_NEAREST && pj->combo == 0) {
        PyErr_SetString(PyExc_ValueError, "float32 params are stored as they are; only 16-bit params are rounded");
        return -1;
    }
    if (job->param_mode == PMODE_STOCHASTIC && pj->combo == 5) {
        PyErr_SetString(PyExc_ValueError, "stochastic rounding of params is for bfloat16 params only");
        return -1;
    }
    job->lowbit = 1;
    job->nonneg = nonneg;
    job->seed = seed;
    job->step = step;
    job->align = job->state_format == SFMT_Q8 ? Q8_BLOCK : 1;
    PyObject *ids = PySequence_Fast(ids_obj, "ids must be a sequence of ints");
    if (!ids) return -1;
    if (PySequence_Fast_GET_SIZE(ids) != n) {
        PyErr_Format(PyExc_ValueError, "ids has %zd entries for %zd params", PySequence_Fast_GET_SIZE(ids), n);
        Py_DECREF(ids);
        return -1;
    }
    pj->ids = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!pj->ids) {
        Py_DECREF(ids);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t t = 0; t < n; t++) pj->ids[t] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(ids, t));
    Py_DECREF(ids);
    if (PyErr_Occurred()) return -1;
    job->ids = pj->ids;
    if (scales_obj != Py_None) {
        PyObject *scales = PySequence_Fast(scales_obj, "scales must be a sequence of up to 3 sequences or None");
        if (!scales) return -1;
        if (PySequence_Fast_GET_SIZE(scales) > MAX_STATES) {
            Py_DECREF(scales);
            PyErr_Format(PyExc_ValueError, "at most %d scale slots", MAX_STATES);
            return -1;
        }
        for (Py_ssize_t s = 0; s < PySequence_Fast_GET_SIZE(scales); s++) {
            if (take_seq(pj, ARR_SCALE + (int)s, PySequence_Fast_GET_ITEM(scales, s), n, "a scale slot") != 0) {
                Py_DECREF(scales);
                return -1;
            }
        }
        Py_DECREF(scales);
    }
    if (take_seq(pj, ARR_COMP, comps_obj, n, "comps") != 0) return -1;
    for (int s = 0; s < MAX_STATES; s++) {
        const int has_state = pj->seqs[ARR_STATE + s] != NULL, has_scale = pj->seqs[ARR_SCALE + s] != NULL;
        if (has_scale != (has_state && job->state_format == SFMT_Q8)) {
            PyErr_Format(PyExc_ValueError, "state slot %d %s scales", s, has_scale ? "must not have" : "needs");
            return -1;
        }
    }
    if ((pj->seqs[ARR_COMP] != NULL) != (job->param_mode == PMODE_KAHAN)) {
        PyErr_SetString(PyExc_ValueError, "comps are given exactly when params are stored with Kahan compensation");
        return -1;
    }
    return 0;
}

/* Reads shape (a sequence of non-negative ints) into dims (SHAPE_DIMS entries, see common.h), checking that it holds
 * size elements. Returns 0, or -1 with an exception set. */
static int shape_dims(PyObject *shape, int64_t size, Py_ssize_t t, int64_t *dims) {
    PyObject *seq = PySequence_Fast(shape, "each shape must be a sequence of ints");
    if (!seq) return -1;
    const Py_ssize_t ndim = PySequence_Fast_GET_SIZE(seq);
    int64_t lead = 1, total = 1, d = 0;
    int rc = ndim > 64 ? -1 : 0;
    for (Py_ssize_t k = 0; k < ndim && rc == 0; k++) {
        d = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, k));
        if (d < 0 || __builtin_mul_overflow(total, d, &total)) rc = -1;
        if (k < ndim - 2 && rc == 0) lead *= d; /* no overflow: lead divides total or is a product before a zero */
        if (k == ndim - 2) dims[2] = d;
    }
    Py_DECREF(seq);
    if (rc != 0 || total != size) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "shapes[%zd] is not the shape of a tensor of %lld elements", t,
                         (long long)size);
        return -1;
    }
    dims[0] = ndim;
    if (ndim >= 2) {
        dims[1] = lead;
        dims[3] = d;
    } else {
        dims[1] = dims[2] = 1;
        dims[3] = size;
    }
    return 0;
}

/* Parses and checks one call (alg, combo, flags, values, params, grads, states, sizes[, lowbit[, shapes]]) into *pj,
 * which must be zeroed. Returns 0, or -1 with an exception set (what was taken is released by parsed_release). */
int parse_job(PyObject *args, parsed_t *pj, int n_alg, const slot_size_fn *sizers) {
    int alg, combo;
    unsigned int flags;
    PyObject *values_obj, *params_obj, *grads_obj, *states_obj, *sizes_obj, *lowbit_obj = Py_None;
    PyObject *shapes_obj = Py_None;
    if (!PyArg_ParseTuple(args, "iiIOOOOO|OO", &alg, &combo, &flags, &values_obj, &params_obj, &grads_obj,
                          &states_obj, &sizes_obj, &lowbit_obj, &shapes_obj))
        return -1;
    if (alg < 0 || alg >= n_alg) {
        PyErr_Format(PyExc_ValueError, "unknown algorithm id %d", alg);
        return -1;
    }
    const slot_size_fn sizer = sizers[alg];
    if ((sizer != NULL) != (shapes_obj != Py_None)) {
        PyErr_Format(PyExc_ValueError, "algorithm %d %s shapes", alg, sizer ? "updates whole tensors: it needs"
                                                                             : "takes no");
        return -1;
    }
    if (sizer && lowbit_obj != Py_None) { /* its table has no low-bit entries (common.h, DEFINE_SHAPED_TABLE) */
        PyErr_Format(PyExc_ValueError, "algorithm %d updates whole tensors: it keeps no low-bit state", alg);
        return -1;
    }
    if (combo < 0 || combo >= N_CALLER_COMBO) {
        PyErr_Format(PyExc_ValueError, "unknown dtype combination %d", combo);
        return -1;
    }
    job_t *job = &pj->job;
    job->flags = flags;
    job->align = 1;
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
    if (take_seq(pj, 1, grads_obj, n, "grads") != 0) return -1;
    if (!seqs[1]) {
        PyErr_SetString(PyExc_TypeError, "grads must be a sequence");
        return -1;
    }
    PyObject *states = PySequence_Fast(states_obj, "states must be a sequence of up to 3 sequences or None");
    if (!states) return -1;
    if (PySequence_Fast_GET_SIZE(states) > MAX_STATES) {
        Py_DECREF(states);
        PyErr_Format(PyExc_ValueError, "at most %d state slots", MAX_STATES);
        return -1;
    }
    for (Py_ssize_t s = 0; s < PySequence_Fast_GET_SIZE(states); s++) {
        PyObject *slot = PySequence_Fast_GET_ITEM(states, s);
        if (take_seq(pj, ARR_STATE + (int)s, slot, n, "a state slot") != 0) {
            Py_DECREF(states);
            return -1;
        }
    }
    Py_DECREF(states);
    if (lowbit_obj != Py_None && parse_lowbit(lowbit_obj, pj, n) != 0) return -1;
    char format[N_ARRAYS];
    for (int a = 0; a < N_ARRAYS; a++) {
        const int param_like = a < ARR_STATE || a == ARR_COMP;
        const int state = a >= ARR_STATE && a < ARR_SCALE;
        pj->itemsize[a] = param_like ? param_size[combo]
                          : state    ? (job->lowbit ? lowbit_size[job->state_format] : state_size[combo])
                                     : 4;
        format[a] = param_like ? param_format[combo]
                    : state    ? (job->lowbit ? lowbit_format[job->state_format] : state_format[combo])
                               : 'f';
    }
    PyObject *shapes = NULL;
    if (sizer) {
        shapes = PySequence_Fast(shapes_obj, "shapes must be a sequence of shapes");
        if (!shapes) return -1;
        if (PySequence_Fast_GET_SIZE(shapes) != n) {
            Py_DECREF(shapes);
            PyErr_Format(PyExc_ValueError, "shapes has %zd entries for %zd params", PySequence_Fast_GET_SIZE(shapes),
                         n);
            return -1;
        }
    }
    PyObject *sizes = NULL;
    if (sizes_obj != Py_None) {
        sizes = PySequence_Fast(sizes_obj, "sizes must be a sequence of ints or None");
        if (!sizes) goto fail;
        if (PySequence_Fast_GET_SIZE(sizes) != n) {
            PyErr_Format(PyExc_ValueError, "sizes has %zd entries for %zd params", PySequence_Fast_GET_SIZE(sizes), n);
            goto fail;
        }
    }

    pj->offsets = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
    pj->ptrs = PyMem_Calloc((size_t)(N_ARRAYS * n + 1), sizeof(void *));
    pj->counts = PyMem_Calloc((size_t)(N_ARRAYS * n + 1), sizeof(int64_t));
    pj->views = PyMem_Calloc((size_t)(N_ARRAYS * n + 1), sizeof(Py_buffer));
    pj->dims = sizer ? PyMem_Calloc((size_t)(SHAPE_DIMS * n + 1), sizeof(int64_t)) : NULL;
    if (!pj->offsets || !pj->ptrs || !pj->counts || !pj->views || (sizer && !pj->dims)) {
        PyErr_NoMemory();
        goto fail;
    }
    int64_t *offsets = pj->offsets, *counts = pj->counts;
    void **ptrs = pj->ptrs;
    offsets[0] = 0;
    for (Py_ssize_t t = 0; t < n; t++) {
        int64_t size = -1;
        const Py_buffer *param_view = NULL; /* the param's buffer, where it is one: its state's shapes must be its */
        if (sizes) {
            long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(sizes, t));
            if (v < 0) {
                if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "sizes[%zd] is negative: %lld", t, v);
                goto fail;
            }
            size = v;
        }
        for (int s = 0; s < N_ARRAYS; s++) {
            static const char *const what[N_ARRAYS] = {"params", "grads", "states[0]", "states[1]", "states[2]",
                                                       "scales[0]", "scales[1]", "scales[2]", "comps"};
            if (s == ARR_STATE) { /* the param and its gradient are read: their size is known */
                if (size < 0) {
                    PyErr_Format(PyExc_ValueError, "params[%zd] is an address, so sizes must be given", t);
                    goto fail;
                }
                counts[t] = counts[n + t] = size;
                if (sizer && shape_dims(PySequence_Fast_GET_ITEM(shapes, t), size, t, pj->dims + SHAPE_DIMS * t))
                    goto fail;
            }
            /* -1: the param's size (the param, its gradient, an elementwise rule's state and the compensation) */
            int64_t expect = s >= ARR_SCALE && s < ARR_COMP ? (size + Q8_BLOCK - 1) / Q8_BLOCK : -1;
            const int shaped_slot = sizer && s >= ARR_STATE && s < ARR_SCALE;
            if (shaped_slot) { /* a shaped body: the slots and their sizes follow from the shape */
                expect = sizer(s - ARR_STATE, pj->dims + SHAPE_DIMS * t);
                if ((expect >= 0) != (seqs[s] != NULL)) {
                    PyErr_Format(PyExc_ValueError, "tensor %zd of shape %R %s state slot %d", t,
                                 PySequence_Fast_GET_ITEM(shapes, t), expect >= 0 ? "needs" : "has no", s - ARR_STATE);
                    goto fail;
                }
            }
            if (!seqs[s]) continue;
            PyObject *item = PySequence_Fast_GET_ITEM(seqs[s], t);
            Py_buffer *view = &pj->views[pj->nviews];
            void *ptr = NULL;
            const int rc = item_address_of(item, view, s != 1, pj->itemsize[s], format[s], &size, expect, what[s], t,
                                           shaped_slot, &ptr);
            if (view->obj) pj->nviews++;
            if (rc != 0) goto fail;
            if (s == 0 && view->obj) param_view = view;
            if (view->obj && shape_refused(view, param_view, s, expect, what[s], t)) goto fail;
            ptrs[s * n + t] = ptr;
            if (s >= ARR_STATE) counts[s * n + t] = expect >= 0 ? expect : size;
        }
        /* Every array of tensor t must have memory of its own: a gradient that is (part of) the memory being
         * written would be read after it changed, and two written arrays that overlap give order-dependent bits. */
        for (int a = 0; a < N_ARRAYS; a++) {
            if (!seqs[a] || counts[a * n + t] == 0) continue;
            const char *lo_a = (const char *)ptrs[a * n + t];
            const char *hi_a = lo_a + counts[a * n + t] * pj->itemsize[a];
            for (int b = a + 1; b < N_ARRAYS; b++) {
                if (!seqs[b] || (a == 1 && b == 1) || counts[b * n + t] == 0) continue;
                const char *lo_b = (const char *)ptrs[b * n + t];
                const char *hi_b = lo_b + counts[b * n + t] * pj->itemsize[b];
                if (lo_a < hi_b && lo_b < hi_a) {
                    PyErr_Format(PyExc_ValueError, "the arrays of tensor %zd share memory (%s and %s)", t,
                                 a == 0 ? "param" : a == 1 ? "grad" : "a state slot", b == 1 ? "grad" : "a state slot");
                    goto fail;
                }
            }
        }
        offsets[t + 1] = offsets[t] + size;
    }
    Py_XDECREF(sizes);
    Py_XDECREF(shapes);

    job->n = (int)n;
    job->offsets = offsets;
    job->param = ptrs;
    job->grad = (const void *const *)(ptrs + n);
    for (int s = 0; s < MAX_STATES; s++) {
        job->state[s] = seqs[ARR_STATE + s] ? ptrs + (ARR_STATE + s) * n : NULL;
        job->scale[s] = seqs[ARR_SCALE + s] ? ptrs + (ARR_SCALE + s) * n : NULL;
    }
    job->comp = seqs[ARR_COMP] ? ptrs + ARR_COMP * n : NULL;
    job->dims = pj->dims;
    pj->alg = alg;
    return 0;
fail:
    Py_XDECREF(sizes);
    Py_XDECREF(shapes);
    return -1;
}

static const char *slot_name(int slot) { return slot == 0 ? "param" : slot == 1 ? "grad" : "a state slot"; }

/* Across the tensors of every call of a run, no memory that is written may be another tensor's param, state or
 * gradient: the kernel's bits would depend on the order in which tensors and threads run, and differ from the
 * reference, which reads everything before it writes. (Within one tensor, parse_job checked it already.) Two
 * gradients may share memory: both are only read. Returns 0, or -1 with a ValueError set. */
int check_disjoint(parsed_t *parsed, Py_ssize_t njobs) {
    size_t count = 0;
    for (Py_ssize_t j = 0; j < njobs; j++) {
        for (int s = 0; s < N_ARRAYS; s++)
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
            for (int s = 0; s < N_ARRAYS; s++) {
                const int64_t count = pj->counts[s * n + t]; /* a shaped body's slots are sized by the shape */
                if (!pj->seqs[s] || count <= 0) continue;
                const char *lo = (const char *)pj->ptrs[s * n + t];
                spans[m++] = (span_t){lo, lo + count * pj->itemsize[s], j, t, s};
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
