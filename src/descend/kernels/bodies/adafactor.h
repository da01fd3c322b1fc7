/* adafactor: restates descend/algorithms/adafactor.py's reference_update over whole tensors (a shaped body, see
 * common.h), with every sum in the fixed order of descend/algorithms/_pairwise.py, so the result is the reference's
 * to the bit whatever the thread count. Its values, flag bits and state slots are named in _layout.py.
 *
 * The passes over memory, for B matrices of m x n (a tensor's last two dimensions):
 *   A  tiles    read g and p: each row's sum of g^2 and of p^2, each tile's column sums of g^2;
 *   B  tensors  the row and column averages (written), the mean of the rows', and alpha;
 *   C  tiles    read g: U, and each row's sum of U^2;
 *   D  tensors  the clipping, so the step's scale;
 *   E  tiles    read g and p, write p.
 * A vector (or a scalar) keeps its full average: A reads g, p and variance (sums of U^2 and p^2), B, and E writes
 * variance and p. The tiles are aligned blocks of 2^a rows by 2^c blocks of LANES columns, so each partial sum is a
 * node of the reference's tree: the tiling changes no bit. A job holds tensors of one kind (factored or not).
 *
 * The build includes this file once with SHAPED_ONCE defined (the plain part: the tiling, the slot sizes, compiled
 * for the baseline instruction set), then once per instruction set and storage (the passes). Adafactor keeps no
 * low-bit state: the storage combinations of descend.lowbit (LOWBIT_COMBO) define nothing, and its table holds NULL
 * there (DEFINE_SHAPED_TABLE); the module refuses a low-bit call to a shaped body before it would look there.
 */
#ifdef SHAPED_ONCE
#include "adafactor_plan.h"
#elif !defined(LOWBIT_COMBO) /* the passes, for one instruction set and storage; no low-bit state (combos.h) */

#define AF_ZERO ((CT)0)

/* A pairwise sum of vectors of AF_LANES taken one at a time: a binary counter, st[l] the pending node of level l. */
KINLINE KNAME(af_push)(CT (*st)[AF_LANES], CT *restrict x, int64_t count) {
    int l = 0;
    for (int64_t c = count; c & 1; c >>= 1, l++)
        for (int w = 0; w < AF_LANES; w++) x[w] = st[l][w] + x[w];
    for (int w = 0; w < AF_LANES; w++) st[l][w] = x[w];
}

static void KNAME(af_tree)(CT *v, int64_t count, int64_t width, int64_t stride);

/* Pushes the `nblocks` blocks of AF_LANES in buf (clobbered) into the counter st, which had taken `count` before: a
 * whole chunk (an aligned subtree of AF_CHUNK / AF_LANES blocks) is summed level by level first and enters the
 * counter as one node of its level; a partial one block by block. */
KINLINE KNAME(af_push_blocks)(CT (*st)[AF_LANES], CT *buf, int64_t nblocks, int64_t count) {
    if (nblocks == AF_CHUNK / AF_LANES) {
        KNAME(af_tree)(buf, nblocks, AF_LANES, AF_LANES);
        int l = AF_CHUNK_LOG - AF_LANES_LOG;
        for (int64_t c = count >> l; c & 1; c >>= 1, l++)
            for (int w = 0; w < AF_LANES; w++) buf[w] = st[l][w] + buf[w];
        for (int w = 0; w < AF_LANES; w++) st[l][w] = buf[w];
        return;
    }
    for (int64_t b = 0; b < nblocks; b++) KNAME(af_push)(st, buf + b * AF_LANES, count + b);
}

/* The node of level `levels` over the `count` items (count <= 2^levels) a counter took, width entries each, its
 * levels `stride` apart: padded with zeros as the reference pads a level of odd length. */
