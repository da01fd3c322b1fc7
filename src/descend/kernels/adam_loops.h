/* Adam (with AMSGrad, AdamW and the eps/bias-correction variants, all folded into the host scalars) and Adamax; see
 * descend.algorithms.adam and .adamax, whose reference_update these loops restate operation by operation.
 *
 * Adam   flags: bit0 maximize, bit1 L2 weight decay, bit2 decoupled weight decay, bit3 AMSGrad.
 *        values: l2, decay_factor, one_minus_beta1, beta2, one_minus_beta2, amsgrad_div, root_add, root_div, eps,
 *                neg_step_size.
 *        state: exp_avg, exp_avg_sq, max_exp_avg_sq (AMSGrad).
 * Adamax flags: bit0 maximize, bit1 weight decay.
 *        values: weight_decay, one_minus_beta1, beta2, eps_in, eps_out, neg_clr.  state: exp_avg, exp_inf.
 */
KINLINE KNAME(adam_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int l2_on = f & 1u, decoupled = (f >> 1) & 1u, amsgrad = (f >> 2) & 1u;
    ST *restrict exp_avg = (ST *)j->state[0][t];
    ST *restrict exp_avg_sq = (ST *)j->state[1][t];
    ST *restrict max_sq = amsgrad ? (ST *)j->state[2][t] : NULL;
    const CT l2 = (CT)j->values[0], decay = (CT)j->values[1], omb1 = (CT)j->values[2], beta2 = (CT)j->values[3];
    const CT omb2 = (CT)j->values[4], ams_div = (CT)j->values[5], root_add = (CT)j->values[6];
    const CT root_div = (CT)j->values[7], eps = (CT)j->values[8], neg_step = (CT)j->values[9];
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
        CT second = v;
        if (amsgrad) {
            const CT a = LDS(max_sq[i]);
            const CT b = v / ams_div;
            second = NP_MAXIMUM(a, b);
            max_sq[i] = STS(second);
        }
        const CT denom = SQRT(second + root_add) / root_div + eps;
        pi = pi + (neg_step * m) / denom;
        p[i] = STP(pi);
    }
}

void KNAME(adam)(KRANGE_ARGS) {
    SWITCH8(KNAME(adam_body), (j->flags >> 1) & 7u, j, t, lo, hi)
}

KINLINE KNAME(adamax_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u;
    ST *restrict exp_avg = (ST *)j->state[0][t];
    ST *restrict exp_inf = (ST *)j->state[1][t];
    const CT wd = (CT)j->values[0], omb1 = (CT)j->values[1], beta2 = (CT)j->values[2];
    const CT eps_in = (CT)j->values[3], eps_out = (CT)j->values[4], neg_clr = (CT)j->values[5];
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT m = LDS(exp_avg[i]);
        m = m + omb1 * (gi - m);
        exp_avg[i] = STS(m);
        CT u = LDS(exp_inf[i]);
        u = u * beta2;
        const CT b = ABS(gi) + eps_in;
        u = NP_MAXIMUM(u, b);
        exp_inf[i] = STS(u);
        pi = pi + (neg_clr * m) / (u + eps_out);
        p[i] = STP(pi);
    }
}

void KNAME(adamax)(KRANGE_ARGS) {
    SWITCH2(KNAME(adamax_body), (j->flags >> 1) & 1u, j, t, lo, hi)
}
