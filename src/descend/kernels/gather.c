/* The steady-state bookkeeping of a torch param group, done in C: reading and checking every gradient against a
 * plan of the group made by Python, and advancing the step counters.
 *
 * The torch front records a plan once a group's state exists (descend/engine/plan.py): per parameter, its state
 * dict, its data address and shape, and its state tensors with their dtypes and addresses. Each step, gather()
 * confirms that the group holds the same parameters, that each parameter is still at its address and keeps the same
 * state dict holding the same state tensors, that no state storage has moved its data (share_memory_(), resize_()),
 * and that every gradient is a dense, contiguous tensor of the parameter's dtype and shape; it returns the gradients'
 * addresses, or None, changing nothing, as soon as one thing differs (the front then takes its general path, which
 * checks everything again and raises where torch would).
 *
 * Every tensor the kernel writes is checked again each step: the same object in the state dict, still at its
 * recorded address (a .data swap, set_(), share_memory_() or a growing resize_() moves it), contiguous and of the
 * parameter's recorded shape, and every state tensor of its recorded dtype (a .data swap to a transposed, reshaped
 * or reinterpreted view of the same memory keeps the address). In-place writes need no check: the kernel reads the
 * memory as it is. The plan holds the storages it recorded, and gather() returns the gradients it read so that the
 * caller holds them while the kernel runs: no step reads or writes freed memory, even when another thread assigns a
 * .grad meanwhile.
 *
 * The checks chase pointers through several objects per tensor (the Python object, torch's TensorImpl, its storage),
 * scattered over the heap and evicted from the caches by the kernel's own pass: the plan records where torch keeps
 * them (hints) and the loop starts fetching them a few parameters ahead, so that those reads overlap.
 *
 * No torch header is used. Where torch exports them, the checks read a tensor's metadata with the C functions of
 * its stable C interface for compiled code (the AOTInductor shim: aoti_torch_get_dtype, _get_sizes, _is_contiguous
 * and the like, each taking a pointer to the tensor's at::Tensor and returning an error code, never throwing),
 * whose addresses the caller passes (see descend/engine/plan.py). Such a pointer is the tensor's Python object plus
 * the size of its header (torch's THPVariable holds its at::Tensor right after PyObject_HEAD); the plan confirms that
 * layout on every tensor it records (the pointer found there must be the tensor's TensorImpl, as tensor._cdata
 * says) and otherwise, or without the shim, goes through the Python attributes and methods every torch tensor has,
 * the data pointers read with the C function torch exports for its compiled wrappers where it has it (torch_ptr.cpp).
 * A shim call that reports an error counts as a change: the general path then looks at the tensor and raises
 * where torch would.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "gather.h"
#include "torch_ptr.h"

static PyObject *str_grad, *str_dtype, *str_layout, *str_shape, *str_data_ptr, *str_is_contiguous, *str_is_neg;

int gather_init(void) {
    str_grad = PyUnicode_InternFromString("grad");
    str_dtype = PyUnicode_InternFromString("dtype");
    str_layout = PyUnicode_InternFromString("layout");
    str_shape = PyUnicode_InternFromString("shape");
    str_data_ptr = PyUnicode_InternFromString("data_ptr");
    str_is_contiguous = PyUnicode_InternFromString("is_contiguous");
    str_is_neg = PyUnicode_InternFromString("is_neg");
    return (str_grad && str_dtype && str_layout && str_shape && str_data_ptr && str_is_contiguous && str_is_neg) ? 0
                                                                                                               : -1;
}

/* A plan compiled into one C array: what gather() compares, read from memory that the step walks in order, so that
 * the only scattered reads left are those of the torch objects themselves. The Python objects named here are
 * borrowed from the lists the capsule owns (owner: (planned params, entries, keys)). */
#define MAX_KEYS 6
#define MAX_DIMS 8
#define MAX_HINTS (2 * (MAX_KEYS + 2)) /* the parameter, its state tensors and its gradient */

