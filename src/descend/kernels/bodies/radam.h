/* radam: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(radam_f_maximize == 0 && radam_f_l2 == 1 && radam_f_decoupled == 2 && radam_f_rectify == 3, "radam's flag bits are in _layout.py's order");

KINLINE KNAME(radam_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int l2_on = f & 1u, decoupled = (f >> 1) & 1u, rectify = (f >> 2) & 1u;
    ST *restrict exp_avg = SLOT(radam, exp_avg);
    ST *restrict exp_avg_sq = SLOT(radam, exp_avg_sq);
    const CT l2 = VAL(radam, l2), decay = VAL(radam, decay_factor), omb1 = VAL(radam, one_minus_beta1), beta2 = VAL(radam, beta2);
    const CT omb2 = VAL(radam, one_minus_beta2), bc1 = VAL(radam, bias_correction1), lr = VAL(radam, lr);
    const CT bc2_sqrt = VAL(radam, bias_correction2_sqrt), eps = VAL(radam, eps), rect = VAL(radam, rect);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (l2_on) gi = gi + l2 * pi;
        if (decoupled) pi = pi * decay;
        CT m = LDS(exp_avg[i]);
        m = m + omb1 * (gi - m);
        exp_avg[i] = STS(m, i, radam_s_exp_avg);
        CT v = LDS(exp_avg_sq[i]);
        v = v * beta2;
        v = v + (omb2 * gi) * gi;
        exp_avg_sq[i] = STS(v, i, radam_s_exp_avg_sq);
        CT update = (m / bc1) * lr;
        if (rectify) update = (update * (bc2_sqrt / (SQRT(v) + eps))) * rect;
        pi = pi - update;
        p[i] = STP(pi);
    }
}

void KNAME(radam)(KRANGE_ARGS) {
    SWITCH8(KNAME(radam_body), (j->flags >> 1) & 7u, j, t, lo, hi)
}
