/* nadam: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(nadam_f_maximize == 0 && nadam_f_l2 == 1 && nadam_f_decoupled == 2, "nadam's flag bits are in _layout.py's order");

KINLINE KNAME(nadam_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int l2_on = f & 1u, decoupled = (f >> 1) & 1u;
    ST *restrict exp_avg = SLOT(nadam, exp_avg);
    ST *restrict exp_avg_sq = SLOT(nadam, exp_avg_sq);
    const CT l2 = VAL(nadam, l2), decay = VAL(nadam, decay_factor), omb1 = VAL(nadam, one_minus_beta1), beta2 = VAL(nadam, beta2);
    const CT omb2 = VAL(nadam, one_minus_beta2), bc2 = VAL(nadam, bias_correction2), eps = VAL(nadam, eps);
    const CT grad_coef = VAL(nadam, grad_coef), exp_avg_coef = VAL(nadam, exp_avg_coef);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (l2_on) gi = gi + l2 * pi;
        if (decoupled) pi = pi * decay;
        CT m = LDS(exp_avg[i]);
        m = m + omb1 * (gi - m);
        exp_avg[i] = STS(m, i, nadam_s_exp_avg);
        CT v = LDS(exp_avg_sq[i]);
        v = v * beta2;
        v = v + (omb2 * gi) * gi;
        exp_avg_sq[i] = STS(v, i, nadam_s_exp_avg_sq);
        const CT denom = SQRT(v / bc2) + eps;
        pi = pi + (grad_coef * gi) / denom;
        pi = pi + (exp_avg_coef * m) / denom;
        p[i] = STP(pi);
    }
}

void KNAME(nadam)(KRANGE_ARGS) {
    SWITCH4(KNAME(nadam_body), (j->flags >> 1) & 3u, j, t, lo, hi)
}
