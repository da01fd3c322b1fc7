/* The range function of low-bit storage, for one instruction set (ISA) and one param dtype (LB_PT: f32, bf16 or f16),
 * included by lowbit.c. It is the same for every algorithm: a tensor's range is taken in blocks of LB_BLOCK elements;
 * for each block the state is decoded into float32 scratch, the algorithm's own body runs on the block with float32
 * state (job->inner, or job->inner_f32 on float32 copies of a 16-bit param and its gradient when the param is rounded
 * stochastically or with Kahan compensation), and the scratch is encoded back, all within one pass over memory. So a
 * new body gets every storage format without a line of its own.
 */
#define LB_CAT3(a, b, c) a##_##b##_##c
#define LB_CAT(a, b, c) LB_CAT3(a, b, c)
#define LB_NAME(name) LB_CAT(name, ISA, LB_PT)

#if LB_IS_F32
#define LB_T float
#define LB_LOAD(x) (x)
#elif LB_IS_BF16
#define LB_T bf16_t
#define LB_LOAD(x) bf16_load(x)
#else
#define LB_T f16_t
#define LB_LOAD(x) f16_load(x)
#endif

/* Words of the stream for elements [b0, b0 + n) (which share their index's high half). */
static void LB_NAME(lb_words)(const job_t *j, int64_t id, int64_t b0, int64_t n, uint32_t word, uint32_t *out) {
    const uint32_t key = stream_key(j->seed, j->step, (uint64_t)id, (uint32_t)((uint64_t)b0 >> 32), word);
    /* 32-bit lanes throughout: the index's low half plus the key wraps modulo 2^32, as the reference's does. */
    const uint32_t first = (uint32_t)b0 + key, count = (uint32_t)n;
    for (uint32_t k = 0; k < count; k++) out[k] = lowbias32(first + k);
}

static void LB_NAME(lb_decode_bf16)(const bf16_t *restrict in, float *restrict out, int64_t n) {
    for (int64_t k = 0; k < n; k++) out[k] = bf16_load(in[k]);
}

static void LB_NAME(lb_encode_bf16)(const float *restrict in, uint16_t *restrict out, int64_t n,
                                    const uint32_t *restrict words, int shift) {
    if (words) {
        for (int64_t k = 0; k < n; k++) out[k] = bf16_bits_sr(in[k], (words[k] >> shift) & 0xFFFFu);
    } else {
        for (int64_t k = 0; k < n; k++) out[k] = bf16_bits_rne(in[k]);
    }
}

/* One 8-bit block of n elements: codes and scale to float32. Vectors convert each code through float16, exactly (the
 * maps are float16's, lowbit.h), and the remainder uses q8_value; both are the reference's value times the scale. */
static void LB_NAME(lb_decode_q8)(const uint8_t *restrict in, float scale, float *restrict out, int64_t n, int nonneg) {
    int64_t k = 0;
#if LB_LANES == 16
    const __m512 vscale = _mm512_set1_ps(scale);
    if (nonneg) {
        const __m512 below = _mm512_set1_ps(Q8U_HALF_UNIT), above = _mm512_set1_ps(2.0f * Q8U_HALF_UNIT);
        for (; k + 16 <= n; k += 16) {
            const __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(in + k)));
            const __mmask16 top = _mm256_cmpge_epu16_mask(c, _mm256_set1_epi16(Q8U_TOP));
            const __m256i h = _mm256_slli_epi16(_mm256_mask_sub_epi16(c, top, c, _mm256_set1_epi16(8)), 7);
            const __m512 unit = _mm512_mask_blend_ps(top, below, above);
            _mm512_storeu_ps(out + k, _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtph_ps(h), unit), vscale));
        }
    } else {
        for (; k + 16 <= n; k += 16) {
            const __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(in + k)));
            const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x7F)), 7),
                                              _mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x80)), 8));
            _mm512_storeu_ps(out + k, _mm512_mul_ps(_mm512_cvtph_ps(h), vscale));
        }
    }