KINLINE KNAME(af_finish)(const CT *stack, int64_t stride, int64_t width, int64_t count, int levels, CT *restrict out) {
    int have = 0;
    for (int l = 0; l < levels; l++) {
        const CT *s = stack + l * stride;
        if ((count >> l) & 1) {
            if (have) for (int64_t w = 0; w < width; w++) out[w] = s[w] + out[w];
            else for (int64_t w = 0; w < width; w++) out[w] = s[w] + AF_ZERO;
            have = 1;
        } else if (have) {
            for (int64_t w = 0; w < width; w++) out[w] = out[w] + AF_ZERO;
        }
    }
    if (!have) memcpy(out, stack + levels * stride, (size_t)width * sizeof(CT));
}

/* The lanes of a row sum added by halves (in place); the sum. */
static inline CT KNAME(af_halves)(CT *x) {
    for (int h = AF_LANES / 2; h; h /= 2)
        for (int l = 0; l < h; l++) x[l] = x[l] + x[l + h];
    return x[0];
}

/* The pairwise sum of `count` vectors of `width`, `stride` apart, level by level in place: the sum in v[0..width). */
static void KNAME(af_tree)(CT *v, int64_t count, int64_t width, int64_t stride) {
    while (count > 1) {
        const int64_t half = count / 2;
        for (int64_t i = 0; i < half; i++) {
            CT *o = v + i * stride;
            const CT *a = v + 2 * i * stride, *b = a + stride;
            for (int64_t w = 0; w < width; w++) o[w] = a[w] + b[w];
        }
        if (count & 1) {
            CT *o = v + half * stride;
            const CT *a = v + 2 * half * stride;
            for (int64_t w = 0; w < width; w++) o[w] = a[w] + AF_ZERO;
        }
        count = half + (count & 1);
    }
}

/* Where a row's lanes end up: a row sum (one tile per row) or the tile's lanes. */
KINLINE KNAME(af_store_row)(CT *area, const af_tensor_t *T, int64_t row, int64_t c, CT (*st)[AF_LANES], int64_t count) {
    CT out[AF_LANES];
    KNAME(af_finish)(&st[0][0], AF_LANES, AF_LANES, count, T->col_level, out);
    if (T->ct == 1) area[row] = KNAME(af_halves)(out);
    else memcpy(area + row * T->lpr + c * AF_LANES, out, sizeof out);
}

/* A tile's rows, columns and blocks. */
#define AF_TILE_BOUNDS                                                                               \
    const int64_t c = local % T->ct, r = (local / T->ct) % T->rt, bb = local / (T->ct * T->rt);     \
    const int64_t m = T->m, n = T->n;                                                                \
    const int64_t i0 = r << T->row_level, i1 = af_min64(i0 + ((int64_t)1 << T->row_level), m);       \
    const int64_t k0 = c << T->col_level, k1 = af_min64(k0 + ((int64_t)1 << T->col_level), T->nb);  \
    const int64_t j0 = k0 * AF_LANES, j1 = af_min64(k1 * AF_LANES, n), w = j1 - j0;                  \
    (void)w

/* Pass A of a factored tile: the rows' sums of g^2 and p^2, the tile's column sums of g^2. Each row goes in
 * chunks of AF_CHUNK elements: the squares into buffers (zero-padded to whole blocks), which feed the column counter
 * and the rows' lane counters. */
