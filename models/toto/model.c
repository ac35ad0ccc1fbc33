/* Toto's backbone as a porta graph, and the model object. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "toto_internal.h"

int toto_has_spacewise(const porta_toto_config *cfg) { return cfg->spacewise_every_n_layers > 0; }

static porta_tensor *param(porta_graph *g, const porta_toto_model *m, const toto_weight *w)
{
    return porta_param(g, w->src ? m->head_src : m->weights, w->offset, w->ndim, w->shape);
}

static porta_tensor *linear(porta_graph *g, const porta_toto_model *m, porta_tensor *x, const toto_weight *w,
                            const toto_weight *b)
{
    return porta_linear(g, x, param(g, m, w), param(g, m, b));
}

/* Names a node "layer<i>.<what>" so a cross-backend trace reads as the model. */
static porta_tensor *named(porta_tensor *t, int layer, const char *what)
{
    char name[32];
    snprintf(name, sizeof name, "layer%d.%s", layer, what);
    return porta_name(t, name);
}

/* wQKV's output is laid out "(qkv head_dim n_heads)": viewed as
 * [..., 3 * D, H], the slice [which * D, +D) permuted to [..., H, D] is one of
 * q, k, v without a copy. */
static porta_tensor *qkv_part(porta_graph *g, porta_tensor *qkv4, int which, int64_t D)
{
    static const int swap_last[4] = {0, 1, 3, 2};
    return porta_permute(g, porta_slice(g, qkv4, 2, which * D, D), swap_last);
}

/* Time-wise attention over x [R, T, E] (R = rows * variates = cache rows). */
static porta_tensor *time_attention(porta_graph *g, const porta_toto_model *m, const toto_layer *ly, int li,
                                    porta_kvcache *kv, porta_tensor *x)
{
    const porta_toto_config *c = &m->cfg;
    int64_t E = c->embed_dim, H = c->num_heads, D = E / H;
    int64_t R = porta_tensor_dim(x, 0), T = porta_tensor_dim(x, 1);
    const porta_rope_desc rd = {10000.0f, 1, 512.0f};
    porta_tensor *qkv = named(linear(g, m, x, &ly->wqkv, &ly->bqkv), li, "attn.wqkv");
    porta_tensor *qkv4 = porta_reshape(g, qkv, 4, (const int64_t[]){R, T, 3 * D, H});
    porta_tensor *q = named(porta_rope(g, qkv_part(g, qkv4, 0, D), &rd, kv, 0), li, "attn.rope_q");
    porta_tensor *k = named(porta_rope(g, qkv_part(g, qkv4, 1, D), &rd, kv, 1), li, "attn.rope_k");
    porta_tensor *kc = porta_kv_append(g, kv, ly->cache_layer, PORTA_KV_K, k);
    porta_tensor *vc = porta_kv_append(g, kv, ly->cache_layer, PORTA_KV_V, qkv_part(g, qkv4, 2, D));
    porta_tensor *o = named(porta_attention_cached(g, q, kc, vc, 1.0f / sqrtf((float)D)), li, "attn.cached");
    return porta_reshape(g, o, 3, (const int64_t[]){R, T, E});
}

/* Space-wise attention over x [N, V, E] (N = rows * T), bidirectional within
 * the groups of the additive mask [N, V, V]. */
static porta_tensor *space_attention(porta_graph *g, const porta_toto_model *m, const toto_layer *ly, int li,
                                     porta_tensor *mask, porta_tensor *x)
{
    const porta_toto_config *c = &m->cfg;
    int64_t E = c->embed_dim, H = c->num_heads, D = E / H;
    int64_t N = porta_tensor_dim(x, 0), V = porta_tensor_dim(x, 1);
    porta_tensor *qkv = named(linear(g, m, x, &ly->wqkv, &ly->bqkv), li, "attn.wqkv");
    porta_tensor *qkv4 = porta_reshape(g, qkv, 4, (const int64_t[]){N, V, 3 * D, H});
    porta_tensor *o = named(porta_attention(g, qkv_part(g, qkv4, 0, D), qkv_part(g, qkv4, 1, D),
                                            qkv_part(g, qkv4, 2, D), mask, 1.0f / sqrtf((float)D), 0),
                            li, "attn.space");
    return porta_reshape(g, o, 3, (const int64_t[]){N, V, E});
}

