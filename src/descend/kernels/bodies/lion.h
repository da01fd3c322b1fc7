/* lion: restates its algorithm's reference_update operation by operation. Its values, flag bits and state slots are
 * named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(lion_f_maximize == 0 && lion_f_decay == 1, "lion's flag bits are in _layout.py's order");

KINLINE KNAME(lion_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int decay_on = f & 1u;
    ST *restrict exp_avg = SLOT(lion, exp_avg);
    const CT decay = VAL(lion, decay_factor), beta1 = VAL(lion, beta1), omb1 = VAL(lion, one_minus_beta1);
    const CT beta2 = VAL(lion, beta2), omb2 = VAL(lion, one_minus_beta2), neg_lr = VAL(lion, neg_lr);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        const CT gi = NEG(LDP(g[i]), sign);
        if (decay_on) pi = pi * decay;
        CT m = LDS(exp_avg[i]);
        const CT c = m * beta1 + omb1 * gi;
        pi = pi + neg_lr * KSIGN(c);
        p[i] = STP(pi);
        m = m * beta2;
        m = m + omb2 * gi;
        exp_avg[i] = STS(m, i, lion_s_exp_avg);
    }
}

void KNAME(lion)(KRANGE_ARGS) {
    SWITCH2(KNAME(lion_body), (j->flags >> 1) & 1u, j, t, lo, hi)
}
