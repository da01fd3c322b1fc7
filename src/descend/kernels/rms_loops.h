/* RMSprop, AdaGrad and Adadelta; see descend.algorithms.rmsprop, .adagrad and .adadelta, whose reference_update
 * these loops restate operation by operation.
 *
 * RMSprop  flags: bit0 maximize, bit1 weight decay, bit2 centered, bit3 momentum.
 *          values: weight_decay, alpha, one_minus_alpha, eps_root, eps, momentum, neg_lr.
 *          state: square_avg, grad_avg (centered), momentum_buffer (momentum).
 * AdaGrad  flags: bit0 maximize, bit1 weight decay.  values: weight_decay, eps_root, eps, neg_clr.  state: sum.
 * Adadelta flags: bit0 maximize, bit1 weight decay.  values: weight_decay, rho, one_minus_rho, eps, neg_lr.
 *          state: square_avg, acc_delta.
 */
KINLINE KNAME(rmsprop_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, centered = (f >> 1) & 1u, mom = (f >> 2) & 1u;
    ST *restrict sq_avg = (ST *)j->state[0][t];
    ST *restrict g_avg = centered ? (ST *)j->state[1][t] : NULL;
    ST *restrict buf = mom ? (ST *)j->state[2][t] : NULL;
    const CT wd = (CT)j->values[0], alpha = (CT)j->values[1], oma = (CT)j->values[2];
    const CT eps_root = (CT)j->values[3], eps = (CT)j->values[4], mu = (CT)j->values[5], neg_lr = (CT)j->values[6];
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

KINLINE KNAME(adagrad_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u;
    ST *restrict sum = (ST *)j->state[0][t];
    const CT wd = (CT)j->values[0], eps_root = (CT)j->values[1], eps = (CT)j->values[2], neg_clr = (CT)j->values[3];
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT s = LDS(sum[i]);
        s = s + gi * gi;
        sum[i] = STS(s);
        const CT std = SQRT(s + eps_root) + eps;
        pi = pi + (neg_clr * gi) / std;
        p[i] = STP(pi);
    }
}

void KNAME(adagrad)(KRANGE_ARGS) {
    SWITCH2(KNAME(adagrad_body), (j->flags >> 1) & 1u, j, t, lo, hi)
}

KINLINE KNAME(adadelta_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u;
    ST *restrict sq_avg = (ST *)j->state[0][t];
    ST *restrict acc_delta = (ST *)j->state[1][t];
    const CT wd = (CT)j->values[0], rho = (CT)j->values[1], omr = (CT)j->values[2];
    const CT eps = (CT)j->values[3], neg_lr = (CT)j->values[4];
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT sq = LDS(sq_avg[i]);
        sq = sq * rho;
        sq = sq + (omr * gi) * gi;
        sq_avg[i] = STS(sq);
        const CT std = SQRT(sq + eps);
        CT acc = LDS(acc_delta[i]);
        const CT delta = (SQRT(acc + eps) / std) * gi;
        acc = acc * rho;
        acc = acc + (omr * delta) * delta;
        acc_delta[i] = STS(acc);
        pi = pi + neg_lr * delta;
        p[i] = STP(pi);
    }
}

void KNAME(adadelta)(KRANGE_ARGS) {
    SWITCH2(KNAME(adadelta_body), (j->flags >> 1) & 1u, j, t, lo, hi)
}