typedef struct {
    PyObject *param;
    Py_hash_t hash;   /* the parameter's hash as a key of the state dict, taken once */
    PyObject *st;     /* the state dict; Py_None: an algorithm keeping no state; NULL: no entry (no state yet) */
    void *p_address;
    int ndim;         /* -1: more dims than MAX_DIMS, compare with the shape object */
    int64_t dims[MAX_DIMS];
    PyObject *shape;
    PyObject *tensors[MAX_KEYS];
    void *addresses[MAX_KEYS];   /* each state tensor's data_ptr() when the plan was made */
    PyObject *dtypes[MAX_KEYS];  /* and its dtype */
    int nhints;
    const char *hints[MAX_HINTS]; /* memory the checks will read (torch's objects behind the Python ones): fetched
                                   * ahead, never dereferenced, so a stale address costs a wasted fetch and no more */
    PyTypeObject *p_type;         /* the parameter's class (a __class__ assignment changes what its ops do) */
    int32_t p_dtype;              /* with the shim: the parameter's dtype code (its gradient's must be the same) */
    int32_t codes[MAX_KEYS];      /* and each state tensor's */
} item_t;

/* torch's stable C functions for a tensor's metadata (the AOTInductor shim): each takes a pointer to an at::Tensor
 * and returns 0, or an error code having caught whatever torch threw. */
typedef int32_t (*shim_ptr_fn)(void *, void **);
typedef int32_t (*shim_i32_fn)(void *, int32_t *);
typedef int32_t (*shim_dims_fn)(void *, int64_t *);
typedef int32_t (*shim_sizes_fn)(void *, int64_t **);
typedef int32_t (*shim_bool_fn)(void *, _Bool *);

typedef struct {
    Py_ssize_t offset; /* where a tensor's at::Tensor lies in its Python object; 0: no shim */
    shim_ptr_fn data_ptr;
    shim_i32_fn dtype, layout;
    shim_dims_fn dim;
    shim_sizes_fn sizes;
    shim_bool_fn contiguous;
    tensor_flag_fn is_neg; /* at::native::is_neg, or NULL: the tensors' is_neg() */
    int32_t strided; /* the layout code of the plan's parameters (dense, strided) */
} shim_t;

typedef struct {
    Py_ssize_t n, nkeys, nslots; /* the first nslots keys are tensors of the parameter's shape, the rest scalars */
    data_ptr_reader reader;      /* torch's data-pointer reader, or NULL: call data_ptr() */
    shim_t shim;                 /* offset 0: the checks go through the tensors' Python attributes */
    PyObject *owner;
    item_t items[];
} plan_t;

static const char *const PLAN_NAME = "descend.kernels.plan";

static void plan_free(PyObject *capsule) {
    plan_t *plan = PyCapsule_GetPointer(capsule, PLAN_NAME);
    if (!plan) return;
    Py_XDECREF(plan->owner);
    PyMem_Free(plan);
}

/* *out = the address an int holds; 0, or -1 with an exception set. */
static int int_address(PyObject *value, void **out) {
    if (!PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "an address must be an int");
        return -1;
    }
    *out = PyLong_AsVoidPtr(value);
    return *out == NULL && PyErr_Occurred() ? -1 : 0;
}

/* An item's hints from a tuple of ints (addresses) or None; 0, or -1 with an exception set. */
static int read_hints(PyObject *given, item_t *it) {
    if (given == Py_None) return 0;
    if (!PyTuple_Check(given) || PyTuple_GET_SIZE(given) > MAX_HINTS) {
        PyErr_Format(PyExc_ValueError, "hints: a tuple of at most %d addresses or None, got %R", MAX_HINTS, given);
        return -1;
    }
    it->nhints = (int)PyTuple_GET_SIZE(given);
    for (int h = 0; h < it->nhints; h++) {
        void *address = NULL;
        if (int_address(PyTuple_GET_ITEM(given, h), &address) < 0) return -1;
        it->hints[h] = address;
    }
    return 0;
}

/* Starts fetching what checking an item will read: its Python objects and the torch objects behind them. The checks
 * chase pointers through several objects per tensor, scattered over the heap; fetched a few items ahead, those reads
 * overlap instead of waiting one after another. */
static inline void fetch_ahead(const item_t *it, Py_ssize_t nkeys) {
#if defined(__GNUC__)
    __builtin_prefetch(it->param);
    if (it->st && it->st != Py_None) {
        __builtin_prefetch(it->st);
        for (Py_ssize_t k = 0; k < nkeys; k++) __builtin_prefetch(it->tensors[k]);
    }
    for (int h = 0; h < it->nhints; h++) {
        __builtin_prefetch(it->hints[h]);
        __builtin_prefetch(it->hints[h] + 64);
        __builtin_prefetch(it->hints[h] + 128);
    }
#else
    (void)it;
    (void)nkeys;
#endif
}

