/* sparse_adam: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here. The torch front runs it on
 * the entries a sparse gradient holds, gathered into dense rows.
 */
_Static_assert(sparse_adam_f_maximize == 0, "sparse_adam's flag bits are in _layout.py's order");

void KNAME(sparse_adam)(KRANGE_ARGS) {
    KPROLOGUE;
    ST *restrict exp_avg = SLOT(sparse_adam, exp_avg);
    ST *restrict exp_avg_sq = SLOT(sparse_adam, exp_avg_sq);
    const CT omb1 = VAL(sparse_adam, one_minus_beta1), omb2 = VAL(sparse_adam, one_minus_beta2);
    const CT eps = VAL(sparse_adam, eps), neg_step = VAL(sparse_adam, neg_step_size);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        const CT gi = NEG(LDP(g[i]), sign);
        CT m = LDS(exp_avg[i]);
        CT v = LDS(exp_avg_sq[i]);
        const CT m_step = (gi - m) * omb1;
        const CT v_step = (gi * gi - v) * omb2;
        m = m + m_step;
        v = v + v_step;
        exp_avg[i] = STS(m, i, sparse_adam_s_exp_avg);
        exp_avg_sq[i] = STS(v, i, sparse_adam_s_exp_avg_sq);
        pi = pi + neg_step * (m / (SQRT(v) + eps));
        p[i] = STP(pi);
    }
}