static void KNAME(af_rows_a)(const job_t *j, int t, const af_tensor_t *T, CT *area, CT *stack, int64_t local) {
    KPROLOGUE;
    AF_TILE_BOUNDS;
    CT sq[AF_CHUNK], pq[AF_CHUNK];
    for (int64_t i = i0; i < i1; i++) {
        const int64_t row = bb * m + i, count = i - i0;
        const PT *gr = g + row * n + j0, *pr = p + row * n + j0;
        int tz = 0;
        while ((count >> tz) & 1) tz++;
        CT *first = stack + (tz == 1 ? w : 0); /* the leaf (tz 0) or the first node over it */
        CT lg[16][AF_LANES], lp[16][AF_LANES];
        const int one = T->ct == 1 && w <= AF_CHUNK; /* the whole row in one chunk: its tree summed in place */
        for (int64_t at = 0; at < w; at += AF_CHUNK) {
            const int64_t len = w - at < AF_CHUNK ? w - at : AF_CHUNK, blocks = (len + AF_LANES - 1) / AF_LANES;
            for (int64_t x = 0; x < len; x++) {
                const CT gi = NEG(LDP(gr[at + x]), sign), pi = LDP(pr[at + x]);
                sq[x] = gi * gi;
                pq[x] = pi * pi;
            }
            for (int64_t x = len; x < blocks * AF_LANES; x++) sq[x] = pq[x] = AF_ZERO;
            if (tz == 0) memcpy(first + at, sq, (size_t)len * sizeof(CT));
            else for (int64_t x = 0; x < len; x++) first[at + x] = stack[at + x] + sq[x];
            if (one) {
                KNAME(af_tree)(sq, blocks, AF_LANES, AF_LANES);
                KNAME(af_tree)(pq, blocks, AF_LANES, AF_LANES);
                area[T->rowg + row] = KNAME(af_halves)(sq);
                area[T->rowp + row] = KNAME(af_halves)(pq);
            } else {
                KNAME(af_push_blocks)(lg, sq, blocks, at / AF_LANES);
                KNAME(af_push_blocks)(lp, pq, blocks, at / AF_LANES);
            }
        }
        for (int l = 1; l < tz; l++) {
            CT *dst = stack + (l == tz - 1 ? tz : l) * w;
            const CT *s = stack + l * w, *prev = stack + (l - 1) * w;
            for (int64_t jj = 0; jj < w; jj++) dst[jj] = s[jj] + prev[jj];
        }
        if (!one) {
            KNAME(af_store_row)(area + T->rowg, T, row, c, lg, k1 - k0);
            KNAME(af_store_row)(area + T->rowp, T, row, c, lp, k1 - k0);
        }
    }
    KNAME(af_finish)(stack, w, w, i1 - i0, T->row_level, area + T->colpart + (bb * T->rt + r) * n + j0);
}

/* U of one element of a factored tensor, from the roots of its row's and column's averages (pass B). */
#define AF_U(gi, ri, cj) ((gi) / NP_MAXIMUM((ri) * (cj), floor))

/* Pass C of a factored tile: each row's sum of U^2, in chunks as pass A. */
static void KNAME(af_rows_c)(const job_t *j, int t, const af_tensor_t *T, CT *area, int64_t local) {
    KPROLOGUE;
    AF_TILE_BOUNDS;
    (void)p;
    const CT floor = VAL(adafactor, eps1_floor);
    const CT *cb = area + T->c + bb * n + j0;
    CT uq[AF_CHUNK];
    for (int64_t i = i0; i < i1; i++) {
        const int64_t row = bb * m + i;
        const PT *gr = g + row * n + j0;
        const CT ri = area[T->r + row];
        CT lu[16][AF_LANES];
        const int one = T->ct == 1 && w <= AF_CHUNK; /* as in pass A */
        for (int64_t at = 0; at < w; at += AF_CHUNK) {
            const int64_t len = w - at < AF_CHUNK ? w - at : AF_CHUNK, blocks = (len + AF_LANES - 1) / AF_LANES;
            for (int64_t x = 0; x < len; x++) {
                const CT u = AF_U(NEG(LDP(gr[at + x]), sign), ri, cb[at + x]);
                uq[x] = u * u;
            }
            for (int64_t x = len; x < blocks * AF_LANES; x++) uq[x] = AF_ZERO;
            if (one) {
                KNAME(af_tree)(uq, blocks, AF_LANES, AF_LANES);
                area[T->rowu + row] = KNAME(af_halves)(uq);
            } else {
                KNAME(af_push_blocks)(lu, uq, blocks, at / AF_LANES);
            }
        }
        if (!one) KNAME(af_store_row)(area + T->rowu, T, row, c, lu, k1 - k0);
    }
}

