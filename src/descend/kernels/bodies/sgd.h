/* sgd: restates its algorithm's reference_update operation by operation. Its values, flag bits and state
 * slots are named in descend/kernels/_layout.py; the build generates the indices used here.
 */
_Static_assert(sgd_f_maximize == 0 && sgd_f_weight_decay == 1 && sgd_f_use_momentum == 2 && sgd_f_first_step == 3 && sgd_f_nesterov == 4, "sgd's flag bits are in _layout.py's order");

KINLINE KNAME(sgd_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    const int wd_on = f & 1u, mom = (f >> 1) & 1u, first = (f >> 2) & 1u, nesterov = (f >> 3) & 1u;
    ST *restrict buf = mom ? SLOT(sgd, momentum_buffer) : NULL;
    const CT wd = VAL(sgd, weight_decay), mu = VAL(sgd, momentum), gs = VAL(sgd, grad_scale), neg_lr = VAL(sgd, neg_lr);
    for (int64_t i = lo; i < hi; i++) {
        CT pi = LDP(p[i]);
        CT gi = NEG(LDP(g[i]), sign);
        if (wd_on) gi = gi + wd * pi;
        if (mom) {
            CT b;
            if (first) {
                b = gi;
            } else {
                b = LDS(buf[i]);
                b = b * mu;
                b = b + gs * gi;
            }
            buf[i] = STS(b, i, sgd_s_momentum_buffer);
            gi = nesterov ? gi + mu * b : b;
        }
        pi = pi + neg_lr * gi;
        p[i] = STP(pi);
    }
}

void KNAME(sgd)(KRANGE_ARGS) {
    SWITCH16(KNAME(sgd_body), (j->flags >> 1) & 15u, j, t, lo, hi)
}
