/* The state dict of a toto-ts checkpoint: names and shapes checked against
 * the config, converted to float32 and uploaded once: the backbone into the
 * model's buffer, the unembedding and the head's linears into a load-time
 * buffer that composing the head consumes (model.c). */
#include <stdio.h>
#include <string.h>
#include "porta/safetensors.h"
#include "toto_internal.h"

typedef struct loader {
    porta_toto_model *m;
    porta_st_file *st;
    const char *path;
    unsigned char *used;   /* per tensor of the file */
    int64_t next[2];       /* running offsets in the model's buffer and in head_src */
    int src;               /* take() places into head_src */
    int upload;            /* second pass: convert and write */
    float *scratch;
    int64_t scratch_n;
} loader;

static porta_status upload(loader *L, const porta_st_tensor *t, const toto_weight *w)
{
    int64_t n = porta_st_numel(t);
    if (n > L->scratch_n) {
        float *s = realloc(L->scratch, (size_t)n * sizeof(float));
        if (!s) return toto_fail(PORTA_ERR_NOMEM, "%s: no host memory to convert %s", L->path, t->name);
        L->scratch = s;
        L->scratch_n = n;
    }
    porta_status s = porta_st_to_f32(t, L->scratch, n);
    if (s == PORTA_OK) s = porta_buffer_write(w->src ? L->m->head_src : L->m->weights, w->offset, n, L->scratch);
    return s;
}

/* Resolves one tensor by name (the first of up to two aliases present) with
 * the expected shape; in the upload pass also converts and writes it. */
static porta_status take(loader *L, const char *name, const char *alias, int ndim, int64_t d0, int64_t d1,
                         toto_weight *w)
{
    const porta_st_tensor *t = porta_st_find(L->st, name);
    if (!t && alias) t = porta_st_find(L->st, alias);
    if (!t) {
        if (alias) return toto_fail(PORTA_ERR_FORMAT, "%s: tensor %s (or %s) is missing", L->path, name, alias);
        return toto_fail(PORTA_ERR_FORMAT, "%s: tensor %s is missing", L->path, name);
    }
    if (t->dtype != PORTA_ST_F32 && t->dtype != PORTA_ST_BF16 && t->dtype != PORTA_ST_F16)
        return toto_fail(PORTA_ERR_FORMAT, "%s: tensor %s has dtype %s (f32, bf16 or f16 expected)", L->path,
                         t->name, porta_st_dtype_name(t->dtype));
    int64_t want[2] = {d0, d1};
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char got[96] = "", *p = got;
        for (int i = 0; i < t->ndim && p < got + sizeof got - 24; i++)
            p += snprintf(p, 24, i ? ", %lld" : "%lld", (long long)t->shape[i]);
        if (ndim == 1)
            return toto_fail(PORTA_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%lld]", L->path, t->name, got,
                             (long long)d0);
        return toto_fail(PORTA_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%lld, %lld]", L->path, t->name,
                         got, (long long)d0, (long long)d1);
    }
    for (int i = 0; i < porta_st_count(L->st); i++)
        if (porta_st_at(L->st, i) == t) L->used[i] = 1;
    if (L->upload) return upload(L, t, w);
    w->src = L->src;
    w->offset = L->next[L->src];
    w->ndim = ndim;
    w->shape[0] = d0;
    w->shape[1] = d1;
    L->next[L->src] += porta_st_numel(t);
    return PORTA_OK;
}