/* The shim's functions from a tuple (offset, data_ptr, dtype, layout, dim, sizes, is_contiguous[, is_neg]) of ints
 * (is_neg 0 where there is none), or none (offset 0) for None; 0, or -1 with an exception set. */
static int read_shim(PyObject *given, shim_t *shim) {
    memset(shim, 0, sizeof *shim);
    if (given == Py_None) return 0;
    if (!PyTuple_Check(given) || (PyTuple_GET_SIZE(given) != 7 && PyTuple_GET_SIZE(given) != 8)) {
        PyErr_Format(PyExc_TypeError, "shim must be None or a tuple of 7 or 8 ints, got %R", given);
        return -1;
    }
    if (PyTuple_GET_SIZE(given) == 8) {
        void *is_neg = NULL;
        if (int_address(PyTuple_GET_ITEM(given, 7), &is_neg) < 0) return -1;
        shim->is_neg = (tensor_flag_fn)is_neg;
    }
    void *fns[6];
    for (int k = 0; k < 6; k++) {
        if (int_address(PyTuple_GET_ITEM(given, k + 1), &fns[k]) < 0) return -1;
        if (!fns[k]) return 0; /* a function this torch lacks: no shim */
    }
    const Py_ssize_t offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(given, 0));
    if (offset == -1 && PyErr_Occurred()) return -1;
    if (offset < (Py_ssize_t)sizeof(PyObject)) {
        PyErr_Format(PyExc_ValueError, "the shim's offset %zd is inside the object's header", offset);
        return -1;
    }
    shim->data_ptr = (shim_ptr_fn)fns[0];
    shim->dtype = (shim_i32_fn)fns[1];
    shim->layout = (shim_i32_fn)fns[2];
    shim->dim = (shim_dims_fn)fns[3];
    shim->sizes = (shim_sizes_fn)fns[4];
    shim->contiguous = (shim_bool_fn)fns[5];
    shim->offset = offset;
    return 0;
}

/* Where the shim finds obj's at::Tensor. */
static inline void *tensor_of(const shim_t *shim, PyObject *obj) { return (char *)obj + shim->offset; }

/* 1 if obj holds its at::Tensor where the shim looks for it (the pointer there is the tensor's TensorImpl, which
 * tensor._cdata gives), else 0. Reads nothing outside the object. */
static int tensor_layout_holds(const shim_t *shim, PyObject *obj) {
    if (Py_TYPE(obj)->tp_basicsize < shim->offset + (Py_ssize_t)sizeof(void *)) return 0;
    PyObject *cdata = PyObject_GetAttrString(obj, "_cdata");
    if (!cdata) {
        PyErr_Clear();
        return 0;
    }
    void *impl = PyLong_Check(cdata) ? PyLong_AsVoidPtr(cdata) : NULL;
    Py_DECREF(cdata);
    if (!impl) {
        PyErr_Clear();
        return 0;
    }
    void *found;
    memcpy(&found, tensor_of(shim, obj), sizeof found);
    return found == impl;
}

/* Confirms the shim on every tensor the plan records and reads their dtype codes; turns the shim off (offset 0)
 * where anything disagrees, or where a parameter has more dimensions than the plan keeps. */
static void settle_shim(plan_t *plan) {
    shim_t *shim = &plan->shim;
    int have_layout = 0;
    for (Py_ssize_t i = 0; shim->offset && i < plan->n; i++) {
        item_t *it = &plan->items[i];
        if (!it->st) continue; /* no entry */
        int32_t layout = 0;
        if (it->ndim < 0 || !tensor_layout_holds(shim, it->param) ||
            shim->dtype(tensor_of(shim, it->param), &it->p_dtype) ||
            shim->layout(tensor_of(shim, it->param), &layout) || (have_layout && layout != shim->strided)) {
            shim->offset = 0;
            break;
        }
        shim->strided = layout;
        have_layout = 1;
        const Py_ssize_t used = it->st == Py_None ? 0 : plan->nkeys;
        for (Py_ssize_t k = 0; k < used; k++) {
            if (!tensor_layout_holds(shim, it->tensors[k]) || shim->dtype(tensor_of(shim, it->tensors[k]), &it->codes[k])) {
                shim->offset = 0;
                break;
            }
        }
    }
}

