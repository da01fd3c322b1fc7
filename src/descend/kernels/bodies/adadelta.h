/* adadelta: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(adadelta_f_maximize == 0 && adadelta_f_weight_decay == 1, "adadelta's flag bits are in _layout.py's order");

KINLINE KNAME(adadelta_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u;
    ST *restrict sq_avg = SLOT(adadelta, square_avg);
    ST *restrict acc_delta = SLOT(adadelta, acc_delta);
    const CT wd = VAL(adadelta, weight_decay), rho = VAL(adadelta, rho), omr = VAL(adadelta, one_minus_rho);
    const CT eps = VAL(adadelta, eps), neg_lr = VAL(adadelta, neg_lr);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        CT sq = LDS(sq_avg[i]);
        sq = sq * rho;
        sq = sq + (omr * gi) * gi;
        sq_avg[i] = STS(sq, i, adadelta_s_square_avg);
        const CT std = SQRT(sq + eps);
        CT acc = LDS(acc_delta[i]);
        const CT delta = (SQRT(acc + eps) / std) * gi;
        acc = acc * rho;
        acc = acc + (omr * delta) * delta;
        acc_delta[i] = STS(acc, i, adadelta_s_acc_delta);
        pi = pi + neg_lr * delta;
        p[i] = STP(pi);
    }
}

void KNAME(adadelta)(KRANGE_ARGS) {
    SWITCH2(KNAME(adadelta_body), (j->flags >> 1) & 1u, j, t, lo, hi)
}