/* One pre-norm layer on h [B, V, T, E]. */
static porta_tensor *layer(porta_graph *g, const porta_toto_model *m, const toto_layer *ly, porta_kvcache *kv,
                           porta_tensor *mask, porta_tensor *h)
{
    int64_t B = porta_tensor_dim(h, 0), V = porta_tensor_dim(h, 1), T = porta_tensor_dim(h, 2);
    int64_t E = m->cfg.embed_dim;
    int li = (int)(ly - m->layers);
    static const int swap_vt[4] = {0, 2, 1, 3};
    porta_tensor *n1 = named(porta_rmsnorm(g, h, param(g, m, &ly->norm1), TOTO_RMS_EPS), li, "norm1");
    porta_tensor *a;
    if (ly->spacewise) {
        porta_tensor *x = porta_reshape(g, porta_permute(g, n1, swap_vt), 3, (const int64_t[]){B * T, V, E});
        a = space_attention(g, m, ly, li, mask, x);
        a = porta_permute(g, porta_reshape(g, a, 4, (const int64_t[]){B, T, V, E}), swap_vt);
    } else {
        a = time_attention(g, m, ly, li, kv, porta_reshape(g, n1, 3, (const int64_t[]){B * V, T, E}));
        a = porta_reshape(g, a, 4, (const int64_t[]){B, V, T, E});
    }
    h = named(porta_add(g, h, named(linear(g, m, a, &ly->wo, &ly->bo), li, "attn.wo")), li, "attn.residual");
    porta_tensor *n2 = named(porta_rmsnorm(g, h, param(g, m, &ly->norm2), TOTO_RMS_EPS), li, "norm2");
    porta_tensor *w1 = named(linear(g, m, n2, &ly->w1, &ly->b1), li, "mlp.w1");
    porta_tensor *f = named(porta_swiglu(g, w1), li, "mlp.swiglu");
    return named(porta_add(g, h, named(linear(g, m, f, &ly->w2, &ly->b2), li, "mlp.w2")), li, "mlp.residual");
}

static porta_status build_graph(const porta_toto_model *m, porta_kvcache *kv, int rows, int variates, int T,
                                int draws, porta_graph *g)
{
    const porta_toto_config *c = &m->cfg;
    int64_t B = rows, V = variates, P = c->patch_size;
    porta_tensor *x = porta_input(g, "patches", 4, (const int64_t[]){B, V, T, P});
    porta_tensor *mask = NULL;
    if (toto_has_spacewise(c)) mask = porta_input(g, "space_mask", 3, (const int64_t[]){B * T, V, V});
    porta_tensor *h = porta_name(linear(g, m, x, &m->patch_w, &m->patch_b), "patch_embed");
    for (int i = 0; i < c->num_layers; i++) h = layer(g, m, &m->layers[i], kv, mask, h);
    /* Only the last patch is forecast from; toto-ts unembeds every patch.
     * The unembedding (embed -> patch x embed) and the head's linears
     * (embed -> k, at each of the patch's time steps) are both linear, so
     * each head is one linear embed -> patch x k (compose_head). */
    porta_tensor *last = porta_slice(g, h, 2, T - 1, 1);
    static const char *const head[TOTO_HEAD_COUNT] = {"head.df", "head.loc", "head.scale", "head.logits"};
    int64_t K = c->k_components;
    porta_tensor *y[TOTO_HEAD_COUNT];
    for (int k = 0; k < TOTO_HEAD_COUNT; k++) {
        porta_tensor *w = porta_param(g, m->head, m->head_wc[k].offset, 2, m->head_wc[k].shape);
        porta_tensor *b = porta_param(g, m->head, m->head_bc[k].offset, 1, m->head_bc[k].shape);
        y[k] = porta_reshape(g, porta_linear(g, last, w, b), 4, (const int64_t[]){B, V, P, K});
        porta_status s = porta_output(g, porta_name(y[k], head[k]));
        if (s != PORTA_OK) return s;
    }
    if (draws > 0) {
        porta_tensor *key = porta_input(g, "sample_key", 1, (const int64_t[]){4});
        porta_tensor *d = porta_mixture_sample(g, y[TOTO_HEAD_DF], y[TOTO_HEAD_LOC], y[TOTO_HEAD_SCALE],
                                               y[TOTO_HEAD_LOGITS], key, draws);
        porta_status s = porta_output(g, porta_name(d, "sample"));
        if (s != PORTA_OK) return s;
    }
    porta_status s = porta_graph_status(g);
    if (s != PORTA_OK) return toto_fail(s, "building the Toto graph: %s", porta_graph_error(g));
    return PORTA_OK;
}