/* Pass E of a factored tile: the parameters. */
static void KNAME(af_rows_e)(const job_t *j, int t, const af_tensor_t *T, CT *area, int64_t local) {
    KPROLOGUE;
    AF_TILE_BOUNDS;
    const int decay = (j->flags >> adafactor_f_decay) & 1u;
    const CT floor = VAL(adafactor, eps1_floor), factor = VAL(adafactor, decay_factor);
    const CT step = area[T->scal + 1];
    const CT *cb = area + T->c + bb * n + j0;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t row = bb * m + i;
        const PT *gr = g + row * n + j0;
        PT *pr = p + row * n + j0;
        const CT ri = area[T->r + row];
        for (int64_t jj = 0; jj < w; jj++) {
            CT pi = LDP(pr[jj]);
            if (decay) pi = pi * factor;
            const CT u = AF_U(NEG(LDP(gr[jj]), sign), ri, cb[jj]);
            pi = pi - step * u;
            pr[jj] = STP(pi);
        }
    }
}

/* lerp of v towards target, in torch's two forms. */
#define AF_LERP(v, target) (high ? (target) - ((target) - (v)) * omw : (v) + weight * ((target) - (v)))

/* The scale of the step, from the sums of p^2 and U^2 of a tensor. */
KINLINE KNAME(af_scale)(const job_t *j, const af_tensor_t *T, CT *area, CT p_sum, CT u_sum) {
    const CT eps2 = VAL(adafactor, eps2), rho = VAL(adafactor, rho), d = VAL(adafactor, d), size = (CT)T->size;
    const CT alpha = NP_MAXIMUM(SQRT(p_sum / size), eps2) * rho;
    const CT clip = NP_MAXIMUM(SQRT(u_sum / size) / d, (CT)1);
    area[T->scal] = alpha;
    area[T->scal + 1] = alpha / clip;
}

/* Pass B of a factored tensor: the new averages (written), the floor of the estimate's denominator, alpha. */
static void KNAME(af_rows_b)(const job_t *j, int t, const af_tensor_t *T, CT *area) {
    ST *row_var = SLOT(adafactor, row_var), *col_var = SLOT(adafactor, col_var);
    const int high = (j->flags >> adafactor_f_high_weight) & 1u;
    const CT weight = VAL(adafactor, weight), omw = VAL(adafactor, one_minus_weight), eps1 = VAL(adafactor, eps1);
    const int64_t m = T->m, n = T->n, lpr = T->lpr;
    CT *rowg = area + T->rowg, *rowp = area + T->rowp, *rr = area + T->r, *cc = area + T->c, *tmp = area + T->tmp;
    for (int64_t bb = 0; bb < T->b; bb++) {
        for (int64_t i = 0; i < m; i++) {
            const int64_t row = bb * m + i;
            if (T->ct > 1) {
                KNAME(af_tree)(rowg + row * lpr, T->ct, AF_LANES, AF_LANES);
                KNAME(af_halves)(rowg + row * lpr);
                KNAME(af_tree)(rowp + row * lpr, T->ct, AF_LANES, AF_LANES);
                KNAME(af_halves)(rowp + row * lpr);
            }
            const CT mean = rowg[row * lpr] / (CT)n, v = LDS(row_var[row]);
            rr[row] = AF_LERP(v, mean);
            row_var[row] = STS(rr[row], row, 0);
        }
        CT *part = area + T->colpart + bb * T->rt * n;
        KNAME(af_tree)(part, T->rt, n, n);
        for (int64_t jj = 0; jj < n; jj++) {
            const CT mean = part[jj] / (CT)m, v = LDS(col_var[bb * n + jj]);
            cc[bb * n + jj] = AF_LERP(v, mean);
            col_var[bb * n + jj] = STS(cc[bb * n + jj], bb * n + jj, 1);
        }
        memcpy(tmp, rr + bb * m, (size_t)m * sizeof(CT));
        KNAME(af_tree)(tmp, m, 1, 1);
        const CT den = NP_MAXIMUM(tmp[0] / (CT)m, eps1);
        for (int64_t i = 0; i < m; i++) rr[bb * m + i] = SQRT(rr[bb * m + i]); /* the roots passes C and E read */
        for (int64_t jj = 0; jj < n; jj++) cc[bb * n + jj] = SQRT(cc[bb * n + jj] / den);
        KNAME(af_tree)(rowp + bb * m * lpr, m, 1, lpr);
        area[T->bt + bb] = rowp[bb * m * lpr];
    }
    KNAME(af_tree)(area + T->bt, T->b, 1, 1);
    area[T->scal] = area[T->bt];
}