PyObject *compile_plan(PyObject *self, PyObject *args) {
    PyObject *planned, *entries, *keys, *reader, *hints = Py_None, *shim = Py_None;
    Py_ssize_t nslots;
    if (!PyArg_ParseTuple(args, "O!O!O!nO|OO", &PyList_Type, &planned, &PyList_Type, &entries, &PyTuple_Type, &keys,
                          &nslots, &reader, &hints, &shim))
        return NULL;
    if (hints != Py_None && !(PyList_Check(hints) && PyList_GET_SIZE(hints) == PyList_GET_SIZE(planned)))
        return PyErr_Format(PyExc_TypeError, "hints must be None or a list with one entry per param, got %R", hints);
    if (reader != Py_None && !PyLong_Check(reader))
        return PyErr_Format(PyExc_TypeError, "reader must be a function's address (an int) or None, got %R", reader);
    const Py_ssize_t n = PyList_GET_SIZE(planned), nkeys = PyTuple_GET_SIZE(keys);
    if (PyList_GET_SIZE(entries) != n)
        return PyErr_Format(PyExc_ValueError, "a plan of %zd entries for %zd params", PyList_GET_SIZE(entries), n);
    if (nkeys > MAX_KEYS) return PyErr_Format(PyExc_ValueError, "at most %d state keys, got %zd", MAX_KEYS, nkeys);
    if (nslots < 0 || nslots > nkeys)
        return PyErr_Format(PyExc_ValueError, "%zd tensor slots among %zd keys", nslots, nkeys);
    plan_t *plan = PyMem_Calloc(1, sizeof(plan_t) + (size_t)(n ? n : 1) * sizeof(item_t));
    if (!plan) return PyErr_NoMemory();
    plan->n = n;
    if (reader != Py_None) {
        plan->reader = (data_ptr_reader)PyLong_AsVoidPtr(reader);
        if (!plan->reader && PyErr_Occurred()) goto fail;
    }
    if (read_shim(shim, &plan->shim) < 0) goto fail;
    plan->nkeys = nkeys;
    plan->nslots = nslots;
    for (Py_ssize_t i = 0; i < n; i++) {
        item_t *it = &plan->items[i];
        it->param = PyList_GET_ITEM(planned, i);
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (hints != Py_None && read_hints(PyList_GET_ITEM(hints, i), it) < 0) goto fail;
        if (entry == Py_None) continue;
        it->hash = PyObject_Hash(it->param);
        if (it->hash == -1) goto fail;
        /* entry: (state dict or None, param address, shape, state tensors, their dtypes, their addresses) */
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 6) goto malformed;
        PyObject *st = PyTuple_GET_ITEM(entry, 0), *shape = PyTuple_GET_ITEM(entry, 2);
        PyObject *tensors = PyTuple_GET_ITEM(entry, 3), *dtypes = PyTuple_GET_ITEM(entry, 4);
        PyObject *bases = PyTuple_GET_ITEM(entry, 5);
        const Py_ssize_t used = st == Py_None ? 0 : nkeys;
        if (!(st == Py_None || PyDict_Check(st)) || !PyTuple_Check(shape) || !PyTuple_Check(tensors) ||
            !PyTuple_Check(dtypes) || !PyTuple_Check(bases) || PyTuple_GET_SIZE(tensors) != used ||
            PyTuple_GET_SIZE(dtypes) != used || PyTuple_GET_SIZE(bases) != used)
            goto malformed;
        it->st = st;
        it->shape = shape;
        it->p_type = Py_TYPE(it->param);
        if (int_address(PyTuple_GET_ITEM(entry, 1), &it->p_address) < 0) goto fail;
        const Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
        it->ndim = ndim <= MAX_DIMS ? (int)ndim : -1;
        for (Py_ssize_t d = 0; d < ndim && d < MAX_DIMS; d++) {
            it->dims[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
            if (it->dims[d] == -1 && PyErr_Occurred()) goto fail;
        }
        for (Py_ssize_t k = 0; k < used; k++) {
            it->tensors[k] = PyTuple_GET_ITEM(tensors, k);
            if (int_address(PyTuple_GET_ITEM(bases, k), &it->addresses[k]) < 0) goto fail;
            it->dtypes[k] = PyTuple_GET_ITEM(dtypes, k);
        }
    }
    if (plan->shim.offset) settle_shim(plan);
    plan->owner = PyTuple_Pack(3, planned, entries, keys);
    if (!plan->owner) goto fail;
    PyObject *capsule = PyCapsule_New(plan, PLAN_NAME, plan_free);
    if (!capsule) {
        Py_DECREF(plan->owner);
        PyMem_Free(plan);
    }
    return capsule;
malformed:
    PyErr_SetString(PyExc_ValueError, "a plan entry is malformed");
fail:
    PyMem_Free(plan);
    return NULL;
}

