/* adam: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(adam_f_maximize == 0 && adam_f_l2 == 1 && adam_f_decoupled == 2 && adam_f_amsgrad == 3, "adam's flag bits are in _layout.py's order");

KINLINE KNAME(adam_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int l2_on = f & 1u, decoupled = (f >> 1) & 1u, amsgrad = (f >> 2) & 1u;
    ST *restrict exp_avg = SLOT(adam, exp_avg);
    ST *restrict exp_avg_sq = SLOT(adam, exp_avg_sq);
    ST *restrict max_sq = amsgrad ? SLOT(adam, max_exp_avg_sq) : NULL;
    const CT l2 = VAL(adam, l2), decay = VAL(adam, decay_factor), omb1 = VAL(adam, one_minus_beta1), beta2 = VAL(adam, beta2);
    const CT omb2 = VAL(adam, one_minus_beta2), ams_div = VAL(adam, amsgrad_div), root_add = VAL(adam, root_add);
    const CT root_div = VAL(adam, root_div), eps = VAL(adam, eps), neg_step = VAL(adam, neg_step_size);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (l2_on) gi = gi + l2 * pi;
        if (decoupled) pi = pi * decay;
        CT m = LDS(exp_avg[i]);
        m = m + omb1 * (gi - m);
        exp_avg[i] = STS(m, i, adam_s_exp_avg);
        CT v = LDS(exp_avg_sq[i]);
        v = v * beta2;
        v = v + (omb2 * gi) * gi;
        exp_avg_sq[i] = STS(v, i, adam_s_exp_avg_sq);
        CT second = v;
        if (amsgrad) {
            const CT a = LDS(max_sq[i]);
            const CT b = v / ams_div;
            second = NP_MAXIMUM(a, b);
            max_sq[i] = STS(second, i, adam_s_max_exp_avg_sq);
        }
        const CT denom = SQRT(second + root_add) / root_div + eps;
        pi = pi + (neg_step * m) / denom;
        p[i] = STP(pi);
    }
}

void KNAME(adam)(KRANGE_ARGS) {
    SWITCH8(KNAME(adam_body), (j->flags >> 1) & 7u, j, t, lo, hi)
}
