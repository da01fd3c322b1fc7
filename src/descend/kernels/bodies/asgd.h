/* asgd: restates its algorithm's reference_update operation by operation. Its values, flag bits and state slots are
 * named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(asgd_f_maximize == 0 && asgd_f_weight_decay == 1 && asgd_f_average == 2, "asgd's flag bits are in _layout.py's order");

KINLINE KNAME(asgd_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, average = (f >> 1) & 1u;
    ST *restrict ax = SLOT(asgd, ax);
    const CT wd = VAL(asgd, weight_decay), decay = VAL(asgd, decay_factor), neg_eta = VAL(asgd, neg_eta);
    const CT mu = VAL(asgd, mu);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        pi = pi * decay;
        pi = pi + neg_eta * gi;
        p[i] = STP(pi);
        if (average) {
            CT a = LDS(ax[i]);
            a = a + (pi - a) * mu;
            ax[i] = STS(a, i, asgd_s_ax);
        } else {
            ax[i] = STS(pi, i, asgd_s_ax);
        }
    }
}

void KNAME(asgd)(KRANGE_ARGS) {
    SWITCH4(KNAME(asgd_body), (j->flags >> 1) & 3u, j, t, lo, hi)
}
