/* Byte ranges of the arrays of a step, and the search for memory two tensors share (see check_disjoint in _fused.c). */
#ifndef DESCEND_KERNELS_SPANS_H
#define DESCEND_KERNELS_SPANS_H

#include <stddef.h>
#include <Python.h>

/* One array of a parsed call, as a byte range: written (a param or a state slot) or read (a gradient). */
typedef struct {
    const char *lo, *hi;
    Py_ssize_t job, tensor;
    int slot; /* 0 param, 1 grad, 2.. state slots */
} span_t;

/* Sorts spans by start address. Returns 0, or -1 if the scratch memory could not be had. */
int sort_spans(span_t *spans, size_t m);

/* In spans sorted by start: 1 (and the two spans in *first, *second) if memory one span writes is also another's
 * (written or read); two read spans (gradients) may share memory. 0 if none. */
int shared_span(const span_t *spans, size_t m, const span_t **first, const span_t **second);

#endif