porta_status toto_build(const porta_toto_model *m, porta_kvcache *kv, int rows, int variates, int T, int traced,
                        int draws, porta_program **out)
{
    porta_graph *g = NULL;
    porta_status s = porta_graph_new(&g);
    if (s == PORTA_OK) s = build_graph(m, kv, rows, variates, T, draws, g);
    if (s == PORTA_OK) s = traced ? porta_compile_traced(g, m->be, out) : porta_compile(g, m->be, out);
    porta_graph_free(g);
    return s;
}

/* The composed head, on the model's backend: for head h with weights Wh
 * [k, E] and bias bh, and the unembedding's Wu [P E, E] and bu [P E] seen as
 * P blocks Wu_t [E, E], bu_t [E]:
 *   Wc [t k + j, :] = Wh [j, :] Wu_t,   bc [t k + j] = Wh [j, :] bu_t + bh [j],
 * so that Wc x + bc equals the head applied to each time step of Wu x + bu.
 * Computed once, in float32 on the backend, into m->head; m->head_src, which
 * held Wu, bu, Wh and bh, is freed. */
static porta_status compose_head(porta_toto_model *m)
{
    const porta_toto_config *c = &m->cfg;
    int64_t E = c->embed_dim, P = c->patch_size, K = c->k_components;
    porta_graph *g = NULL;
    porta_program *p = NULL;
    float *host = NULL;
    porta_status s = porta_graph_new(&g);
    if (s != PORTA_OK) return s;
    static const int swap[3] = {0, 2, 1};
    /* Wu_t^T as [P, E (k), E (e)], bu as [P, E]. */
    porta_tensor *wu = porta_permute(g, porta_reshape(g, param(g, m, &m->unembed_w), 3, (const int64_t[]){P, E, E}),
                                     swap);
    porta_tensor *bu = porta_reshape(g, param(g, m, &m->unembed_b), 2, (const int64_t[]){P, E});
    for (int h = 0; h < TOTO_HEAD_COUNT; h++) {
        porta_tensor *wht = porta_permute(g, param(g, m, &m->head_w[h]), (const int[]){1, 0}); /* [E, k] */
        /* [P, E, k] -> [P, k, E] -> [P k, E] */
        porta_tensor *wc = porta_permute(g, porta_matmul(g, wu, wht), swap);
        wc = porta_reshape(g, porta_contiguous(g, wc), 2, (const int64_t[]){P * K, E});
        porta_tensor *bc = porta_add(g, porta_matmul(g, bu, wht), param(g, m, &m->head_b[h]));
        if ((s = porta_output(g, wc)) != PORTA_OK || (s = porta_output(g, bc)) != PORTA_OK) break;
    }
    if (s == PORTA_OK) s = porta_graph_status(g);
    if (s != PORTA_OK) s = toto_fail(s, "composing the Toto head: %s", porta_graph_error(g));
    int64_t per = P * K * (E + 1);
    if (s == PORTA_OK) s = porta_compile(g, m->be, &p);
    if (s == PORTA_OK) s = porta_buffer_new(m->be, PORTA_F32, TOTO_HEAD_COUNT * per, &m->head);
    if (s == PORTA_OK && !(host = malloc((size_t)(TOTO_HEAD_COUNT * per) * sizeof *host)))
        s = toto_fail(PORTA_ERR_NOMEM, "composing the Toto head: no host memory");
    if (s == PORTA_OK) {
        float *out[2 * TOTO_HEAD_COUNT];
        for (int h = 0; h < TOTO_HEAD_COUNT; h++) {
            m->head_wc[h] = (toto_weight){.offset = h * per, .ndim = 2, .shape = {P * K, E}};
            m->head_bc[h] = (toto_weight){.offset = h * per + P * K * E, .ndim = 1, .shape = {P * K, 0}};
            out[2 * h] = host + m->head_wc[h].offset;
            out[2 * h + 1] = host + m->head_bc[h].offset;
        }
        s = porta_run(p, &(porta_step){.outputs = out});
        if (s == PORTA_OK) s = porta_program_wait(p);
    }
    if (s == PORTA_OK) s = porta_buffer_write(m->head, 0, TOTO_HEAD_COUNT * per, host);
    free(host);
    porta_program_free(p);
    porta_graph_free(g);
    /* The sources are read only here: the programs use the composed head. */
    porta_buffer_free(m->head_src);
    m->head_src = NULL;
    return s;
}

