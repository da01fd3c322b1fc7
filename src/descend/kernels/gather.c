/* The steady-state bookkeeping of a torch param group, done in C: reading and checking every gradient against a
 * plan of the group made by Python, and advancing the step counters.
 *
 * The torch front records a plan once a group's state exists (descend/torch/_plan.py): per parameter, its state
 * dict, its data address and shape, and its state tensors with their storages. Each step, gather() confirms that the
 * group holds the same parameters, that each parameter is still at its address and keeps the same state dict holding
 * the same state tensors, that no state storage has moved its data (share_memory_(), resize_()), and that every
 * gradient is a dense, contiguous tensor of the parameter's dtype and shape; it returns the gradients' addresses, or
 * None, changing nothing, as soon as one thing differs (the front then takes its general path, which checks
 * everything again and raises where torch would).
 *
 * Every check costs a cache miss or two per tensor once a step has streamed the tensors' data through the caches, so
 * the list is kept to what can change between two steps. Not checked again: a state tensor pointed at another storage
 * in place (assigning its .data, set_()) and the layout of a parameter whose address is unchanged (an in-place
 * transpose). The plan holds the storages it recorded, so even then every write lands in live memory.
 *
 * No torch header is used: everything goes through the Python attributes and methods every torch tensor has.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "gather.h"

static PyObject *str_grad, *str_dtype, *str_layout, *str_shape, *str_data_ptr, *str_is_contiguous;

int gather_init(void) {
    str_grad = PyUnicode_InternFromString("grad");
    str_dtype = PyUnicode_InternFromString("dtype");
    str_layout = PyUnicode_InternFromString("layout");
    str_shape = PyUnicode_InternFromString("shape");
    str_data_ptr = PyUnicode_InternFromString("data_ptr");
    str_is_contiguous = PyUnicode_InternFromString("is_contiguous");
    return (str_grad && str_dtype && str_layout && str_shape && str_data_ptr && str_is_contiguous) ? 0 : -1;
}

/* 1 if getattr(obj, name) is `expected`, 0 if not, -1 with an exception set. */
static int attr_is(PyObject *obj, PyObject *name, PyObject *expected) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (!value) return -1;
    const int same = value == expected;
    Py_DECREF(value);
    return same;
}

/* 1 if getattr(obj, name) == expected, 0 if not, -1 with an exception set. */
static int attr_equals(PyObject *obj, PyObject *name, PyObject *expected) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (!value) return -1;
    const int same = PyObject_RichCompareBool(value, expected, Py_EQ);
    Py_DECREF(value);
    return same;
}

/* 1 if obj.name() is True, 0 if it is anything else, -1 with an exception set. */
static int call_is_true(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_CallMethodNoArgs(obj, name);
    if (!value) return -1;
    const int yes = value == Py_True;
    Py_DECREF(value);
    return yes;
}

/* obj.data_ptr() as a new reference (a Python int), or NULL with an exception set. */
static PyObject *data_ptr(PyObject *obj) { return PyObject_CallMethodNoArgs(obj, str_data_ptr); }

/* 1 if obj.data_ptr() == expected (an int), 0 if not, -1 with an exception set. */
static int address_is(PyObject *obj, PyObject *expected) {
    PyObject *value = data_ptr(obj);
    if (!value) return -1;
    const int same = PyObject_RichCompareBool(value, expected, Py_EQ);
    Py_DECREF(value);
    return same;
}

/* The checks of one parameter with a plan entry: 1 if it still matches and its gradient fits (its address is put in
 * *grad_address, a new reference), 0 if not, -1 with an exception set. */