#elif LB_LANES == 8
    const __m256 vscale = _mm256_set1_ps(scale);
    if (nonneg) {
        const __m256 below = _mm256_set1_ps(Q8U_HALF_UNIT), above = _mm256_set1_ps(2.0f * Q8U_HALF_UNIT);
        for (; k + 8 <= n; k += 8) {
            const __m128i c = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(in + k)));
            /* codes are below 2^8, so a signed 16-bit comparison is an unsigned one */
            const __m128i top = _mm_cmpgt_epi16(c, _mm_set1_epi16(Q8U_TOP - 1));
            const __m128i h = _mm_slli_epi16(_mm_sub_epi16(c, _mm_and_si128(top, _mm_set1_epi16(8))), 7);
            const __m256 unit = _mm256_blendv_ps(below, above, _mm256_castsi256_ps(_mm256_cvtepi16_epi32(top)));
            _mm256_storeu_ps(out + k, _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(h), unit), vscale));
        }
    } else {
        for (; k + 8 <= n; k += 8) {
            const __m128i c = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(in + k)));
            const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(c, _mm_set1_epi16(0x7F)), 7),
                                           _mm_slli_epi16(_mm_and_si128(c, _mm_set1_epi16(0x80)), 8));
            _mm256_storeu_ps(out + k, _mm256_mul_ps(_mm256_cvtph_ps(h), vscale));
        }
    }
#endif
    if (nonneg) {
        for (; k < n; k++) out[k] = q8_value(in[k], Q8U_OFF, Q8U_MIN_NORMAL) * scale;
    } else {
        for (; k < n; k++) {
            const uint32_t c = in[k];
            const float v = q8_value(c & 0x7Fu, Q8S_OFF, Q8S_MIN_NORMAL) * scale;
            out[k] = f32_from_bits(f32_bits(v) | ((c & 0x80u) << 24));
        }
    }
}

/* One 8-bit block of n elements to codes, once the inverse of its scale is known: one loop per map and rounding. */
#define LB_Q8_ENCODE(name, NONNEG, STOCHASTIC)                                                                   \
    static __attribute__((noinline)) void LB_NAME(name)(const float *restrict in, uint8_t *restrict out,        \
                                                       int64_t n, float inv,                                \
                              const uint32_t *restrict words, int shift) {                                      \
        for (int64_t k = 0; k < n; k++) {                                                                       \
            const uint32_t b = f32_bits(in[k]);                                                                 \
            const float y = f32_from_bits(b & 0x7FFFFFFFu) * inv;                                               \
            const uint32_t r16 = STOCHASTIC ? (words[k] >> shift) & 0xFFFFu : 0u;                               \
            uint32_t c;                                                                                         \
            if (NONNEG) {                                                                                       \
                c = q8_magnitude(y, r16, STOCHASTIC, Q8U_OFF, Q8U_MIN_NORMAL, Q8U_MAX);                         \
                c &= (b >> 31) - 1u; /* a negative value (sign bit set) becomes 0 */                           \
            } else {                                                                                            \
                c = q8_magnitude(y, r16, STOCHASTIC, Q8S_OFF, Q8S_MIN_NORMAL, Q8S_MAX) | ((b >> 24) & 0x80u);   \
            }                                                                                                   \
            out[k] = (uint8_t)c;                                                                                \
        }                                                                                                       \
    }
LB_Q8_ENCODE(lb_encode_q8u_sr, 1, 1)
LB_Q8_ENCODE(lb_encode_q8u_ne, 1, 0)
LB_Q8_ENCODE(lb_encode_q8s_sr, 0, 1)
LB_Q8_ENCODE(lb_encode_q8s_ne, 0, 0)
#undef LB_Q8_ENCODE

