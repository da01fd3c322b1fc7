/* Parsing a kernel call from Python: the arrays' addresses, sizes and formats, checked before anything runs. */
#ifndef DESCEND_KERNELS_PARSE_H
#define DESCEND_KERNELS_PARSE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "common.h"

/* The arrays of a tensor: param, grad, the state slots, their 8-bit scales and the Kahan compensation buffer. */
#define ARR_STATE 2
#define ARR_SCALE (2 + MAX_STATES)
#define ARR_COMP (2 + 2 * MAX_STATES)
#define N_ARRAYS (3 + 2 * MAX_STATES)

/* One parsed call: the job, the function that runs it, and what must be released after it ran. */
typedef struct {
    job_t job;
    range_fn fn;      /* set by the caller from alg, combo and the instruction set */
    shaped_fn shaped; /* instead of fn, for a shaped body; its scratch memory below */
    void *scratch;
    int alg, combo;
    int itemsize[N_ARRAYS]; /* bytes per element of each array */
    PyObject *seqs[N_ARRAYS];
    int64_t *ids;
    int64_t *offsets;
    int64_t *counts; /* the element count of every array, as ptrs orders them */
    int64_t *dims;   /* shaped bodies: SHAPE_DIMS per tensor */
    void **ptrs;
    Py_buffer *views;
    Py_ssize_t nviews;
} parsed_t;

/* Parses and checks one call (alg, combo, flags, values, params, grads, states, sizes[, lowbit[, shapes]]) into *pj,
 * which must be zeroed; alg must be below n_alg. sizers[alg] is NULL for a range body; for a shaped body it gives each
 * state slot's size from a tensor's shape, and the call must give shapes (and no low-bit storage). Returns 0, or -1
 * with an exception set (parsed_release frees what was taken). */
int parse_job(PyObject *args, parsed_t *pj, int n_alg, const slot_size_fn *sizers);

void parsed_release(parsed_t *pj);

/* No memory written by one tensor of the calls may be another tensor's (see parse.c). 0, or -1 with a ValueError. */
int check_disjoint(parsed_t *parsed, Py_ssize_t njobs);

#endif