/* getattr(obj, name) and obj.name() without the general attribute protocol: the descriptor is found in the type's
 * cache and called directly (a data descriptor's getter, a method descriptor's vectorcall), which is what getattr
 * does for these names, less the bound method it would create. Anything else takes the general route. About a third
 * of a planned step's bookkeeping is these calls. */
static PyObject *get_attr(PyObject *obj, PyObject *name) {
    PyObject *descr = _PyType_Lookup(Py_TYPE(obj), name); /* borrowed */
    if (descr && Py_TYPE(descr)->tp_descr_get && Py_TYPE(descr)->tp_descr_set)
        return Py_TYPE(descr)->tp_descr_get(descr, obj, (PyObject *)Py_TYPE(obj));
    return PyObject_GetAttr(obj, name);
}

static PyObject *call_method(PyObject *obj, PyObject *name) {
    PyObject *descr = _PyType_Lookup(Py_TYPE(obj), name); /* borrowed */
    if (descr && Py_IS_TYPE(descr, &PyMethodDescr_Type)) {
        PyObject *args[1] = {obj};
        return PyObject_Vectorcall(descr, args, 1, NULL);
    }
    return PyObject_CallMethodNoArgs(obj, name);
}

/* 1 if getattr(obj, name) is `expected`, 0 if not, -1 with an exception set. */
static int attr_is(PyObject *obj, PyObject *name, PyObject *expected) {
    PyObject *value = get_attr(obj, name);
    if (!value) return -1;
    const int same = value == expected;
    Py_DECREF(value);
    return same;
}

/* 1 if obj.name() is True, 0 if it is anything else, -1 with an exception set. */
static int call_is_true(PyObject *obj, PyObject *name) {
    PyObject *value = call_method(obj, name);
    if (!value) return -1;
    const int yes = value == Py_True;
    Py_DECREF(value);
    return yes;
}

/* 1 if the tensor reads its memory as it is, 0 if it is a lazily negated view (is_neg(): same memory, address,
 * dtype and layout, values of the other sign), -1 with an exception set. A conjugate view needs no check: only
 * complex tensors take one, and the plan's dtypes are real. */
static int not_negated(PyObject *tensor) {
    const int negated = call_is_true(tensor, str_is_neg);
    return negated < 0 ? -1 : !negated;
}

/* obj.data_ptr() as a new reference (a Python int), or NULL with an exception set. */
static PyObject *data_ptr(PyObject *obj) { return call_method(obj, str_data_ptr); }

/* *out = obj.data_ptr(), read by torch's reader where the plan has it; 0, or -1 with an exception set. */
static int address_of(const plan_t *plan, PyObject *obj, void **out) {
    if (plan->reader && read_data_ptr(plan->reader, obj, out) == 0) return 0;
    PyObject *value = data_ptr(obj); /* raises what torch raises for a tensor its reader refused */
    if (!value) return -1;
    const int rc = int_address(value, out);
    Py_DECREF(value);
    return rc;
}

/* 1 if the tensor's shape is the recorded one, 0 if not, -1 with an exception set. */
static int shape_is(PyObject *tensor, const item_t *it) {
    PyObject *shape = get_attr(tensor, str_shape);
    if (!shape) return -1;
    int same;
    if (it->ndim < 0 || !PyTuple_Check(shape)) {
        same = PyObject_RichCompareBool(shape, it->shape, Py_EQ);
    } else {
        same = PyTuple_GET_SIZE(shape) == it->ndim;
        for (int d = 0; same && d < it->ndim; d++) {
            const long long size = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
            if (size == -1 && PyErr_Occurred()) {
                same = -1;
                break;
            }
            same = size == it->dims[d];
        }
    }
    Py_DECREF(shape);
    return same;
}

/* state[param], borrowed, or NULL (with an exception set if the lookup failed). The hash is the one the plan took:
 * a dict key's hash cannot change while it is a key, and torch's is a Python function worth skipping. */