/* One 8-bit block of n elements: float32 to codes, returning the scale's bits. */
static uint32_t LB_NAME(lb_encode_q8)(const float *restrict in, uint8_t *restrict out, int64_t n, int nonneg,
                                      const uint32_t *restrict words, int shift) {
    uint32_t maxbits = 0;
    for (int64_t k = 0; k < n; k++) {
        const uint32_t b = f32_bits(in[k]) & 0x7FFFFFFFu;
        maxbits = b > maxbits ? b : maxbits;
    }
    uint32_t scale, inverse;
    q8_scale(maxbits, &scale, &inverse);
    if (scale == 0x7FC00000u) {
        memset(out, 0, (size_t)n);
        return scale;
    }
    const float inv = f32_from_bits(inverse);
    if (nonneg && words) LB_NAME(lb_encode_q8u_sr)(in, out, n, inv, words, shift);
    else if (nonneg) LB_NAME(lb_encode_q8u_ne)(in, out, n, inv, words, shift);
    else if (words) LB_NAME(lb_encode_q8s_sr)(in, out, n, inv, words, shift);
    else LB_NAME(lb_encode_q8s_ne)(in, out, n, inv, words, shift);
    return scale;
}

#define LB_BLOCK 512 /* a multiple of Q8_BLOCK, so a block of the range never splits an 8-bit block */
#define LB_AHEAD 2    /* how many blocks ahead lb_fetch_ahead asks for memory */

/* Asks for the memory of the block of the range that starts at a0: its params, gradients, stored state and
 * compensation. The wrapper works on a block in phases (decode, body, encode) of which only the body reads params and
 * gradients, so without this the memory would wait during the others. */
static void LB_NAME(lb_fetch_ahead)(const job_t *j, int t, int64_t a0, int64_t hi, const int *used) {
    if (a0 >= hi) return;
    const int64_t a1 = a0 + LB_BLOCK < hi ? a0 + LB_BLOCK : hi;
    const char *p = (const char *)j->param[t], *g = (const char *)j->grad[t];
    const int64_t pb = (int64_t)sizeof(LB_T);
    for (int64_t k = a0 * pb; k < a1 * pb; k += 64) {
        __builtin_prefetch(p + k, 1, 3);
        __builtin_prefetch(g + k, 0, 3);
    }
    if (j->param_mode == PMODE_KAHAN)
        for (int64_t k = a0 * pb; k < a1 * pb; k += 64) __builtin_prefetch((const char *)j->comp[t] + k, 1, 3);
    const int64_t sb = j->state_format == SFMT_F32 ? 4 : j->state_format == SFMT_BF16 ? 2 : 1;
    for (int s = 0; s < MAX_STATES; s++) {
        if (!used[s]) continue;
        for (int64_t k = a0 * sb; k < a1 * sb; k += 64) __builtin_prefetch((const char *)j->state[s][t] + k, 1, 3);
    }
}

