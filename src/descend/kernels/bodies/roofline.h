/* The roofline: the loads and stores of an optimizer step with trivial math, to measure what the memory
 * allows. It reads the param, the grad and k state slots and writes the param and the k slots (k = flags >> 1,
 * 0 to 3), adding the grad to each: Adam's traffic for k = 2.
 */
KINLINE KNAME(roofline_body)(KRANGE_ARGS, const unsigned f) {
    KPROLOGUE;
    (void)sign;
    const int k = (int)f;
    ST *restrict s0 = k > 0 ? SLOT(roofline, slot1) : NULL;
    ST *restrict s1 = k > 1 ? SLOT(roofline, slot2) : NULL;
    ST *restrict s2 = k > 2 ? SLOT(roofline, slot3) : NULL;
    for (int64_t i = lo; i < hi; i++) {
        const CT gi = LDP(g[i]);
        p[i] = STP(LDP(p[i]) + gi);
        if (k > 0) s0[i] = STS(LDS(s0[i]) + gi, i, roofline_s_slot1);
        if (k > 1) s1[i] = STS(LDS(s1[i]) + gi, i, roofline_s_slot2);
        if (k > 2) s2[i] = STS(LDS(s2[i]) + gi, i, roofline_s_slot3);
    }
}

void KNAME(roofline)(KRANGE_ARGS) {
    SWITCH4(KNAME(roofline_body), (j->flags >> 1) & 3u, j, t, lo, hi)
}
