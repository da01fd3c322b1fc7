/* adafactor's plain part (bodies/adafactor.h includes it once, outside the instruction-set regions): the tiling of
 * a job's tensors and the layout of its scratch memory, each state slot's size for a shape, and the scratch a call
 * needs. */
#include <omp.h>

_Static_assert(adafactor_f_maximize == 0 && adafactor_f_decay == 1 && adafactor_f_high_weight == 2,
               "adafactor's flag bits are in _layout.py's order");
_Static_assert(adafactor_s_row_var == 0 && adafactor_s_col_var == 1 && adafactor_s_variance == 2,
               "adafactor's slots are in _layout.py's order");

#define AF_LANES DESCEND_PAIRWISE_LANES
#define AF_LANES_LOG 4
_Static_assert(AF_LANES == 1 << AF_LANES_LOG, "descend/algorithms/_pairwise.py's LANES is 2^AF_LANES_LOG");
#define AF_TILE_LOG 16 /* a tile has about 2^16 elements */
#define AF_ROWS_LOG 4  /* and at least 16 rows where the tensor has them */
#define AF_SERIAL ((int64_t)1 << 15) /* a job of fewer elements runs on one thread */
#define AF_CHUNK_LOG 12 /* a row is computed in chunks of 2^12 elements before their sums */
#define AF_CHUNK (1 << AF_CHUNK_LOG)
#define AF_ALIGN 64

/* One tensor's tiling and scratch areas (offsets in compute-type entries). */
typedef struct {
    int64_t b, m, n, size, nb;  /* batches, rows, columns, elements, blocks of AF_LANES per row */
    int factored, row_level, col_level;
    int64_t rt, ct, tiles, first; /* row tiles per batch, column tiles per row, its tiles, its first tile's index */
    int64_t lpr;                  /* entries per row of the row sums: 1, or AF_LANES per column tile */
    size_t rowg, rowp, rowu, colpart, r, c, tmp, bt, scal; /* r, c: after pass B, the roots U divides by */
} af_tensor_t;

typedef struct {
    af_tensor_t *t;
    int64_t tiles;
    size_t entries, stack; /* the tensors' entries, then one column stack per thread */
    void *base;
} af_plan_t;

static int af_min(int a, int b) { return a < b ? a : b; }
static int64_t af_min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int af_ceil_log2(int64_t x) {
    int k = 0;
    while (((int64_t)1 << k) < x) k++;
    return k;
}

static size_t af_take(size_t *entries, int64_t count) {
    const size_t at = *entries;
    *entries += ((size_t)count + 15) & ~(size_t)15; /* each area starts on 64 bytes */
    return at;
}

/* Lays out the tiles and the scratch of a job: the bytes it needs, and with scratch, the plan in it. */
static size_t af_layout(const job_t *j, int threads, int ct_bytes, void *scratch, af_plan_t *plan) {
    const size_t head = (sizeof(af_tensor_t) * (size_t)j->n + AF_ALIGN - 1) & ~(size_t)(AF_ALIGN - 1);
    af_tensor_t *ts = scratch ? (af_tensor_t *)(((uintptr_t)scratch + AF_ALIGN - 1) & ~(uintptr_t)(AF_ALIGN - 1))
                              : NULL;
    size_t entries = 0, stack = 0;
    int64_t tiles = 0;
    for (int t = 0; t < j->n; t++) {
        const int64_t *d = j->dims + SHAPE_DIMS * t;
        af_tensor_t T = {.factored = d[0] >= 2, .b = d[1], .m = d[2], .n = d[3]};
        T.size = T.b * T.m * T.n;
        if (T.size > 0) {
            T.nb = (T.n + AF_LANES - 1) / AF_LANES;
            /* A tile of about 2^AF_TILE_LOG elements, 2^row_level rows (at least 2^AF_ROWS_LOG of a long row's, so
             * the column partials stay a small part of the tensor) by 2^col_level blocks. */
            const int kb = af_ceil_log2(T.nb), all = T.factored ? af_ceil_log2(T.m) : 0;
            const int room = AF_TILE_LOG - AF_LANES_LOG; /* log2 of a tile's blocks */
            T.row_level = af_min(room - kb > AF_ROWS_LOG ? room - kb : AF_ROWS_LOG, all);
            T.col_level = af_min(room - T.row_level, kb);
            T.rt = (T.m + ((int64_t)1 << T.row_level) - 1) >> T.row_level;
            T.ct = (T.nb + ((int64_t)1 << T.col_level) - 1) >> T.col_level;
            T.tiles = T.b * T.rt * T.ct;
            T.lpr = T.ct > 1 ? T.ct * AF_LANES : 1;
            if (T.factored) {
                const int64_t cols = ((int64_t)1 << T.col_level) * AF_LANES, width = cols < T.n ? cols : T.n;
                const size_t need = (size_t)(T.row_level + 1) * (size_t)width;
                if (need > stack) stack = need;
                T.rowg = af_take(&entries, T.b * T.m * T.lpr);
                T.rowp = af_take(&entries, T.b * T.m * T.lpr);
                T.rowu = af_take(&entries, T.b * T.m * T.lpr);
                T.colpart = af_take(&entries, T.b * T.rt * T.n);
                T.r = af_take(&entries, T.b * T.m);
                T.c = af_take(&entries, T.b * T.n);
                T.tmp = af_take(&entries, T.m);
                T.bt = af_take(&entries, T.b);
            } else {
                T.rowp = af_take(&entries, T.ct * AF_LANES);
                T.rowu = af_take(&entries, T.ct * AF_LANES);
            }
            T.scal = af_take(&entries, 2);
        }
        T.first = tiles;
        tiles += T.tiles;
        if (ts) ts[t] = T;
    }
    stack = (stack + 15) & ~(size_t)15;
    if (plan) {
        plan->t = ts;
        plan->tiles = tiles;
        plan->entries = entries;
        plan->stack = stack;
        plan->base = ts ? (void *)((char *)ts + head) : NULL;
    }
    return AF_ALIGN + head + (entries + (size_t)(threads > 0 ? threads : 1) * stack) * (size_t)ct_bytes;
}

/* The tensor holding tile `id`: the last whose first tile is at or before it. */
static int af_tensor_of(const af_plan_t *plan, int n, int64_t id) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (plan->t[mid].first <= id) lo = mid; else hi = mid - 1;
    }
    return lo;
}

int64_t adafactor_slot_size(int slot, const int64_t *dims) {
    const int factored = dims[0] >= 2;
    if (slot == adafactor_s_row_var) return factored ? dims[1] * dims[2] : -1;
    if (slot == adafactor_s_col_var) return factored ? dims[1] * dims[3] : -1;
    if (slot == adafactor_s_variance) return factored ? -1 : dims[1] * dims[2] * dims[3];
    return -1;
}

size_t adafactor_scratch(const job_t *job, int threads, int ct_bytes) {
    return af_layout(job, threads, ct_bytes, NULL, NULL);
}

