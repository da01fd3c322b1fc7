/* adamw_schedulefree: restates its algorithm's reference_update operation by operation. Its values, flag bits and
 * state slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(adamw_schedulefree_f_maximize == 0 && adamw_schedulefree_f_weight_decay == 1 &&
                   adamw_schedulefree_f_first_step == 2,
               "adamw_schedulefree's flag bits are in _layout.py's order");

KINLINE KNAME(adamw_schedulefree_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, first = (f >> 1) & 1u;
    ST *restrict z = SLOT(adamw_schedulefree, z);
    ST *restrict exp_avg_sq = SLOT(adamw_schedulefree, exp_avg_sq);
    const CT wd = VAL(adamw_schedulefree, weight_decay), beta2 = VAL(adamw_schedulefree, beta2);
    const CT omb2 = VAL(adamw_schedulefree, one_minus_beta2), bc2 = VAL(adamw_schedulefree, bias_correction2);
    const CT eps = VAL(adamw_schedulefree, eps), ckp1 = VAL(adamw_schedulefree, ckp1);
    const CT y_coef = VAL(adamw_schedulefree, y_grad_coef), neg_lr = VAL(adamw_schedulefree, neg_lr);
    for (int64_t i = lo; i < hi; i++) {
        CT yi = LDP(p[i]);
        const CT gi = NEG(LDP(g[i]), sign);
        CT zi = first ? yi : LDS(z[i]);
        CT v = LDS(exp_avg_sq[i]);
        v = v * beta2;
        v = v + (omb2 * gi) * gi;
        exp_avg_sq[i] = STS(v, i, adamw_schedulefree_s_exp_avg_sq);
        const CT denom = SQRT(v / bc2) + eps;
        CT u = gi / denom;
        if (wd_on) u = u + wd * yi;
        yi = yi + ckp1 * (zi - yi);
        yi = yi + y_coef * u;
        p[i] = STP(yi);
        zi = zi + neg_lr * u;
        z[i] = STS(zi, i, adamw_schedulefree_s_z);
    }
}

void KNAME(adamw_schedulefree)(KRANGE_ARGS) {
    SWITCH4(KNAME(adamw_schedulefree_body), (j->flags >> 1) & 3u, j, t, lo, hi)
}
