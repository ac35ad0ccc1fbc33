/* ATTN_CACHED and ATTN: one task per (b, h, query row), an online softmax over
 * blocks of eight keys (scores of a block come out as one vector; exp from
 * SLEEF), so the keys and values stream through once. */
#include <math.h>
#include <string.h>
#include <sleef.h>

#include "cpu.h"
#include "simd.h"

#define KB 8 /* keys per block */

/* q (scaled) and the accumulator, plus eight gathered keys and values for
 * inputs whose head dim is strided. */
int64_t cpu_attention_scratch(const porta_node *n)
{
    const int64_t D = n->out.shape[n->out.ndim - 1];
    return (2 + 2 * KB) * ((D + 15) / 16 * 16);
}

typedef struct kv_src {
    const float *k, *v;  /* key / value 0 of this (b, h) */
    int64_t ks, kd;      /* stride between keys, within a key */
    int64_t vs, vd;
} kv_src;

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
            kp[t] = s->k + j * s->ks;
            vp[t] = s->v + j * s->vs;
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

typedef struct attn_job {
    const cpu_exec *ex;
    const cpu_node *nd;
} attn_job;

static void cached_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    const attn_job *j = ctx;
    const porta_node *n = &j->nd->n;
    const porta_ref *q = &n->in[0], *K = &n->in[1], *V = &n->in[2];
    const int64_t T = q->shape[1], H = q->shape[2], D = q->shape[3], L = K->shape[2];
    float *buf = cpu_scratch(j->ex, tid);
    /* Tasks run (b, h, i) so that consecutive queries share their keys. */
    for (int64_t t = begin; t < end; t++) {
        const int64_t b = t / (H * T), h = (t / T) % H, i = t % T;
        float *o = j->nd->out + ((b * T + i) * H + h) * D;
        int64_t pos, nb;
        cpu_step_row(j->ex, 1, b, T, &pos, &nb);
        if (i >= nb) {
            memset(o, 0, (size_t)D * sizeof *o);
            continue;
        }
        int64_t nkeys = pos + i + 1;
        if (nkeys > L) nkeys = L;
        kv_src s = {j->nd->in[1] + b * K->stride[0] + h * K->stride[1], j->nd->in[2] + b * V->stride[0] + h * V->stride[1],
                    K->stride[2], K->stride[3], V->stride[2], V->stride[3]};
        load_q(j->nd->in[0] + b * q->stride[0] + i * q->stride[1] + h * q->stride[2], q->stride[3], D, n->p.attn.scale, buf);
        attend(buf, D, &s, NULL, nkeys, buf, o);
    }
}

void cpu_attn_cached(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *q = &nd->n.in[0];
    attn_job j = {ex, nd};
    cpu_pool_run(ex->pool, q->shape[0] * q->shape[1] * q->shape[2], 1, cached_task, &j);
}

static void masked_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    const attn_job *j = ctx;
    const porta_node *n = &j->nd->n;
    const porta_ref *q = &n->in[0], *k = &n->in[1], *v = &n->in[2];
    const int64_t B = q->shape[0], Tq = q->shape[1], H = q->shape[2], D = q->shape[3], Tk = k->shape[1];
    const float *mask = j->nd->in[3];
    const int64_t Bm = mask ? n->in[3].shape[0] : 1;
    float *buf = cpu_scratch(j->ex, tid);
    for (int64_t t = begin; t < end; t++) {
        const int64_t b = t / (H * Tq), h = (t / Tq) % H, i = t % Tq;
        float *o = j->nd->out + ((b * Tq + i) * H + h) * D;
        const int64_t nkeys = n->p.attn.causal ? (i + 1 < Tk ? i + 1 : Tk) : Tk;
        const float *mrow = mask ? mask + ((b / (B / Bm)) * Tq + i) * Tk : NULL;
        kv_src s = {j->nd->in[1] + b * k->stride[0] + h * k->stride[2], j->nd->in[2] + b * v->stride[0] + h * v->stride[2],
                    k->stride[1], k->stride[3], v->stride[1], v->stride[3]};
        load_q(j->nd->in[0] + b * q->stride[0] + i * q->stride[1] + h * q->stride[2], q->stride[3], D, n->p.attn.scale, buf);
        attend(buf, D, &s, mrow, nkeys, buf, o);
    }
}

void cpu_attn(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *q = &nd->n.in[0];
    attn_job j = {ex, nd};
    cpu_pool_run(ex->pool, q->shape[0] * q->shape[1] * q->shape[2], 1, masked_task, &j);
}
