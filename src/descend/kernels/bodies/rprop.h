/* rprop: restates its algorithm's reference_update operation by operation. Its values, flag bits and state slots are
 * named in descend/kernels/_layout.py; the build generates the indices used here. Every choice is a select on one
 * comparison, so the loop vectorises without branches.
 */
_Static_assert(rprop_f_maximize == 0, "rprop's flag bits are in _layout.py's order");

KINLINE KNAME(rprop_body)(KRANGE_ARGS) {
    KPROLOGUE;
    ST *restrict prev = SLOT(rprop, prev);
    ST *restrict step_size = SLOT(rprop, step_size);
    const CT etaminus = VAL(rprop, etaminus), etaplus = VAL(rprop, etaplus);
    const CT smin = VAL(rprop, step_size_min), smax = VAL(rprop, step_size_max);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        const CT gi = NEG(LDP(g[i]), sign);
        const CT agreement = gi * LDS(prev[i]);
        CT factor = (CT)1;
        factor = agreement > 0 ? etaplus : factor;
        factor = agreement < 0 ? etaminus : factor;
        CT ss = LDS(step_size[i]);
        ss = ss * factor;
        ss = ss < smin ? smin : ss;
        ss = ss > smax ? smax : ss;
        step_size[i] = STS(ss, i, rprop_s_step_size);
        const CT pv = agreement < 0 ? (CT)0 : gi;
        prev[i] = STS(pv, i, rprop_s_prev);
        pi = pi - KSIGN(pv) * ss;
        p[i] = STP(pi);
    }
}

void KNAME(rprop)(KRANGE_ARGS) {
    KNAME(rprop_body)(j, t, lo, hi);
}
