/* The byte ranges of a step's arrays: sorting them and finding memory two tensors share (spans.h). */
#include "spans.h"

#include <stdint.h>
#include <string.h>

/* Sorts spans by start address: a least-significant-digit radix sort, one byte at a time, skipping the bytes every
 * address shares (the high ones). Thousands of tensors a step make a comparison sort a visible part of the step.
 * Returns 0, or -1 if the scratch memory could not be had. */
int sort_spans(span_t *spans, size_t m) {
    span_t *scratch = PyMem_Malloc((m ? m : 1) * sizeof(span_t));
    if (!scratch) return -1;
    span_t *from = spans, *to = scratch;
    for (int shift = 0; shift < 64; shift += 8) {
        size_t count[257] = {0};
        for (size_t k = 0; k < m; k++) count[(((uintptr_t)from[k].lo) >> shift & 0xFF) + 1]++;
        int used = 0;
        for (int b = 1; b <= 256; b++) used += count[b] != 0;
        if (used <= 1) continue; /* every address has this byte in common */
        for (int b = 1; b <= 256; b++) count[b] += count[b - 1];
        for (size_t k = 0; k < m; k++) to[count[((uintptr_t)from[k].lo) >> shift & 0xFF]++] = from[k];
        span_t *swap = from;
        from = to;
        to = swap;
    }
    if (from != spans) memcpy(spans, from, m * sizeof(span_t));
    PyMem_Free(scratch);
    return 0;
}

int shared_span(const span_t *spans, size_t m, const span_t **first, const span_t **second) {
    /* Sweeping by start: the earlier span reaching furthest (of all, and of the written ones) is the one to test. */
    const span_t *far_all = NULL, *far_written = NULL;
    for (size_t k = 0; k < m; k++) {
        const span_t *x = &spans[k];
        const span_t *other = x->slot == 1 ? far_written : far_all;
        if (other && other->hi > x->lo) {
            *first = other;
            *second = x;
            return 1;
        }
        if (!far_all || x->hi > far_all->hi) far_all = x;
        if (x->slot != 1 && (!far_written || x->hi > far_written->hi)) far_written = x;
    }
    return 0;
}
