#include <math.h>
#include <stdlib.h>
#include "decoder.h"

typedef struct layout {
    int64_t norm1, wqkv, bqkv, wo, bo, norm2, w1, b1, w2, b2, size;
} layout;

static layout layer_layout(const dec_config *c, int l)
{
    int64_t E = c->embed, F = c->mlp, o = 0;
    int64_t per = E + 3 * E * E + 3 * E + E * E + E + E + 2 * F * E + 2 * F + E * F + E;
    layout L;
    o = per * l;
    L.norm1 = o, o += E;
    L.wqkv = o, o += 3 * E * E;
    L.bqkv = o, o += 3 * E;
    L.wo = o, o += E * E;
    L.bo = o, o += E;
    L.norm2 = o, o += E;
    L.w1 = o, o += 2 * F * E;
    L.b1 = o, o += 2 * F;
    L.w2 = o, o += E * F;
    L.b2 = o, o += E;
    L.size = per;
    return L;
}

int64_t dec_param_count(const dec_config *c) { return layer_layout(c, c->layers).norm1 + c->embed; }

porta_status dec_weights_new(porta_backend *be, const dec_config *c, uint64_t seed, dec_weights **out)
{
    *out = NULL;
    dec_weights *w = calloc(1, sizeof *w);
    if (!w) return PORTA_ERR_NOMEM;
    w->c = *c;
    w->n = dec_param_count(c);
    float *h = malloc((size_t)w->n * sizeof *h);
    if (!h) {
        free(w);
        return PORTA_ERR_NOMEM;
    }
    uint64_t s = seed;
    for (int64_t i = 0; i < w->n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    /* Scale each matrix by 1/sqrt(fan_in) (uniform [-1,1) has variance 1/3, so
     * sqrt(3) keeps unit variance); norms near 1; biases small. */
    int64_t E = c->embed, F = c->mlp;
    for (int l = 0; l <= c->layers; l++) {
        layout L = layer_layout(c, l);
        for (int64_t i = 0; i < E; i++) h[L.norm1 + i] = 1.0f + 0.1f * h[L.norm1 + i];
        if (l == c->layers) break;
        float se = (float)(sqrt(3.0) / sqrt((double)E)), sf = (float)(sqrt(3.0) / sqrt((double)F));
        for (int64_t i = 0; i < 3 * E * E; i++) h[L.wqkv + i] *= se;
        for (int64_t i = 0; i < E * E; i++) h[L.wo + i] *= se;
        for (int64_t i = 0; i < 2 * F * E; i++) h[L.w1 + i] *= se;
        for (int64_t i = 0; i < E * F; i++) h[L.w2 + i] *= sf;
        for (int64_t i = 0; i < 3 * E; i++) h[L.bqkv + i] *= 0.1f;
        for (int64_t i = 0; i < E; i++) h[L.bo + i] *= 0.1f, h[L.b2 + i] *= 0.1f;
        for (int64_t i = 0; i < 2 * F; i++) h[L.b1 + i] *= 0.1f;
        for (int64_t i = 0; i < E; i++) h[L.norm2 + i] = 1.0f + 0.1f * h[L.norm2 + i];
    }
    porta_status st = porta_buffer_new(be, PORTA_F32, w->n, &w->buf);
    if (st == PORTA_OK) st = porta_buffer_write(w->buf, 0, w->n, h);
    free(h);
    if (st != PORTA_OK) {
        dec_weights_free(w);
        return st;
    }
    *out = w;
    return PORTA_OK;
}

void dec_weights_free(dec_weights *w)
{
    if (!w) return;
    porta_buffer_free(w->buf);
    free(w);
}

static porta_tensor *P1(porta_graph *g, const dec_weights *w, int64_t off, int64_t n)
{
    return porta_param(g, w->buf, off, 1, (int64_t[]){ n });
}

static porta_tensor *P2(porta_graph *g, const dec_weights *w, int64_t off, int64_t r, int64_t c)
{
    return porta_param(g, w->buf, off, 2, (int64_t[]){ r, c });
}

porta_tensor *dec_build(porta_graph *g, const dec_weights *w, porta_kvcache *kv, porta_tensor *x)
{
    const dec_config *c = &w->c;
    int64_t B = porta_tensor_dim(x, 0), T = porta_tensor_dim(x, 1), E = c->embed, H = c->heads, D = E / H,
            F = c->mlp;
    porta_rope_desc rd = { 10000.0f, c->xpos, 512.0f };
    float scale = (float)(1.0 / sqrt((double)D));
    for (int l = 0; l < c->layers; l++) {
        layout L = layer_layout(c, l);
        porta_tensor *h = porta_rmsnorm(g, x, P1(g, w, L.norm1, E), 1e-6f);
        porta_tensor *qkv = porta_linear(g, h, P2(g, w, L.wqkv, 3 * E, E), P1(g, w, L.bqkv, 3 * E));
        qkv = porta_reshape(g, qkv, 5, (int64_t[]){ B, T, 3, H, D });
        porta_tensor *part[3];
        for (int k = 0; k < 3; k++)
            part[k] = porta_reshape(g, porta_slice(g, qkv, 2, k, 1), 4, (int64_t[]){ B, T, H, D });
        porta_tensor *q = porta_rope(g, part[0], &rd, kv, 0);
        porta_tensor *k = porta_rope(g, part[1], &rd, kv, 1);
        porta_tensor *a;
        if (kv) {
            porta_tensor *kc = porta_kv_append(g, kv, l, PORTA_KV_K, k);
            porta_tensor *vc = porta_kv_append(g, kv, l, PORTA_KV_V, part[2]);
            a = porta_attention_cached(g, q, kc, vc, scale);
        } else {
            a = porta_attention(g, q, k, part[2], NULL, scale, 1);
        }
        a = porta_reshape(g, a, 3, (int64_t[]){ B, T, E });
        x = porta_add(g, x, porta_linear(g, a, P2(g, w, L.wo, E, E), P1(g, w, L.bo, E)));
        h = porta_rmsnorm(g, x, P1(g, w, L.norm2, E), 1e-6f);
        h = porta_swiglu(g, porta_linear(g, h, P2(g, w, L.w1, 2 * F, E), P1(g, w, L.b1, 2 * F)));
        x = porta_add(g, x, porta_linear(g, h, P2(g, w, L.w2, E, F), P1(g, w, L.b2, E)));
    }
    layout fin = layer_layout(c, c->layers);
    return porta_rmsnorm(g, x, P1(g, w, fin.norm1, E), 1e-6f);
}