static porta_status take_layer(loader *L, int i, toto_layer *ly)
{
    const porta_toto_config *c = &L->m->cfg;
    int64_t E = c->embed_dim, F = c->mlp_hidden_dim;
    char n[160], a[160];
    porta_status s = PORTA_OK;
#define NAME(fmt) (snprintf(n, sizeof n, "model.transformer.layers.%d." fmt, i), n)
#define ALIAS(fmt) (snprintf(a, sizeof a, "model.transformer.layers.%d." fmt, i), a)
    if (s == PORTA_OK) s = take(L, NAME("norm1.scale"), NULL, 1, E, 0, &ly->norm1);
    if (s == PORTA_OK) s = take(L, NAME("norm2.scale"), NULL, 1, E, 0, &ly->norm2);
    if (s == PORTA_OK) s = take(L, NAME("attention.wQKV.weight"), NULL, 2, 3 * E, E, &ly->wqkv);
    if (s == PORTA_OK) s = take(L, NAME("attention.wQKV.bias"), NULL, 1, 3 * E, 0, &ly->bqkv);
    if (s == PORTA_OK) s = take(L, NAME("attention.wO.weight"), NULL, 2, E, E, &ly->wo);
    if (s == PORTA_OK) s = take(L, NAME("attention.wO.bias"), NULL, 1, E, 0, &ly->bo);
    /* toto-ts saves the xFormers fused SwiGLU names or the unfused Sequential's. */
    if (s == PORTA_OK) s = take(L, NAME("mlp.0.weight"), ALIAS("mlp.0.w12.weight"), 2, 2 * F, E, &ly->w1);
    if (s == PORTA_OK) s = take(L, NAME("mlp.0.bias"), ALIAS("mlp.0.w12.bias"), 1, 2 * F, 0, &ly->b1);
    if (s == PORTA_OK) s = take(L, NAME("mlp.2.weight"), ALIAS("mlp.0.w3.weight"), 2, E, F, &ly->w2);
    if (s == PORTA_OK) s = take(L, NAME("mlp.2.bias"), ALIAS("mlp.0.w3.bias"), 1, E, 0, &ly->b2);
#undef NAME
#undef ALIAS
    return s;
}

static porta_status take_all(loader *L)
{
    porta_toto_model *m = L->m;
    const porta_toto_config *c = &m->cfg;
    int64_t E = c->embed_dim, P = c->patch_size, K = c->k_components;
    static const char *const head[TOTO_HEAD_COUNT] = {"df", "loc_proj", "scale_proj", "mixture_weights"};
    porta_status s = take(L, "model.patch_embed.projection.weight", NULL, 2, E, P, &m->patch_w);
    if (s == PORTA_OK) s = take(L, "model.patch_embed.projection.bias", NULL, 1, E, 0, &m->patch_b);
    for (int i = 0; s == PORTA_OK && i < c->num_layers; i++) s = take_layer(L, i, &m->layers[i]);
    L->src = 1;
    if (s == PORTA_OK) s = take(L, "model.unembed.weight", NULL, 2, E * P, E, &m->unembed_w);
    if (s == PORTA_OK) s = take(L, "model.unembed.bias", NULL, 1, E * P, 0, &m->unembed_b);
    for (int h = 0; s == PORTA_OK && h < TOTO_HEAD_COUNT; h++) {
        char w[96], b[96];
        snprintf(w, sizeof w, "model.output_distribution.%s.weight", head[h]);
        snprintf(b, sizeof b, "model.output_distribution.%s.bias", head[h]);
        s = take(L, w, NULL, 2, K, E, &m->head_w[h]);
        if (s == PORTA_OK) s = take(L, b, NULL, 1, K, 0, &m->head_b[h]);
    }
    L->src = 0;
    return s;
}

static void warn_unused(const loader *L)
{
    for (int i = 0; i < porta_st_count(L->st); i++) {
        const char *name = porta_st_at(L->st, i)->name;
        /* Recomputed from the config; toto-ts drops it when loading too. */
        if (L->used[i] || strstr(name, "rotary_emb.freqs")) continue;
        fprintf(stderr, "porta toto: %s: ignoring unknown tensor %s\n", L->path, name);
    }
}

porta_status toto_weights_load(porta_toto_model *m, const char *path)
{
    loader L = {.m = m, .path = path};
    porta_status s = porta_st_open(path, &L.st);
    if (s != PORTA_OK) return s;
    L.used = calloc((size_t)porta_st_count(L.st) + 1, 1);
    if (!L.used) s = toto_fail(PORTA_ERR_NOMEM, "%s: no host memory", path);
    if (s == PORTA_OK) s = take_all(&L);
    if (s == PORTA_OK) {
        m->n_weights = L.next[0];
        s = porta_buffer_new(m->be, PORTA_F32, L.next[0], &m->weights);
    }
    if (s == PORTA_OK) s = porta_buffer_new(m->be, PORTA_F32, L.next[1], &m->head_src);
    if (s == PORTA_OK) {
        L.upload = 1;
        s = take_all(&L);
    }
    if (s == PORTA_OK) warn_unused(&L);
    free(L.scratch);
    free(L.used);
    porta_st_close(L.st);
    return s;
}
