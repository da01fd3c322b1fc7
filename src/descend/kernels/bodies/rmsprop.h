/* rmsprop: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(rmsprop_f_maximize == 0 && rmsprop_f_weight_decay == 1 && rmsprop_f_centered == 2 && rmsprop_f_use_momentum == 3, "rmsprop's flag bits are in _layout.py's order");

KINLINE KNAME(rmsprop_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, centered = (f >> 1) & 1u, mom = (f >> 2) & 1u;
    ST *restrict sq_avg = (ST *)j->state[rmsprop_s_square_avg][t];
    ST *restrict g_avg = centered ? (ST *)j->state[rmsprop_s_grad_avg][t] : NULL;
    ST *restrict buf = mom ? (ST *)j->state[rmsprop_s_momentum_buffer][t] : NULL;
    const CT wd = (CT)j->values[rmsprop_v_weight_decay], alpha = (CT)j->values[rmsprop_v_alpha], oma = (CT)j->values[rmsprop_v_one_minus_alpha];
    const CT eps_root = (CT)j->values[rmsprop_v_eps_root], eps = (CT)j->values[rmsprop_v_eps], mu = (CT)j->values[rmsprop_v_momentum], neg_lr = (CT)j->values[rmsprop_v_neg_lr];
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT sq = LDS(sq_avg[i]);
        sq = sq * alpha;
        sq = sq + (oma * gi) * gi;
        sq_avg[i] = STS(sq);
        CT avg;
        if (centered) {
            CT ga = LDS(g_avg[i]);
            ga = ga + oma * (gi - ga);
            g_avg[i] = STS(ga);
            avg = SQRT((sq - ga * ga) + eps_root) + eps;
        } else {
            avg = SQRT(sq + eps_root) + eps;
        }
        if (mom) {
            CT b = LDS(buf[i]);
            b = b * mu;
            b = b + gi / avg;
            buf[i] = STS(b);
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