static int check_one(PyObject *p, PyObject *grad, PyObject *entry, PyObject *state, PyObject *keys, PyObject *dtype,
                     PyObject *layout, PyObject *types, PyObject **grad_address) {
    /* entry: (state dict or None, param address, shape, state tensors, their storages, the storages' addresses),
     * the last three in the order of keys */
    PyObject *st = PyTuple_GET_ITEM(entry, 0), *p_address = PyTuple_GET_ITEM(entry, 1);
    PyObject *shape = PyTuple_GET_ITEM(entry, 2), *tensors = PyTuple_GET_ITEM(entry, 3);
    PyObject *storages = PyTuple_GET_ITEM(entry, 4), *addresses = PyTuple_GET_ITEM(entry, 5);
    int ok = 0;
    const Py_ssize_t ntypes = PyTuple_GET_SIZE(types);
    for (Py_ssize_t k = 0; k < ntypes && !ok; k++) ok = (PyObject *)Py_TYPE(grad) == PyTuple_GET_ITEM(types, k);
    if (!ok) return 0;
    if ((ok = attr_is(grad, str_dtype, dtype)) != 1) return ok;
    if ((ok = attr_is(grad, str_layout, layout)) != 1) return ok;
    if ((ok = call_is_true(grad, str_is_contiguous)) != 1) return ok;
    if ((ok = attr_equals(grad, str_shape, shape)) != 1) return ok;
    if ((ok = address_is(p, p_address)) != 1) return ok;
    if (st != Py_None) { /* None: an algorithm that keeps no state with these settings */
        PyObject *now = PyDict_GetItemWithError(state, p); /* borrowed; no defaultdict insertion */
        if (now != st) return now || !PyErr_Occurred() ? 0 : -1;
    }
    const Py_ssize_t nkeys = st == Py_None ? 0 : PyTuple_GET_SIZE(keys);
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *tensor = PyDict_GetItemWithError(st, PyTuple_GET_ITEM(keys, k));
        if (tensor != PyTuple_GET_ITEM(tensors, k)) return tensor || !PyErr_Occurred() ? 0 : -1;
        if ((ok = address_is(PyTuple_GET_ITEM(storages, k), PyTuple_GET_ITEM(addresses, k))) != 1) return ok;
    }
    *grad_address = data_ptr(grad);
    return *grad_address ? 1 : -1;
}

PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *params, *planned, *entries, *state, *keys, *dtype, *layout, *types;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!OOO!", &PyList_Type, &params, &PyList_Type, &planned, &PyList_Type,
                          &entries, &PyDict_Type, &state, &PyTuple_Type, &keys, &dtype, &layout, &PyTuple_Type,
                          &types))
        return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(params);
    if (PyList_GET_SIZE(entries) != n || PyList_GET_SIZE(planned) != n)
        return PyErr_Format(PyExc_ValueError, "a plan of %zd entries and %zd params for %zd params",
                            PyList_GET_SIZE(entries), PyList_GET_SIZE(planned), n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_GET_ITEM(params, i) != PyList_GET_ITEM(planned, i)) Py_RETURN_NONE; /* the group changed */
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (entry == Py_None) continue;
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 6)
            return PyErr_Format(PyExc_ValueError, "plan entry %zd is malformed", i);
        PyObject *st = PyTuple_GET_ITEM(entry, 0);
        const Py_ssize_t nkeys = st == Py_None ? 0 : PyTuple_GET_SIZE(keys);
        if (!(st == Py_None || PyDict_Check(st)) || !PyTuple_Check(PyTuple_GET_ITEM(entry, 3)) ||
            PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 3)) != nkeys || !PyTuple_Check(PyTuple_GET_ITEM(entry, 4)) ||
            PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 4)) != nkeys || !PyTuple_Check(PyTuple_GET_ITEM(entry, 5)) ||
            PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 5)) != nkeys)
            return PyErr_Format(PyExc_ValueError, "plan entry %zd is malformed", i);
    }
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(planned, i), *entry = PyList_GET_ITEM(entries, i); /* the plan's own lists */
        PyObject *grad = PyObject_GetAttr(p, str_grad);
        if (!grad) goto fail;
        if (grad == Py_None) { /* not updated this step, as in torch */
            PyList_SET_ITEM(out, i, grad);
            continue;
        }
        PyObject *address = NULL;
        const int ok = entry == Py_None ? 0 : check_one(p, grad, entry, state, keys, dtype, layout, types, &address);
        Py_DECREF(grad);
        if (ok < 0) goto fail;
        if (ok == 0) { /* the plan is stale or the gradient needs the general path */
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        PyList_SET_ITEM(out, i, address);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

PyObject *advance_steps(PyObject *self, PyObject *args) {
    PyObject *addresses;
    int is_double;
    if (!PyArg_ParseTuple(args, "O!p", &PyList_Type, &addresses, &is_double)) return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(addresses);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyLong_Check(PyList_GET_ITEM(addresses, i)))
            return PyErr_Format(PyExc_TypeError, "step address %zd is not an int", i);
        if (PyLong_AsVoidPtr(PyList_GET_ITEM(addresses, i)) == NULL)
            return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "step address %zd is null", i);
    }
    double first = 0.0;
    int same = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        void *where = PyLong_AsVoidPtr(PyList_GET_ITEM(addresses, i));
        double now;
        if (is_double) {
            double *step = where;
            *step += 1.0;
            now = *step;
        } else {
            float *step = where;
            *step += 1.0f; /* as torch's state["step"] += 1 on a float32 tensor */
            now = *step;
        }
        if (i == 0) first = now;
        else same = same && now == first;
    }
    if (!same) Py_RETURN_NONE;
    return PyFloat_FromDouble(first);
}
