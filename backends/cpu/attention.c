/* ATTN_CACHED and ATTN. A single query row (decode) runs an online softmax
 * over blocks of eight keys whose scores come out as one vector, so keys and
 * values stream through once. Chunks of several rows (prefill) share work
 * instead: each task transposes a chunk of keys once and computes scores and
 * the weighted sum of values for four rows at a time with broadcast FMAs, an
 * online softmax across chunks of keys. exp comes from SLEEF. */
#include <math.h>
#include <string.h>
#include <sleef.h>

#include "cpu.h"
#include "simd.h"

#define KB 8   /* keys per block, single-row path */
#define QT 16  /* query rows per task, multi-row path */
#define QR 4   /* rows per register tile */
#define KC 256 /* keys per chunk, multi-row path */

static int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

/* Query rows of one (b, h) go through the multi-row path when there are
 * several and the head dim fills whole vectors. */
static int multi_row(const porta_node *n) { return n->out.shape[1] > 1 && n->out.shape[3] % 8 == 0; }

/* Single-row path: q (scaled), the accumulator, and eight gathered keys and
 * values for inputs whose head dim is strided. Multi-row path: QT rows of q
 * and accumulators, QT rows of KC scores, a chunk of keys transposed and of
 * values made dense, and each row's running maximum and sum. */
int64_t cpu_attention_scratch(const porta_node *n)
{
    const int64_t Dp = pad16(n->out.shape[3]);
    if (!multi_row(n)) return (2 + 2 * KB) * Dp;
    return 2 * QT * Dp + QT * KC + 2 * Dp * KC + 2 * QT;
}

typedef struct kv_src {
    const float *k, *v;  /* key / value 0 of this (b, h) */
    int64_t ks, kd;      /* stride between keys, within a key */
    int64_t vs, vd;
    const float *ksh, *vsh; /* keys / values of the shared prefix's row */
    int64_t nsh;            /* keys below nsh are the shared prefix's */
} kv_src;

static inline const float *key_at(const kv_src *s, int64_t j) { return (j < s->nsh ? s->ksh : s->k) + j * s->ks; }
static inline const float *val_at(const kv_src *s, int64_t j) { return (j < s->nsh ? s->vsh : s->v) + j * s->vs; }

/* out[D] = softmax(q . k_j + mask_j) v over keys j < nkeys (q already scaled);
 * zeros when every key is excluded. buf: cpu_attention_scratch floats. */
