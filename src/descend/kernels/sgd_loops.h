/* SGD (torch's heavy-ball and Nesterov momentum) and the article's Momentum; see descend.algorithms.sgd and
 * descend.algorithms.momentum, whose reference_update these loops restate operation by operation.
 *
 * SGD    flags: bit0 maximize, bit1 weight decay, bit2 momentum, bit3 first step, bit4 Nesterov.
 *        values: weight_decay, momentum, grad_scale, neg_lr.  state: momentum_buffer.
 * Momentum flags: bit0 maximize, bit1 weight decay, bit2 Nesterov.
 *        values: weight_decay, beta, one_minus_beta, neg_lr.  state: exp_avg.
 */
KINLINE KNAME(sgd_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, mom = (f >> 1) & 1u, first = (f >> 2) & 1u, nesterov = (f >> 3) & 1u;
    ST *restrict buf = mom ? (ST *)j->state[0][t] : NULL;
    const CT wd = (CT)j->values[0], mu = (CT)j->values[1], gs = (CT)j->values[2], neg_lr = (CT)j->values[3];
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        if (mom) {
            CT b;
            if (first) {
                b = gi;
            } else {
                b = LDS(buf[i]);
                b = b * mu;
                b = b + gs * gi;
            }
            buf[i] = STS(b);
            gi = nesterov ? gi + mu * b : b;
        }
        pi = pi + neg_lr * gi;
        p[i] = STP(pi);
    }
}

void KNAME(sgd)(KRANGE_ARGS) {
    SWITCH16(KNAME(sgd_body), (j->flags >> 1) & 15u, j, t, lo, hi)
}

KINLINE KNAME(momentum_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, nesterov = (f >> 1) & 1u;
    ST *restrict ea = (ST *)j->state[0][t];
    const CT wd = (CT)j->values[0], beta = (CT)j->values[1], omb = (CT)j->values[2], neg_lr = (CT)j->values[3];
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT v = LDS(ea[i]);
        v = v * beta;
        v = v + omb * gi;
        ea[i] = STS(v);
        const CT d = nesterov ? beta * v + omb * gi : v;
        pi = pi + neg_lr * d;
        p[i] = STP(pi);
    }
}

void KNAME(momentum)(KRANGE_ARGS) {
    SWITCH4(KNAME(momentum_body), (j->flags >> 1) & 3u, j, t, lo, hi)
}
