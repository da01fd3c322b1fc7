#ifndef DESCEND_GATHER_H
#define DESCEND_GATHER_H
#include <Python.h>

/* Interns the attribute names gather() reads; 0, or -1 with an exception set. */
int gather_init(void);

/* compile_plan(planned, entries, keys): a capsule holding the plan as one C array. See gather.c. */
PyObject *compile_plan(PyObject *self, PyObject *args);

/* gather(params, plan, state, dtype, layout, types): the gradients' addresses (None where a param has no gradient),
 * or None if the plan no longer holds. See gather.c. */
PyObject *gather(PyObject *self, PyObject *args);

/* plan_uses_shim(plan): whether a compiled plan reads the tensors' metadata with torch's C functions. */
PyObject *plan_uses_shim(PyObject *self, PyObject *capsule);

/* scalar_op(addresses, is_double, op, value): read (op 0), add value to (1) or set to value (2) each float32 or
 * float64 scalar at the addresses; their common value after, or None if they differ. */
PyObject *scalar_op(PyObject *self, PyObject *args);

#endif