static void attend(const float *q, int64_t D, const kv_src *s, const float *mask, int64_t nkeys, float *buf,
                   float *out)
{
    const int64_t Dp = (D + 15) / 16 * 16, Dv = D & ~(int64_t)7;
    float *acc = buf + Dp, *kbuf = acc + Dp, *vbuf = kbuf + KB * Dp;
    const __m256i dmask = cpu_tail_mask(D - Dv);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    float m = -INFINITY, l = 0.0f;
    memset(acc, 0, (size_t)D * sizeof *acc);
    for (int64_t j0 = 0; j0 < nkeys; j0 += KB) {
        const int cnt = nkeys - j0 < KB ? (int)(nkeys - j0) : KB;
        const float *kp[KB], *vp[KB];
        for (int t = 0; t < KB; t++) {
            const int64_t j = j0 + (t < cnt ? t : 0);
            kp[t] = key_at(s, j);
            vp[t] = val_at(s, j);
            if (s->kd != 1 && t < cnt) {
                for (int64_t d = 0; d < D; d++) kbuf[t * Dp + d] = kp[t][d * s->kd];
                kp[t] = kbuf + t * Dp;
            }
            if (s->vd != 1 && t < cnt) {
                for (int64_t d = 0; d < D; d++) vbuf[t * Dp + d] = vp[t][d * s->vd];
                vp[t] = vbuf + t * Dp;
            }
        }
        if (s->kd != 1)
            for (int t = cnt; t < KB; t++) kp[t] = kp[0];
        if (s->vd != 1)
            for (int t = cnt; t < KB; t++) vp[t] = vp[0];
        /* Decode is bound by how fast keys and values arrive: ask for the
         * block after next while this one is computed (prefetches past the
         * end are dropped, never fault). */
        if (j0 + 2 * KB < nkeys)
            for (int t = 0; t < KB; t++)
                for (int64_t d = 0; d < D; d += 16) {
                    _mm_prefetch((const char *)(key_at(s, j0 + 2 * KB + t) + d * s->kd), _MM_HINT_T0);
                    _mm_prefetch((const char *)(val_at(s, j0 + 2 * KB + t) + d * s->vd), _MM_HINT_T0);
                }

        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
#define DOT_STEP(LOAD)                                  \
    do {                                                \
        __m256 qv = LOAD(q + d);                        \
        c0 = _mm256_fmadd_ps(qv, LOAD(kp[0] + d), c0);  \
        c1 = _mm256_fmadd_ps(qv, LOAD(kp[1] + d), c1);  \
        c2 = _mm256_fmadd_ps(qv, LOAD(kp[2] + d), c2);  \
        c3 = _mm256_fmadd_ps(qv, LOAD(kp[3] + d), c3);  \
        c4 = _mm256_fmadd_ps(qv, LOAD(kp[4] + d), c4);  \
        c5 = _mm256_fmadd_ps(qv, LOAD(kp[5] + d), c5);  \
        c6 = _mm256_fmadd_ps(qv, LOAD(kp[6] + d), c6);  \
        c7 = _mm256_fmadd_ps(qv, LOAD(kp[7] + d), c7);  \
    } while (0)
#define DLOAD(p) _mm256_maskload_ps((p), dmask)
        int64_t d = 0;
        for (; d < Dv; d += 8) DOT_STEP(_mm256_loadu_ps);
        if (d < D) DOT_STEP(DLOAD);
#undef DOT_STEP
        const __m256i live = cpu_tail_mask(cnt);
        __m256 sc = cpu_hsum8(c0, c1, c2, c3, c4, c5, c6, c7);
        if (mask) sc = _mm256_add_ps(sc, _mm256_maskload_ps(mask + j0, live));
        sc = _mm256_blendv_ps(ninf, sc, _mm256_castsi256_ps(live));
        const float bm = cpu_hmax(sc);
        if (bm == -INFINITY) continue;
        if (bm > m) {
            /* A new maximum: rescale what was accumulated against the old. */
            const float corr = expf(m - bm);
            const __m256 cv = _mm256_set1_ps(corr);
            l *= corr;
            for (d = 0; d < Dv; d += 8) _mm256_storeu_ps(acc + d, _mm256_mul_ps(_mm256_loadu_ps(acc + d), cv));
            for (; d < D; d++) acc[d] *= corr;
            m = bm;
        }
        const __m256 p = Sleef_expf8_u10avx2(_mm256_sub_ps(sc, _mm256_set1_ps(m)));
        l += cpu_hsum(p);
        float pp[KB];
        _mm256_storeu_ps(pp, p);
        for (d = 0; d < Dv; d += 8) {
            __m256 a = _mm256_loadu_ps(acc + d);
            for (int t = 0; t < cnt; t++) a = _mm256_fmadd_ps(_mm256_set1_ps(pp[t]), _mm256_loadu_ps(vp[t] + d), a);
            _mm256_storeu_ps(acc + d, a);
        }
        if (d < D) {
            __m256 a = DLOAD(acc + d);
            for (int t = 0; t < cnt; t++) a = _mm256_fmadd_ps(_mm256_set1_ps(pp[t]), DLOAD(vp[t] + d), a);
            _mm256_maskstore_ps(acc + d, dmask, a);
        }
#undef DLOAD
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int64_t d = 0; d < D; d++) out[d] = acc[d] * inv;
}

/* Scaled copy of a strided q row into buf. */
static void load_q(const float *q, int64_t sd, int64_t D, float scale, float *buf)
{
    for (int64_t d = 0; d < D; d++) buf[d] = q[d * sd] * scale;
}

/* One query row as the op defines it: where q and the output are, how many
 * keys it sees (0: none, the output is zeros) and its mask row. */
typedef struct qrow {
    const float *q;
    float *out;
    int64_t nkeys;
    const float *mask;
} qrow;

typedef struct attn_job {
    const cpu_exec *ex;
    const cpu_node *nd;
    int cached;
} attn_job;

