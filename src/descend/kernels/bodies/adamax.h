/* adamax: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(adamax_f_maximize == 0 && adamax_f_weight_decay == 1, "adamax's flag bits are in _layout.py's order");

KINLINE KNAME(adamax_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u;
    ST *restrict exp_avg = SLOT(adamax, exp_avg);
    ST *restrict exp_inf = SLOT(adamax, exp_inf);
    const CT wd = VAL(adamax, weight_decay), omb1 = VAL(adamax, one_minus_beta1), beta2 = VAL(adamax, beta2);
    const CT eps_in = VAL(adamax, eps_in), eps_out = VAL(adamax, eps_out), neg_clr = VAL(adamax, neg_clr);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT m = LDS(exp_avg[i]);
        m = m + omb1 * (gi - m);
        exp_avg[i] = STS(m, i, adamax_s_exp_avg);
        CT u = LDS(exp_inf[i]);
        u = u * beta2;
        const CT b = ABS(gi) + eps_in;
        u = NP_MAXIMUM(u, b);
        exp_inf[i] = STS(u, i, adamax_s_exp_inf);
        pi = pi + (neg_clr * m) / (u + eps_out);
        p[i] = STP(pi);
    }
}

void KNAME(adamax)(KRANGE_ARGS) {
    SWITCH2(KNAME(adamax_body), (j->flags >> 1) & 1u, j, t, lo, hi)
}