/* Pass D of a factored tensor: the sum of U^2, so the step's scale. */
static void KNAME(af_rows_d)(const job_t *j, const af_tensor_t *T, CT *area) {
    const int64_t m = T->m, lpr = T->lpr;
    CT *rowu = area + T->rowu;
    for (int64_t bb = 0; bb < T->b; bb++) {
        for (int64_t i = 0; T->ct > 1 && i < m; i++) {
            KNAME(af_tree)(rowu + (bb * m + i) * lpr, T->ct, AF_LANES, AF_LANES);
            KNAME(af_halves)(rowu + (bb * m + i) * lpr);
        }
        KNAME(af_tree)(rowu + bb * m * lpr, m, 1, lpr);
        area[T->bt + bb] = rowu[bb * m * lpr];
    }
    KNAME(af_tree)(area + T->bt, T->b, 1, 1);
    KNAME(af_scale)(j, T, area, area[T->scal], area[T->bt]);
}

/* The full average's new value and U, for one element of a vector. */
#define AF_VEC(gi, v, vn, u)                                                                                           \
    const CT vn = AF_LERP(v, (gi) * (gi));                                                                            \
    const CT u = (gi) / NP_MAXIMUM(SQRT(vn), floor)

/* Pass A of a vector's tile: its lanes of U^2 and p^2 (nothing written but scratch), in chunks as above. */
static void KNAME(af_vec_a)(const job_t *j, int t, const af_tensor_t *T, CT *area, int64_t local) {
    KPROLOGUE;
    const ST *var = SLOT(adafactor, variance);
    const int high = (j->flags >> adafactor_f_high_weight) & 1u;
    const CT weight = VAL(adafactor, weight), omw = VAL(adafactor, one_minus_weight);
    const CT floor = VAL(adafactor, eps1_floor);
    const int64_t c = local, k0 = c << T->col_level, k1 = af_min64(k0 + ((int64_t)1 << T->col_level), T->nb);
    const int64_t j0 = k0 * AF_LANES, w = af_min64(k1 * AF_LANES, T->n) - j0;
    CT lu[16][AF_LANES], lp[16][AF_LANES], uq[AF_CHUNK], pq[AF_CHUNK];
    for (int64_t at = 0; at < w; at += AF_CHUNK) {
        const int64_t len = w - at < AF_CHUNK ? w - at : AF_CHUNK, blocks = (len + AF_LANES - 1) / AF_LANES;
        for (int64_t x = 0; x < len; x++) {
            const int64_t jj = j0 + at + x;
            const CT gi = NEG(LDP(g[jj]), sign), v = LDS(var[jj]), pi = LDP(p[jj]);
            AF_VEC(gi, v, vn, u);
            uq[x] = u * u;
            pq[x] = pi * pi;
        }
        for (int64_t x = len; x < blocks * AF_LANES; x++) uq[x] = pq[x] = AF_ZERO;
        if (T->ct == 1 && w <= AF_CHUNK) { /* the whole vector in one chunk: its tree summed in place */
            KNAME(af_tree)(uq, blocks, AF_LANES, AF_LANES);
            KNAME(af_tree)(pq, blocks, AF_LANES, AF_LANES);
            memcpy(area + T->rowu, uq, AF_LANES * sizeof(CT));
            memcpy(area + T->rowp, pq, AF_LANES * sizeof(CT));
            return;
        }
        KNAME(af_push_blocks)(lu, uq, blocks, at / AF_LANES);
        KNAME(af_push_blocks)(lp, pq, blocks, at / AF_LANES);
    }
    KNAME(af_finish)(&lu[0][0], AF_LANES, AF_LANES, k1 - k0, T->col_level, area + T->rowu + c * AF_LANES);
    KNAME(af_finish)(&lp[0][0], AF_LANES, AF_LANES, k1 - k0, T->col_level, area + T->rowp + c * AF_LANES);
}