static qrow row_of(const attn_job *j, int64_t b, int64_t h, int64_t i)
{
    const porta_node *n = &j->nd->n;
    const porta_ref *q = &n->in[0], *k = &n->in[1];
    const int64_t T = q->shape[1], H = q->shape[2], D = q->shape[3];
    qrow r = {j->nd->in[0] + b * q->stride[0] + i * q->stride[1] + h * q->stride[2], j->nd->out + ((b * T + i) * H + h) * D,
              0, NULL};
    if (j->cached) {
        int64_t pos, nb;
        cpu_step_row(j->ex, 1, b, T, &pos, &nb);
        const int64_t L = k->shape[2];
        r.nkeys = i < nb ? (pos + i + 1 < L ? pos + i + 1 : L) : 0;
    } else {
        const int64_t B = q->shape[0], Tk = k->shape[1];
        r.nkeys = n->p.attn.causal ? (i + 1 < Tk ? i + 1 : Tk) : Tk;
        if (j->nd->in[3]) r.mask = j->nd->in[3] + ((b / (B / n->in[3].shape[0])) * T + i) * Tk;
    }
    return r;
}

static kv_src src_of(const attn_job *j, int64_t b, int64_t h)
{
    const porta_ref *k = &j->nd->n.in[1], *v = &j->nd->n.in[2];
    /* The cache is [B, H, L, D]; plain attention's keys are [B, Tk, H, D]. */
    const int hd = j->cached ? 1 : 2, ld = j->cached ? 2 : 1;
    kv_src s = {j->nd->in[1] + b * k->stride[0] + h * k->stride[hd], j->nd->in[2] + b * v->stride[0] + h * v->stride[hd],
                k->stride[ld], k->stride[3], v->stride[ld], v->stride[3], NULL, NULL, 0};
    if (j->cached) {
        int64_t src;
        cpu_step_shared(j->ex, b, &src, &s.nsh);
        s.ksh = j->nd->in[1] + src * k->stride[0] + h * k->stride[hd];
        s.vsh = j->nd->in[2] + src * v->stride[0] + h * v->stride[hd];
    }
    return s;
}

/* Tasks run (b, h, i) so that consecutive queries share their keys. */
static void row_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    const attn_job *j = ctx;
    const porta_ref *q = &j->nd->n.in[0];
    const int64_t T = q->shape[1], H = q->shape[2], D = q->shape[3];
    float *buf = cpu_scratch(j->ex, tid);
    for (int64_t t = begin; t < end; t++) {
        const int64_t b = t / (H * T), h = (t / T) % H, i = t % T;
        const qrow r = row_of(j, b, h, i);
        const kv_src s = src_of(j, b, h);
        load_q(r.q, q->stride[3], D, j->nd->n.p.attn.scale, buf);
        attend(buf, D, &s, r.mask, r.nkeys, buf, r.out);
    }
}

/* Scores of QR rows against keys [0, kcp) of the transposed chunk kt
 * (D x KC): s[r * KC + j] = q_r . k_j. Sixteen keys per pass where they
 * exist, so that each broadcast of q feeds two FMAs. */