static void assign_layers(porta_toto_model *m)
{
    const porta_toto_config *c = &m->cfg;
    int n = c->spacewise_every_n_layers;
    m->n_time_layers = 0;
    for (int i = 0; i < c->num_layers; i++) {
        toto_layer *ly = &m->layers[i];
        /* toto-ts's _get_layer_types: blocks of n layers, one space-wise
         * layer first or last in each. */
        ly->spacewise = n > 0 && (c->spacewise_first ? i % n == 0 : i % n == n - 1);
        ly->cache_layer = ly->spacewise ? -1 : m->n_time_layers++;
    }
}

porta_status toto_read_text(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return toto_fail(PORTA_ERR_IO, "cannot open %s", path);
    char *text = NULL;
    size_t len = 0, cap = 0;
    porta_status s = PORTA_OK;
    for (;;) {
        if (cap - len < 4096) {
            char *t = realloc(text, cap = cap * 2 + 4096);
            if (!t) {
                s = toto_fail(PORTA_ERR_NOMEM, "no host memory to read %s", path);
                break;
            }
            text = t;
        }
        size_t r = fread(text + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) break;
    }
    if (s == PORTA_OK && ferror(f)) s = toto_fail(PORTA_ERR_IO, "cannot read %s", path);
    fclose(f);
    if (s != PORTA_OK) {
        free(text);
        return s;
    }
    text[len] = '\0';
    *out = text;
    return PORTA_OK;
}

porta_status porta_toto_model_load(const char *dir, porta_backend *be, porta_toto_model **out)
{
    if (!dir || !be || !out) return toto_fail(PORTA_ERR_ARG, "porta_toto_model_load: null argument");
    *out = NULL;
    size_t n = strlen(dir) + 32;
    char *path = malloc(n);
    porta_toto_model *m = calloc(1, sizeof *m);
    if (!path || !m) {
        free(path);
        free(m);
        return toto_fail(PORTA_ERR_NOMEM, "porta_toto_model_load: no host memory");
    }
    m->be = be;
    snprintf(path, n, "%s/config.json", dir);
    porta_status s = porta_toto_config_load(path, &m->cfg);
    if (s == PORTA_OK) {
        m->layers = calloc((size_t)m->cfg.num_layers, sizeof *m->layers);
        if (!m->layers) s = toto_fail(PORTA_ERR_NOMEM, "porta_toto_model_load: no host memory");
    }
    if (s == PORTA_OK) {
        assign_layers(m);
        snprintf(path, n, "%s/model.safetensors", dir);
        s = toto_weights_load(m, path);
    }
    if (s == PORTA_OK) s = compose_head(m);
    free(path);
    if (s != PORTA_OK) {
        porta_toto_model_free(m);
        return s;
    }
    *out = m;
    return PORTA_OK;
}

void porta_toto_model_free(porta_toto_model *m)
{
    if (!m) return;
    porta_buffer_free(m->weights);
    porta_buffer_free(m->head_src);
    porta_buffer_free(m->head);
    free(m->layers);
    free(m);
}

const porta_toto_config *porta_toto_model_config(const porta_toto_model *m) { return m ? &m->cfg : NULL; }