/* Pass B of a vector: its sums, so the step's scale. */
static void KNAME(af_vec_b)(const job_t *j, const af_tensor_t *T, CT *area) {
    KNAME(af_tree)(area + T->rowp, T->ct, AF_LANES, AF_LANES);
    KNAME(af_tree)(area + T->rowu, T->ct, AF_LANES, AF_LANES);
    const CT p_sum = KNAME(af_halves)(area + T->rowp), u_sum = KNAME(af_halves)(area + T->rowu);
    KNAME(af_scale)(j, T, area, p_sum, u_sum);
}

/* Pass E of a vector's tile: its average and its parameters. */
static void KNAME(af_vec_e)(const job_t *j, int t, const af_tensor_t *T, CT *area, int64_t local) {
    KPROLOGUE;
    ST *var = SLOT(adafactor, variance);
    const int high = (j->flags >> adafactor_f_high_weight) & 1u, decay = (j->flags >> adafactor_f_decay) & 1u;
    const CT weight = VAL(adafactor, weight), omw = VAL(adafactor, one_minus_weight);
    const CT floor = VAL(adafactor, eps1_floor), factor = VAL(adafactor, decay_factor), step = area[T->scal + 1];
    const int64_t j0 = (local << T->col_level) * AF_LANES, j1 = af_min64(j0 + (AF_LANES << T->col_level), T->n);
    for (int64_t jj = j0; jj < j1; jj++) {
        const CT gi = NEG(LDP(g[jj]), sign), v = LDS(var[jj]);
        AF_VEC(gi, v, vn, u);
        var[jj] = STS(vn, jj, 2);
        CT pi = LDP(p[jj]);
        if (decay) pi = pi * factor;
        pi = pi - step * u;
        p[jj] = STP(pi);
    }
}

void KNAME(adafactor)(const job_t *j, void *scratch, int threads) {
    af_plan_t plan;
    af_layout(j, threads, (int)sizeof(CT), scratch, &plan);
    const int factored = j->state[adafactor_s_row_var] != NULL, n = j->n;
    CT *area = (CT *)plan.base;
    const int64_t tiles = plan.tiles;
    const int team = j->offsets[n] < AF_SERIAL ? 1 : threads;
#pragma omp parallel num_threads(team)
    {
        CT *stack = area + plan.entries + (size_t)omp_get_thread_num() * plan.stack;
#pragma omp for schedule(dynamic, 1)
        for (int64_t id = 0; id < tiles; id++) {
            const int t = af_tensor_of(&plan, n, id);
            const af_tensor_t *T = &plan.t[t];
            if (factored) KNAME(af_rows_a)(j, t, T, area, stack, id - T->first);
            else KNAME(af_vec_a)(j, t, T, area, id - T->first);
        }
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < n; t++) {
            if (plan.t[t].size == 0) continue;
            if (factored) KNAME(af_rows_b)(j, t, &plan.t[t], area);
            else KNAME(af_vec_b)(j, &plan.t[t], area);
        }
        if (factored) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t id = 0; id < tiles; id++) {
                const int t = af_tensor_of(&plan, n, id);
                KNAME(af_rows_c)(j, t, &plan.t[t], area, id - plan.t[t].first);
            }
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < n; t++)
                if (plan.t[t].size > 0) KNAME(af_rows_d)(j, &plan.t[t], area);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t id = 0; id < tiles; id++) {
            const int t = af_tensor_of(&plan, n, id);
            const af_tensor_t *T = &plan.t[t];
            if (factored) KNAME(af_rows_e)(j, t, T, area, id - T->first);
            else KNAME(af_vec_e)(j, t, T, area, id - T->first);
        }
    }
}

#undef AF_ZERO
#undef AF_TILE_BOUNDS
#undef AF_U
#undef AF_LERP
#undef AF_VEC
#endif