static void tile_scores(const float *q, int64_t Dp, int64_t D, const float *kt, int64_t kcp, float *s)
{
    int64_t j0 = 0;
    for (; j0 + 16 <= kcp; j0 += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int64_t d = 0; d < D; d++) {
            const __m256 k0 = _mm256_load_ps(kt + d * KC + j0), k1 = _mm256_load_ps(kt + d * KC + j0 + 8);
            __m256 qv = _mm256_broadcast_ss(q + d);
            a0 = _mm256_fmadd_ps(qv, k0, a0);
            b0 = _mm256_fmadd_ps(qv, k1, b0);
            qv = _mm256_broadcast_ss(q + Dp + d);
            a1 = _mm256_fmadd_ps(qv, k0, a1);
            b1 = _mm256_fmadd_ps(qv, k1, b1);
            qv = _mm256_broadcast_ss(q + 2 * Dp + d);
            a2 = _mm256_fmadd_ps(qv, k0, a2);
            b2 = _mm256_fmadd_ps(qv, k1, b2);
            qv = _mm256_broadcast_ss(q + 3 * Dp + d);
            a3 = _mm256_fmadd_ps(qv, k0, a3);
            b3 = _mm256_fmadd_ps(qv, k1, b3);
        }
        _mm256_store_ps(s + j0, a0);
        _mm256_store_ps(s + j0 + 8, b0);
        _mm256_store_ps(s + KC + j0, a1);
        _mm256_store_ps(s + KC + j0 + 8, b1);
        _mm256_store_ps(s + 2 * KC + j0, a2);
        _mm256_store_ps(s + 2 * KC + j0 + 8, b2);
        _mm256_store_ps(s + 3 * KC + j0, a3);
        _mm256_store_ps(s + 3 * KC + j0 + 8, b3);
    }
    for (; j0 < kcp; j0 += 8) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t d = 0; d < D; d++) {
            const __m256 kv = _mm256_load_ps(kt + d * KC + j0);
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + d), kv, a0);
            a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + Dp + d), kv, a1);
            a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + 2 * Dp + d), kv, a2);
            a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + 3 * Dp + d), kv, a3);
        }
        _mm256_store_ps(s + j0, a0);
        _mm256_store_ps(s + KC + j0, a1);
        _mm256_store_ps(s + 2 * KC + j0, a2);
        _mm256_store_ps(s + 3 * KC + j0, a3);
    }
}

/* acc_r += sum_j p[r * KC + j] v_j for QR rows over keys j < nk; v rows
 * vs apart, D a multiple of 8. Sixteen columns per pass where they exist, so
 * that each broadcast weight feeds two FMAs. */
static void tile_values(const float *p, const float *v, int64_t vs, int64_t nk, int64_t D, float *acc, int64_t Dp)
{
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) {
        __m256 a0 = _mm256_load_ps(acc + d), a1 = _mm256_load_ps(acc + Dp + d);
        __m256 a2 = _mm256_load_ps(acc + 2 * Dp + d), a3 = _mm256_load_ps(acc + 3 * Dp + d);
        __m256 b0 = _mm256_load_ps(acc + d + 8), b1 = _mm256_load_ps(acc + Dp + d + 8);
        __m256 b2 = _mm256_load_ps(acc + 2 * Dp + d + 8), b3 = _mm256_load_ps(acc + 3 * Dp + d + 8);
        for (int64_t j = 0; j < nk; j++) {
            const __m256 v0 = _mm256_loadu_ps(v + j * vs + d), v1 = _mm256_loadu_ps(v + j * vs + d + 8);
            __m256 pv = _mm256_broadcast_ss(p + j);
            a0 = _mm256_fmadd_ps(pv, v0, a0);
            b0 = _mm256_fmadd_ps(pv, v1, b0);
            pv = _mm256_broadcast_ss(p + KC + j);
            a1 = _mm256_fmadd_ps(pv, v0, a1);
            b1 = _mm256_fmadd_ps(pv, v1, b1);
            pv = _mm256_broadcast_ss(p + 2 * KC + j);
            a2 = _mm256_fmadd_ps(pv, v0, a2);
            b2 = _mm256_fmadd_ps(pv, v1, b2);
            pv = _mm256_broadcast_ss(p + 3 * KC + j);
            a3 = _mm256_fmadd_ps(pv, v0, a3);
            b3 = _mm256_fmadd_ps(pv, v1, b3);
        }
        _mm256_store_ps(acc + d, a0);
        _mm256_store_ps(acc + Dp + d, a1);
        _mm256_store_ps(acc + 2 * Dp + d, a2);
        _mm256_store_ps(acc + 3 * Dp + d, a3);
        _mm256_store_ps(acc + d + 8, b0);
        _mm256_store_ps(acc + Dp + d + 8, b1);
        _mm256_store_ps(acc + 2 * Dp + d + 8, b2);
        _mm256_store_ps(acc + 3 * Dp + d + 8, b3);
    }
    for (; d < D; d += 8) {
        __m256 a0 = _mm256_load_ps(acc + d), a1 = _mm256_load_ps(acc + Dp + d);
        __m256 a2 = _mm256_load_ps(acc + 2 * Dp + d), a3 = _mm256_load_ps(acc + 3 * Dp + d);
        for (int64_t j = 0; j < nk; j++) {
            const __m256 vv = _mm256_loadu_ps(v + j * vs + d);
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), vv, a0);
            a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + KC + j), vv, a1);
            a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2 * KC + j), vv, a2);
            a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 3 * KC + j), vv, a3);
        }
        _mm256_store_ps(acc + d, a0);
        _mm256_store_ps(acc + Dp + d, a1);
        _mm256_store_ps(acc + 2 * Dp + d, a2);
        _mm256_store_ps(acc + 3 * Dp + d, a3);
    }
}

