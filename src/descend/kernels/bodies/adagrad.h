/* adagrad: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(adagrad_f_maximize == 0 && adagrad_f_weight_decay == 1, "adagrad's flag bits are in _layout.py's order");

KINLINE KNAME(adagrad_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u;
    ST *restrict sum = SLOT(adagrad, sum);
    const CT wd = VAL(adagrad, weight_decay), eps_root = VAL(adagrad, eps_root), eps = VAL(adagrad, eps), neg_clr = VAL(adagrad, neg_clr);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT s = LDS(sum[i]);
        s = s + gi * gi;
        sum[i] = STS(s, i, adagrad_s_sum);
        const CT std = SQRT(s + eps_root) + eps;
        pi = pi + (neg_clr * gi) / std;
        p[i] = STP(pi);
    }
}

void KNAME(adagrad)(KRANGE_ARGS) {
    SWITCH2(KNAME(adagrad_body), (j->flags >> 1) & 1u, j, t, lo, hi)
}
