#include <math.h>
#include "ref.h"

/* Keys and values of one (sequence, head): rows j < nshared at ks0 / vs0
 * (a shared prefix), the others at k0 / v0, rows `row` apart. */
typedef struct kv_rows {
    const double *k0, *v0, *ks0, *vs0;
    int64_t ks_row, ks_d, vs_row, vs_d, nshared;
} kv_rows;

static const double *key_row(const kv_rows *r, int64_t j) { return (j < r->nshared ? r->ks0 : r->k0) + j * r->ks_row; }
static const double *val_row(const kv_rows *r, int64_t j) { return (j < r->nshared ? r->vs0 : r->v0) + j * r->vs_row; }

/* One query row against keys 0..nk-1 (key j used when j <= kmax); writes D
 * outputs. Fully masked rows give zeros. */
static void attend(const double *q, int64_t qs, const kv_rows *kv, const double *madd, int64_t nk, int64_t kmax,
                   int64_t D, double scale, double *y, int64_t ys, double *w)
{
    double mx = -INFINITY;
    for (int64_t j = 0; j < nk; j++) {
        double s = -INFINITY;
        if (j <= kmax) {
            s = 0.0;
            const double *kj = key_row(kv, j);
            for (int64_t d = 0; d < D; d++) s += q[d * qs] * kj[d * kv->ks_d];
            s = s * scale + (madd ? madd[j] : 0.0);
        }
        w[j] = s;
        mx = fmax(mx, s);
    }
    if (mx == -INFINITY) {
        for (int64_t d = 0; d < D; d++) y[d * ys] = 0.0;
        return;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < nk; j++) {
        w[j] = w[j] == -INFINITY ? 0.0 : exp(w[j] - mx);
        sum += w[j];
    }
    for (int64_t d = 0; d < D; d++) {
        double acc = 0.0;
        for (int64_t j = 0; j < nk; j++) acc += w[j] * val_row(kv, j)[d * kv->vs_d];
        y[d * ys] = acc / sum;
    }
}

void ref_attention_cached(const ref_ctx *c, const porta_node *n)
{
    const porta_ref *q = &n->in[0], *kc = &n->in[1], *vc = &n->in[2], *o = &n->out;
    int64_t B = q->shape[0], T = q->shape[1], H = q->shape[2], D = q->shape[3];
    double *Q = ref_base(c, q), *K = ref_base(c, kc), *V = ref_base(c, vc), *Y = ref_base(c, o);
    double *w = c->scratch;
    for (int64_t b = 0; b < B; b++) {
        int64_t pos, cnt, src, nshared;
        ref_step(c, b, T, &pos, &cnt);
        ref_shared(c, b, &src, &nshared);
        for (int64_t i = 0; i < T; i++)
            for (int64_t h = 0; h < H; h++) {
                double *y = ref_at4(Y, o, b, i, h, 0);
                if (i >= cnt) {
                    for (int64_t d = 0; d < D; d++) y[d * o->stride[3]] = 0.0;
                    continue;
                }
                int64_t nk = pos + i + 1;
                kv_rows r = {ref_at4(K, kc, b, h, 0, 0), ref_at4(V, vc, b, h, 0, 0), ref_at4(K, kc, src, h, 0, 0),
                             ref_at4(V, vc, src, h, 0, 0), kc->stride[2], kc->stride[3], vc->stride[2],
                             vc->stride[3], nshared};
                attend(ref_at4(Q, q, b, i, h, 0), q->stride[3], &r, NULL, nk, nk - 1, D, n->p.attn.scale, y,
                       o->stride[3], w);
            }
    }
}

void ref_attention(const ref_ctx *c, const porta_node *n)
{
    const porta_ref *q = &n->in[0], *k = &n->in[1], *v = &n->in[2], *m = &n->in[3], *o = &n->out;
    int64_t B = q->shape[0], Tq = q->shape[1], H = q->shape[2], D = q->shape[3], Tk = k->shape[1];
    double *Q = ref_base(c, q), *K = ref_base(c, k), *V = ref_base(c, v), *Y = ref_base(c, o);
    const double *M = m->mem ? ref_base(c, m) : NULL;
    int64_t group = M ? B / m->shape[0] : 1;
    double *w = c->scratch;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Tq; i++)
            for (int64_t h = 0; h < H; h++) {
                const double *madd = M ? M + ((b / group) * Tq + i) * Tk : NULL;
                kv_rows r = {ref_at4(K, k, b, 0, h, 0), ref_at4(V, v, b, 0, h, 0), NULL, NULL, k->stride[1],
                             k->stride[3], v->stride[1], v->stride[3], 0};
                attend(ref_at4(Q, q, b, i, h, 0), q->stride[3], &r, madd, Tk, n->p.attn.causal ? i : Tk - 1, D,
                       n->p.attn.scale, ref_at4(Y, o, b, i, h, 0), o->stride[3], w);
            }
}