/* Online-softmax update of one row for the chunk's scores s[0, live): adds
 * the mask, rescales the row's accumulator to a new maximum, and turns the
 * scores into weights (zero from live up to kcp). */
static void tile_softmax(float *s, const float *mask, int64_t live, int64_t kcp, float *m, float *l, float *acc, int64_t D)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    int64_t j = 0;
    for (; j + 8 <= live; j += 8) {
        __m256 v = _mm256_load_ps(s + j);
        if (mask) v = _mm256_add_ps(v, _mm256_loadu_ps(mask + j));
        _mm256_store_ps(s + j, v);
        mx = _mm256_max_ps(mx, v);
    }
    if (j < live) {
        const __m256i keep = cpu_tail_mask(live - j);
        __m256 v = _mm256_load_ps(s + j);
        if (mask) v = _mm256_add_ps(v, _mm256_maskload_ps(mask + j, keep));
        v = _mm256_blendv_ps(ninf, v, _mm256_castsi256_ps(keep));
        _mm256_store_ps(s + j, v);
        mx = _mm256_max_ps(mx, v);
        j += 8;
    }
    /* Lanes past live now hold -inf up to the next multiple of 8 and weigh
     * zero after exp; whole vectors beyond it are cleared. */
    const int64_t end = j;
    for (; j < kcp; j += 8) _mm256_store_ps(s + j, _mm256_setzero_ps());
    const float cm = cpu_hmax(mx);
    if (cm == -INFINITY) {
        memset(s, 0, (size_t)end * sizeof *s);
        return;
    }
    if (cm > *m) {
        const float corr = expf(*m - cm);
        *l *= corr;
        for (int64_t d = 0; d < D; d++) acc[d] *= corr;
        *m = cm;
    }
    const __m256 mv = _mm256_set1_ps(*m);
    __m256 sum = _mm256_setzero_ps();
    for (j = 0; j < end; j += 8) {
        __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_load_ps(s + j), mv));
        _mm256_store_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    *l += cpu_hsum(sum);
}

/* kt[d * KC + j] = key c0 + j, element d, for j < kc; zeros for kc <= j < kcp.
 * Whole 8x8 blocks go through registers when the head dim is contiguous. */