void LB_NAME(lowbit)(KRANGE_ARGS) {
    LB_T *p = (LB_T *)j->param[t];
    const LB_T *g = (const LB_T *)j->grad[t];
    const int64_t id = j->ids[t];
    const int split = j->param_mode != PMODE_NEAREST;
    float sp[LB_BLOCK] __attribute__((aligned(64)));
    float sg[LB_BLOCK] __attribute__((aligned(64)));
    float ss[MAX_STATES][LB_BLOCK] __attribute__((aligned(64)));
    uint32_t words[2][LB_BLOCK] __attribute__((aligned(64)));
    void *pp[1], *sptr[MAX_STATES][1];
    const void *gp[1];
    job_t local = *j;
    local.n = 1;
    local.param = pp;
    local.grad = gp;
    int used[MAX_STATES], any2 = 0;
    for (int s = 0; s < MAX_STATES; s++) {
        used[s] = j->state[s] != NULL;
        local.state[s] = used[s] ? sptr[s] : NULL;
        if (s == 2 && used[s]) any2 = 1;
    }
    const int word0 = j->stochastic && (used[0] || used[1]);
    const int word1 = (j->stochastic && any2) || j->param_mode == PMODE_STOCHASTIC;
    const range_fn body = split ? j->inner_f32 : j->inner;
    for (int64_t b0 = lo, b1; b0 < hi; b0 = b1) {
        b1 = (b0 / LB_BLOCK + 1) * LB_BLOCK;
        b1 = b1 < hi ? b1 : hi;
        const int64_t n = b1 - b0;
        LB_NAME(lb_fetch_ahead)(j, t, b0 + LB_AHEAD * LB_BLOCK, hi, used);
        if (word0) LB_NAME(lb_words)(j, id, b0, n, 0, words[0]);
        if (word1) LB_NAME(lb_words)(j, id, b0, n, 1, words[1]);
        for (int s = 0; s < MAX_STATES; s++) {
            if (!used[s]) continue;
            char *base = (char *)j->state[s][t];
            if (j->state_format == SFMT_F32) {
                sptr[s][0] = base + b0 * 4;
            } else if (j->state_format == SFMT_BF16) {
                LB_NAME(lb_decode_bf16)((const bf16_t *)base + b0, ss[s], n);
                sptr[s][0] = ss[s];
            } else {
                const float *scales = (const float *)j->scale[s][t];
                for (int64_t q = 0; q < n; q += Q8_BLOCK) {
                    const int64_t m = n - q < Q8_BLOCK ? n - q : Q8_BLOCK;
                    LB_NAME(lb_decode_q8)((const uint8_t *)base + b0 + q, scales[(b0 + q) / Q8_BLOCK], ss[s] + q, m,
                                          (j->nonneg >> s) & 1u);
                }
                sptr[s][0] = ss[s];
            }
        }
        if (split) {
            for (int64_t k = 0; k < n; k++) sp[k] = LB_LOAD(p[b0 + k]);
            for (int64_t k = 0; k < n; k++) sg[k] = LB_LOAD(g[b0 + k]);
            pp[0] = sp;
            gp[0] = sg;
        } else {
            pp[0] = p + b0;
            gp[0] = g + b0;
        }
        body(&local, 0, 0, n);
        for (int s = 0; s < MAX_STATES; s++) {
            if (!used[s] || j->state_format == SFMT_F32) continue;
            const uint32_t *w = j->stochastic ? words[s >> 1] : NULL;
            const int shift = (s & 1) * 16;
            char *base = (char *)j->state[s][t];
            if (j->state_format == SFMT_BF16) {
                LB_NAME(lb_encode_bf16)(ss[s], (uint16_t *)base + b0, n, w, shift);
            } else {
                float *scales = (float *)j->scale[s][t];
                for (int64_t q = 0; q < n; q += Q8_BLOCK) {
                    const int64_t m = n - q < Q8_BLOCK ? n - q : Q8_BLOCK;
                    const uint32_t sc = LB_NAME(lb_encode_q8)(ss[s] + q, (uint8_t *)base + b0 + q, m,
                                                              (j->nonneg >> s) & 1u, w ? w + q : NULL, shift);
                    scales[(b0 + q) / Q8_BLOCK] = f32_from_bits(sc);
                }
            }
        }
#if !LB_IS_F32
        if (j->param_mode == PMODE_STOCHASTIC) {
            uint16_t *out = (uint16_t *)p + b0; /* bfloat16 only: float16 params are refused on the host */
            for (int64_t k = 0; k < n; k++) out[k] = bf16_bits_sr(sp[k], words[1][k] >> 16);
        } else if (j->param_mode == PMODE_KAHAN) {
            LB_T *c = (LB_T *)j->comp[t] + b0;
            LB_T *q = p + b0;
            for (int64_t k = 0; k < n; k++) {
                const float old = LB_LOAD(q[k]);
                const float y = (sp[k] - old) + LB_LOAD(c[k]);
                const float sum = old + y;
#if LB_IS_BF16
                const bf16_t stored = bf16_store(sum);
                c[k] = bf16_store(y - (bf16_load(stored) - old));
#else
                const f16_t stored = f16_store(sum);
                c[k] = f16_store(y - (f16_load(stored) - old));
#endif
                q[k] = stored;
            }
        }
#endif
    }
}

#undef LB_T
#undef LB_LOAD
#undef LB_NAME
#undef LB_CAT
#undef LB_CAT3
#undef LB_BLOCK
#undef LB_AHEAD
