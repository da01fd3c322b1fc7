/* NAdam and RAdam; see descend.algorithms.nadam and .radam, whose reference_update these loops restate operation
 * by operation.
 *
 * NAdam  flags: bit0 maximize, bit1 L2 weight decay, bit2 decoupled weight decay.
 *        values: l2, decay_factor, one_minus_beta1, beta2, one_minus_beta2, bias_correction2, eps, grad_coef,
 *                exp_avg_coef.
 * RAdam  flags: bit0 maximize, bit1 L2 weight decay, bit2 decoupled weight decay, bit3 rectify.
 *        values: l2, decay_factor, one_minus_beta1, beta2, one_minus_beta2, bias_correction1, lr,
 *                bias_correction2_sqrt, eps, rect.
 * Both keep exp_avg and exp_avg_sq.
 */
KINLINE KNAME(nadam_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int l2_on = f & 1u, decoupled = (f >> 1) & 1u;
    ST *restrict exp_avg = (ST *)j->state[0][t];
    ST *restrict exp_avg_sq = (ST *)j->state[1][t];
    const CT l2 = (CT)j->values[0], decay = (CT)j->values[1], omb1 = (CT)j->values[2], beta2 = (CT)j->values[3];
    const CT omb2 = (CT)j->values[4], bc2 = (CT)j->values[5], eps = (CT)j->values[6];
    const CT grad_coef = (CT)j->values[7], exp_avg_coef = (CT)j->values[8];
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (l2_on) gi = gi + l2 * pi;
        if (decoupled) pi = pi * decay;
        CT m = LDS(exp_avg[i]);
        m = m + omb1 * (gi - m);
        exp_avg[i] = STS(m);
        CT v = LDS(exp_avg_sq[i]);
        v = v * beta2;
        v = v + (omb2 * gi) * gi;
        exp_avg_sq[i] = STS(v);
        const CT denom = SQRT(v / bc2) + eps;
        pi = pi + (grad_coef * gi) / denom;
        pi = pi + (exp_avg_coef * m) / denom;
        p[i] = STP(pi);
    }
}

void KNAME(nadam)(KRANGE_ARGS) {
    SWITCH4(KNAME(nadam_body), (j->flags >> 1) & 3u, j, t, lo, hi)
}

KINLINE KNAME(radam_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int l2_on = f & 1u, decoupled = (f >> 1) & 1u, rectify = (f >> 2) & 1u;
    ST *restrict exp_avg = (ST *)j->state[0][t];
    ST *restrict exp_avg_sq = (ST *)j->state[1][t];
    const CT l2 = (CT)j->values[0], decay = (CT)j->values[1], omb1 = (CT)j->values[2], beta2 = (CT)j->values[3];
    const CT omb2 = (CT)j->values[4], bc1 = (CT)j->values[5], lr = (CT)j->values[6];
    const CT bc2_sqrt = (CT)j->values[7], eps = (CT)j->values[8], rect = (CT)j->values[9];
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (l2_on) gi = gi + l2 * pi;
        if (decoupled) pi = pi * decay;
        CT m = LDS(exp_avg[i]);
        m = m + omb1 * (gi - m);
        exp_avg[i] = STS(m);
        CT v = LDS(exp_avg_sq[i]);
        v = v * beta2;
        v = v + (omb2 * gi) * gi;
        exp_avg_sq[i] = STS(v);
        CT update = (m / bc1) * lr;
        if (rectify) update = (update * (bc2_sqrt / (SQRT(v) + eps))) * rect;
        pi = pi - update;
        p[i] = STP(pi);
    }
}

void KNAME(radam)(KRANGE_ARGS) {
    SWITCH8(KNAME(radam_body), (j->flags >> 1) & 7u, j, t, lo, hi)
}
