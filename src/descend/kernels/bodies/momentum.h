/* momentum: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(momentum_f_maximize == 0 && momentum_f_weight_decay == 1 && momentum_f_nesterov == 2, "momentum's flag bits are in _layout.py's order");

KINLINE KNAME(momentum_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, nesterov = (f >> 1) & 1u;
    ST *restrict ea = SLOT(momentum, exp_avg);
    const CT wd = VAL(momentum, weight_decay), beta = VAL(momentum, beta), omb = VAL(momentum, one_minus_beta), neg_lr = VAL(momentum, neg_lr);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT v = LDS(ea[i]);
        v = v * beta;
        v = v + omb * gi;
        ea[i] = STS(v, i, momentum_s_exp_avg);
        const CT d = nesterov ? beta * v + omb * gi : v;
        pi = pi + neg_lr * d;
        p[i] = STP(pi);
    }
}

void KNAME(momentum)(KRANGE_ARGS) {
    SWITCH4(KNAME(momentum_body), (j->flags >> 1) & 3u, j, t, lo, hi)
}
