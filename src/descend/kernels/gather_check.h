/* One parameter's checks against its plan entry, written once for the two ways gather.c reads a tensor: through its
 * Python attributes (check_one) and through torch's C functions (check_one_shim). gather.c includes this file once
 * for each, with GC_NAME and these readers defined, each 1 (holds), 0 (does not) or -1 (an exception is set):
 *
 *   GC_GRAD_TYPE(g)            the gradient is of one of the plan's tensor types, readable by the reader
 *   GC_DTYPE(t, object, code)  t's dtype is the recorded one (as a dtype object, or as the shim's code)
 *   GC_STRIDED(t)              t's layout is dense and strided
 *   GC_DENSE(t)                t is contiguous and of the item's shape
 *   GC_PLAIN(t)                t reads its memory as it is (not a lazily negated view)
 *   GC_ADDRESS(t, out)         *out = t's data address (0: it could not be read, which is no match)
 *
 * The readers and GC_NAME are undefined at the end, ready for the next instantiation.
 *
 * Returns 1 if the entry still matches and the gradient fits (its address put in *grad_address, a new reference), 0
 * if not (the general path takes the group), -1 with an exception set. */
static int GC_NAME(const plan_t *plan, const item_t *it, PyObject *grad, PyObject *state, PyObject *keys,
                   PyObject *dtype, PyObject *layout, PyObject *types, PyObject **grad_address) {
    int ok = 0;
    void *where = NULL;
#define GC_CHECK(x)                    \
    do {                               \
        if ((ok = (x)) != 1) return ok; \
    } while (0)
#define GC_AT(t, expected) ((ok = GC_ADDRESS(t, &where)) != 1 ? ok : where == (expected))
    GC_CHECK(GC_GRAD_TYPE(grad));
    GC_CHECK(GC_DTYPE(grad, dtype, it->p_dtype));
    GC_CHECK(GC_STRIDED(grad));
    GC_CHECK(GC_DENSE(grad));
    GC_CHECK(GC_PLAIN(grad));
    if (Py_TYPE(it->param) != it->p_type) return 0;
    GC_CHECK(GC_AT(it->param, it->p_address));
    GC_CHECK(GC_DTYPE(it->param, dtype, it->p_dtype)); /* a .data swap to a view of another dtype */
    GC_CHECK(GC_DENSE(it->param));
    GC_CHECK(GC_PLAIN(it->param));
    if (it->st != Py_None) { /* None: an algorithm that keeps no state with these settings */
        PyObject *now = state_of(state, it); /* borrowed; no defaultdict insertion */
        if (now != it->st) return now || !PyErr_Occurred() ? 0 : -1;
        for (Py_ssize_t k = 0; k < plan->nkeys; k++) {
            PyObject *tensor = PyDict_GetItemWithError(it->st, PyTuple_GET_ITEM(keys, k));
            if (tensor != it->tensors[k]) return tensor || !PyErr_Occurred() ? 0 : -1;
            GC_CHECK(GC_AT(tensor, it->addresses[k]));
            /* a .data swap to another view of the same memory keeps the address: its dtype and layout may differ */
            GC_CHECK(GC_DTYPE(tensor, it->dtypes[k], it->codes[k]));
            GC_CHECK(GC_PLAIN(tensor));
            if (k < plan->nslots) GC_CHECK(GC_DENSE(tensor)); /* the rest are 0-d counters */
        }
    }
    GC_CHECK(GC_ADDRESS(grad, &where));
    if (where == NULL) return 0; /* an all-zeros tensor without memory: the general path copies it */
    *grad_address = PyLong_FromVoidPtr(where);
    return *grad_address ? 1 : -1;
#undef GC_AT
#undef GC_CHECK
}

#undef GC_NAME
#undef GC_GRAD_TYPE
#undef GC_DTYPE
#undef GC_STRIDED
#undef GC_DENSE
#undef GC_PLAIN
#undef GC_ADDRESS