static void transpose_keys(const kv_src *s, int64_t c0, int64_t kc, int64_t kcp, int64_t D, float *kt)
{
    if (s->kd != 1) {
        for (int64_t j = 0; j < kcp; j++) {
            const float *kr = key_at(s, c0 + (j < kc ? j : 0));
            for (int64_t d = 0; d < D; d++) kt[d * KC + j] = j < kc ? kr[d * s->kd] : 0.0f;
        }
        return;
    }
    for (int64_t j = 0; j < kcp; j += 8) {
        const float *kr[8];
        for (int t = 0; t < 8; t++) kr[t] = j + t < kc ? key_at(s, c0 + j + t) : NULL;
        for (int64_t d = 0; d < D; d += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; t++) r[t] = kr[t] ? _mm256_loadu_ps(kr[t] + d) : _mm256_setzero_ps();
            const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
            const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
            const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
            const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *o = kt + d * KC + j;
            _mm256_store_ps(o + 0 * KC, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_store_ps(o + 1 * KC, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_store_ps(o + 2 * KC, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_store_ps(o + 3 * KC, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_store_ps(o + 4 * KC, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_store_ps(o + 5 * KC, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_store_ps(o + 6 * KC, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_store_ps(o + 7 * KC, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
}

/* Tasks run (b, h, block of QT rows). */
static void tile_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    const attn_job *j = ctx;
    const porta_ref *q = &j->nd->n.in[0];
    const int64_t T = q->shape[1], H = q->shape[2], D = q->shape[3], Dp = pad16(D);
    const int64_t tiles = (T + QT - 1) / QT;
    float *Q = cpu_scratch(j->ex, tid), *acc = Q + QT * Dp, *S = acc + QT * Dp, *kt = S + QT * KC;
    float *vd = kt + Dp * KC, *m = vd + KC * Dp, *l = m + QT;
    for (int64_t t = begin; t < end; t++) {
        const int64_t b = t / (H * tiles), h = (t / tiles) % H, i0 = (t % tiles) * QT;
        const int nq = (int)(T - i0 < QT ? T - i0 : QT);
        const kv_src s = src_of(j, b, h);
        qrow rows[QT];
        int64_t nkmax = 0;
        /* Rows past nq stay zero so that whole register tiles can run. */
        memset(Q, 0, (size_t)(QT * Dp) * sizeof *Q);
        memset(acc, 0, (size_t)(QT * Dp) * sizeof *acc);
        for (int r = 0; r < QT; r++) {
            m[r] = -INFINITY;
            l[r] = 0.0f;
            if (r >= nq) continue;
            rows[r] = row_of(j, b, h, i0 + r);
            load_q(rows[r].q, q->stride[3], D, j->nd->n.p.attn.scale, Q + r * Dp);
            if (rows[r].nkeys > nkmax) nkmax = rows[r].nkeys;
        }
        for (int64_t c0 = 0; c0 < nkmax; c0 += KC) {
            const int64_t kc = nkmax - c0 < KC ? nkmax - c0 : KC, kcp = (kc + 7) / 8 * 8;
            transpose_keys(&s, c0, kc, kcp, D, kt);
            const float *vp = val_at(&s, c0);
            int64_t vs = s.vs;
            /* Values are read in place when the chunk's rows are evenly
             * strided: not across the end of a shared prefix. */
            if (s.vd != 1 || (c0 < s.nsh && c0 + kc > s.nsh)) {
                for (int64_t jj = 0; jj < kc; jj++)
                    for (int64_t d = 0; d < D; d++) vd[jj * Dp + d] = val_at(&s, c0 + jj)[d * s.vd];
                vp = vd;
                vs = Dp;
            }
            for (int r0 = 0; r0 < nq; r0 += QR) {
                int64_t live_max = 0;
                for (int r = r0; r < r0 + QR && r < nq; r++) {
                    const int64_t live = rows[r].nkeys - c0;
                    if (live > live_max) live_max = live > kc ? kc : live;
                }
                if (live_max <= 0) continue;
                const int64_t lp = (live_max + 7) / 8 * 8;
                tile_scores(Q + r0 * Dp, Dp, D, kt, lp, S + r0 * KC);
                for (int r = r0; r < r0 + QR; r++) {
                    float *sr = S + r * KC;
                    int64_t live = r < nq ? rows[r].nkeys - c0 : 0;
                    live = live < 0 ? 0 : live > kc ? kc : live;
                    if (live == 0) {
                        memset(sr, 0, (size_t)lp * sizeof *sr);
                        continue;
                    }
                    tile_softmax(sr, rows[r].mask ? rows[r].mask + c0 : NULL, live, lp, &m[r], &l[r], acc + r * Dp, D);
                }
                tile_values(S + r0 * KC, vp, vs, live_max, D, acc + r0 * Dp, Dp);
            }
        }
        for (int r = 0; r < nq; r++) {
            const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
            for (int64_t d = 0; d < D; d++) rows[r].out[d] = acc[r * Dp + d] * inv;
        }
    }
}

static void run_attn(const cpu_exec *ex, const cpu_node *nd, int cached)
{
    const porta_ref *q = &nd->n.in[0];
    attn_job j = {ex, nd, cached};
    const int64_t BH = q->shape[0] * q->shape[2], T = q->shape[1];
    if (multi_row(&nd->n))
        cpu_pool_run(ex->pool, BH * ((T + QT - 1) / QT), 1, tile_task, &j);
    else
        cpu_pool_run(ex->pool, BH * T, 1, row_task, &j);
}

void cpu_attn_cached(const cpu_exec *ex, const cpu_node *nd) { run_attn(ex, nd, 1); }
void cpu_attn(const cpu_exec *ex, const cpu_node *nd) { run_attn(ex, nd, 0); }