static PyObject *state_of(PyObject *state, const item_t *it) {
#if PY_VERSION_HEX < 0x030D0000
    return _PyDict_GetItem_KnownHash(state, it->param, it->hash);
#else
    return PyDict_GetItemWithError(state, it->param);
#endif
}

/* 1 if the gradient is of one of `types`, 0 if not. */
static inline int of_types(PyObject *grad, PyObject *types) {
    const Py_ssize_t ntypes = PyTuple_GET_SIZE(types);
    for (Py_ssize_t k = 0; k < ntypes; k++)
        if ((PyObject *)Py_TYPE(grad) == PyTuple_GET_ITEM(types, k)) return 1;
    return 0;
}

/* 1 if the tensor is contiguous and of the item's shape, 0 if not, -1 with an exception set. */
static int dense_shape_is(PyObject *tensor, const item_t *it) {
    const int ok = call_is_true(tensor, str_is_contiguous);
    return ok != 1 ? ok : shape_is(tensor, it);
}

/* The checks through the tensors' Python attributes. */
#define GC_NAME check_one
#define GC_GRAD_TYPE(g) of_types(g, types)
#define GC_DTYPE(t, object, code) attr_is(t, str_dtype, object)
#define GC_STRIDED(t) attr_is(t, str_layout, layout)
#define GC_DENSE(t) dense_shape_is(t, it)
#define GC_PLAIN(t) not_negated(t)
#define GC_ADDRESS(t, out) (address_of(plan, t, out) < 0 ? -1 : 1)
#include "gather_check.h" /* (it undefines GC_NAME and the readers) */

/* 1 if the shim reads the tensor as contiguous and of the item's shape, 0 if not or if it reports an error. */
static int shim_shape_is(const shim_t *shim, void *tensor, const item_t *it) {
    _Bool contiguous = 0;
    int64_t ndim = -1, *sizes = NULL;
    if (shim->contiguous(tensor, &contiguous) || !contiguous) return 0;
    if (shim->dim(tensor, &ndim) || ndim != it->ndim || shim->sizes(tensor, &sizes)) return 0;
    for (int d = 0; d < it->ndim; d++)
        if (sizes[d] != it->dims[d]) return 0;
    return 1;
}

/* not_negated through the shim's is_neg where it has one (the tensor's is_neg() where that one throws). */
static int shim_not_negated(const shim_t *shim, PyObject *tensor) {
    int negated = 0;
    if (shim->is_neg && read_tensor_flag(shim->is_neg, tensor_of(shim, tensor), &negated) == 0) return !negated;
    return not_negated(tensor);
}

/* 1 if the shim reads the tensor's dtype or layout (`read`) as `code`, 0 if not or if it reports an error. */
static inline int shim_code_is(shim_i32_fn read, void *tensor, int32_t code) {
    int32_t now = -1;
    return !read(tensor, &now) && now == code;
}

/* The same checks through the shim: each read from torch's C functions instead of the Python attributes. */
#define GC_SHIM (&plan->shim)
#define GC_NAME check_one_shim
#define GC_GRAD_TYPE(g) (of_types(g, types) && Py_TYPE(g)->tp_basicsize >= GC_SHIM->offset + (Py_ssize_t)sizeof(void *))
#define GC_DTYPE(t, object, code) shim_code_is(GC_SHIM->dtype, tensor_of(GC_SHIM, t), code)
#define GC_STRIDED(t) shim_code_is(GC_SHIM->layout, tensor_of(GC_SHIM, t), GC_SHIM->strided)
#define GC_DENSE(t) shim_shape_is(GC_SHIM, tensor_of(GC_SHIM, t), it)
#define GC_PLAIN(t) shim_not_negated(GC_SHIM, t)
#define GC_ADDRESS(t, out) (GC_SHIM->data_ptr(tensor_of(GC_SHIM, t), out) ? 0 : 1)
#include "gather_check.h" /* (it undefines GC_NAME and the readers) */
#undef GC_SHIM

#define AHEAD 8 /* items fetched ahead */

PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *params, *capsule, *state, *dtype, *layout, *types;
    if (!PyArg_ParseTuple(args, "O!OO!OOO!", &PyList_Type, &params, &capsule, &PyDict_Type, &state, &dtype, &layout,
                          &PyTuple_Type, &types))
        return NULL;
    plan_t *plan = PyCapsule_GetPointer(capsule, PLAN_NAME);
    if (!plan) return NULL;
    const Py_ssize_t n = plan->n;
    PyObject *keys = PyTuple_GET_ITEM(plan->owner, 2);
    if (PyList_GET_SIZE(params) != n) Py_RETURN_NONE; /* the group changed */
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyList_GET_ITEM(params, i) != plan->items[i].param) Py_RETURN_NONE;
    Py_INCREF(capsule); /* the plan's objects stay alive while the checks run Python code (a hash) */
    /* The loop makes thousands of short-lived objects (shapes, addresses): no collection runs in the middle of it. */
    const int collecting = PyGC_Disable();
    PyObject *out = PyList_New(n), *grads = PyList_New(n);
    if (!out || !grads) goto fail;
    for (Py_ssize_t i = 0; i < n && i < AHEAD; i++) fetch_ahead(&plan->items[i], plan->nkeys);
    for (Py_ssize_t i = 0; i < n; i++) {
        const item_t *it = &plan->items[i];
        if (i + AHEAD < n) fetch_ahead(&plan->items[i + AHEAD], plan->nkeys);
        PyObject *grad = get_attr(it->param, str_grad);
        if (!grad) goto fail;
        if (grad == Py_None) { /* not updated this step, as in torch */
            PyList_SET_ITEM(out, i, Py_NewRef(Py_None));
            PyList_SET_ITEM(grads, i, grad);
            continue;
        }
        PyObject *address = NULL;
        const int ok = it->st == NULL      ? 0
                       : plan->shim.offset ? check_one_shim(plan, it, grad, state, keys, dtype, layout, types, &address)
                                           : check_one(plan, it, grad, state, keys, dtype, layout, types, &address);
        if (ok <= 0) {
            Py_DECREF(grad);
            if (ok < 0) goto fail;
            /* the plan is stale or the gradient needs the general path */
            Py_DECREF(out);
            Py_DECREF(grads);
            Py_DECREF(capsule);
            if (collecting) PyGC_Enable();
            Py_RETURN_NONE;
        }
        PyList_SET_ITEM(out, i, address);
        PyList_SET_ITEM(grads, i, grad); /* held by the caller while the kernel reads it */
    }
    Py_DECREF(capsule);
    if (collecting) PyGC_Enable();
    PyObject *result = PyTuple_Pack(2, out, grads);
    Py_DECREF(out);
    Py_DECREF(grads);
    return result;
fail:
    Py_XDECREF(out);
    Py_XDECREF(grads);
    Py_DECREF(capsule);
    if (collecting) PyGC_Enable();
    return NULL;
}

PyObject *plan_uses_shim(PyObject *self, PyObject *capsule) {
    const plan_t *plan = PyCapsule_GetPointer(capsule, PLAN_NAME);
    if (!plan) return NULL;
    return PyBool_FromLong(plan->shim.offset != 0);
}

PyObject *scalar_op(PyObject *self, PyObject *args) {
    PyObject *addresses;
    int is_double, op;
    double value;
    if (!PyArg_ParseTuple(args, "O!pid", &PyList_Type, &addresses, &is_double, &op, &value)) return NULL;
    if (op < 0 || op > 2) return PyErr_Format(PyExc_ValueError, "unknown scalar operation %d", op);
    const Py_ssize_t n = PyList_GET_SIZE(addresses);
    for (Py_ssize_t i = 0; i < n; i++) {
        void *where = NULL;
        if (int_address(PyList_GET_ITEM(addresses, i), &where) < 0) return NULL;
        if (where == NULL) return PyErr_Format(PyExc_ValueError, "scalar address %zd is null", i);
#if defined(__GNUC__)
        __builtin_prefetch(where); /* each counter is a tensor of its own, scattered over the heap */
#endif
    }
    double first = 0.0;
    int same = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        void *where = PyLong_AsVoidPtr(PyList_GET_ITEM(addresses, i));
        double now;
        if (is_double) {
            double *x = where;
            if (op == 1) *x += value;
            if (op == 2) *x = value;
            now = *x;
        } else {
            float *x = where;
            if (op == 1) *x += (float)value; /* as torch's state["step"] += 1 on a float32 tensor */
            if (op == 2) *x = (float)value;
            now = *x;
        }
        if (i == 0) first = now;
        else same = same && (now == first || (now != now && first != first));
    }
    if (!same) Py_RETURN_NONE;
    return PyFloat_FromDouble(first);
}
