/* rmsprop: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(rmsprop_f_maximize == 0 && rmsprop_f_weight_decay == 1 && rmsprop_f_centered == 2 && rmsprop_f_use_momentum == 3, "rmsprop's flag bits are in _layout.py's order");

KINLINE KNAME(rmsprop_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, centered = (f >> 1) & 1u, mom = (f >> 2) & 1u;
    ST *restrict sq_avg = SLOT(rmsprop, square_avg);
    ST *restrict g_avg = centered ? SLOT(rmsprop, grad_avg) : NULL;
    ST *restrict buf = mom ? SLOT(rmsprop, momentum_buffer) : NULL;
    const CT wd = VAL(rmsprop, weight_decay), alpha = VAL(rmsprop, alpha), oma = VAL(rmsprop, one_minus_alpha);
    const CT eps_root = VAL(rmsprop, eps_root), eps = VAL(rmsprop, eps), mu = VAL(rmsprop, momentum), neg_lr = VAL(rmsprop, neg_lr);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT sq = LDS(sq_avg[i]);
        sq = sq * alpha;
        sq = sq + (oma * gi) * gi;
        sq_avg[i] = STS(sq, i, rmsprop_s_square_avg);
        CT avg;
        if (centered) {
            CT ga = LDS(g_avg[i]);
            ga = ga + oma * (gi - ga);
            g_avg[i] = STS(ga, i, rmsprop_s_grad_avg);
            avg = SQRT((sq - ga * ga) + eps_root) + eps;
        } else {
            avg = SQRT(sq + eps_root) + eps;
        }
        if (mom) {
            CT b = LDS(buf[i]);
            b = b * mu;
            b = b + gi / avg;
            buf[i] = STS(b, i, rmsprop_s_momentum_buffer);
            pi = pi + neg_lr * b;
        } else {
            pi = pi + (neg_lr * gi) / avg;
        }
        p[i] = STP(pi);
    }
}

void KNAME(rmsprop)(KRANGE_ARGS) {
    SWITCH8(KNAME(rmsprop_body), (j->flags >> 1) & 7u, j, t, lo, hi)
}
