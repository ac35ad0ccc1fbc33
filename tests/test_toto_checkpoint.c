/* Loading Toto checkpoints: the tiny fixture, its fused-name twin, and
 * variants written to a scratch directory. Fused and unfused MLP names must
 * give bit-identical forecasts (same weights, same graph); a bf16 copy must load and stay within bf16's
 * rounding (rel MAE of the mean <= 2e-2: 8 mantissa bits through a few
 * layers); broken configs and state dicts must fail with PORTA_ERR_FORMAT and
 * a message naming the culprit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "porta/safetensors.h"
#include "porta/toto.h"
#include "testutil.h"

typedef struct fixture {
    const char *src, *tmp;
    porta_backend *be;
    char *config;
    porta_st_file *st;
    int B, V, T, H;
    float *x, *pad;
    int32_t *id;
} fixture;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) exit(1);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

/* Rewrites of the state dict: rename (fused <-> unfused MLP names), drop one
 * tensor, shrink one tensor's first dimension, or store as bf16. */
typedef struct rewrite {
    int swap_mlp;
    const char *drop, *shrink;
    int bf16;
} rewrite;

static const char *const mlp_names[4][2] = {
    {"mlp.0.weight", "mlp.0.w12.weight"},
    {"mlp.0.bias", "mlp.0.w12.bias"},
    {"mlp.2.weight", "mlp.0.w3.weight"},
    {"mlp.2.bias", "mlp.0.w3.bias"},
};

static void renamed(const char *name, int swap, char *out, size_t n)
{
    snprintf(out, n, "%s", name);
    for (int i = 0; swap && i < 4; i++)
        for (int d = 0; d < 2; d++) {
            const char *from = mlp_names[i][d], *to = mlp_names[i][1 - d];
            size_t ln = strlen(name), lf = strlen(from);
            if (ln > lf && !strcmp(name + ln - lf, from) && name[ln - lf - 1] == '.') {
                snprintf(out, n, "%.*s%s", (int)(ln - lf), name, to);
                return;
            }
        }
}

static uint16_t to_bf16(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static void write_model(const fixture *fx, const char *dir, const rewrite *rw)
{
    int n = porta_st_count(fx->st);
    size_t cap = 1 << 16, len = 0, off = 0;
    char *hdr = malloc(cap);
    len += (size_t)snprintf(hdr, cap, "{");
    float **data = calloc((size_t)n, sizeof *data);
    int64_t *numel = calloc((size_t)n, sizeof *numel);
    for (int i = 0; i < n; i++) {
        const porta_st_tensor *t = porta_st_at(fx->st, i);
        if (rw->drop && !strcmp(t->name, rw->drop)) continue;
        int64_t shape[PORTA_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        int64_t all = porta_st_numel(t);
        data[i] = malloc((size_t)all * sizeof(float));
        CHECK_OK(porta_st_to_f32(t, data[i], all));
        if (rw->shrink && !strcmp(t->name, rw->shrink)) shape[0]--;
        numel[i] = 1;
        for (int d = 0; d < t->ndim; d++) numel[i] *= shape[d];
        char name[256];
        renamed(t->name, rw->swap_mlp, name, sizeof name);
        size_t bytes = (size_t)numel[i] * (rw->bf16 ? 2 : 4);
        if (cap - len < 512) hdr = realloc(hdr, cap *= 2);
        len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", len > 1 ? "," : "",
                                name, rw->bf16 ? "BF16" : "F32");
        for (int d = 0; d < t->ndim; d++)
            len += (size_t)snprintf(hdr + len, cap - len, d ? ",%lld" : "%lld", (long long)shape[d]);
        len += (size_t)snprintf(hdr + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    uint64_t hl = len;
    int ok = f && fwrite(&hl, 8, 1, f) == 1 && fwrite(hdr, 1, len, f) == len;
    for (int i = 0; ok && i < n; i++) {
        if (!data[i]) continue;
        for (int64_t j = 0; ok && j < numel[i]; j++) {
            if (rw->bf16) {
                uint16_t h = to_bf16(data[i][j]);
                ok = fwrite(&h, 2, 1, f) == 1;
            } else {
                ok = fwrite(&data[i][j], 4, 1, f) == 1;
            }
        }
    }
    if (!f || !ok || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    for (int i = 0; i < n; i++) free(data[i]);
    free(data);
    free(numel);
    free(hdr);
}

static porta_status forecast(const fixture *fx, const char *dir, float *mean)
{
    porta_toto_model *m;
    porta_status s = porta_toto_model_load(dir, fx->be, &m);
    if (s != PORTA_OK) return s;
    porta_toto_forecaster *f;
    porta_toto_forecast_desc d = {.series = fx->B, .variates = fx->V, .context_len = fx->T, .horizon = fx->H};
    s = porta_toto_forecaster_new(m, &d, &f);
    porta_toto_inputs in = {.series = fx->x, .padding_mask = fx->pad, .id_mask = fx->id};
    if (s == PORTA_OK) s = porta_toto_forecast(f, &in, &(porta_toto_result){mean, NULL});
    porta_toto_forecaster_free(f);
    porta_toto_model_free(m);
    return s;
}

/* The config with the first `from` replaced by `to`. The edits rename the
 * original key, so they hold whatever the file's spacing. */
static char *edit(const char *config, const char *from, const char *to)
{
    const char *at = strstr(config, from);
    if (!at) {
        fprintf(stderr, "config.json of the fixture lacks %s\n", from);
        exit(1);
    }
    char *out = malloc(strlen(config) + strlen(to) + 1);
    sprintf(out, "%.*s%s%s", (int)(at - config), config, to, at + strlen(from));
    return out;
}

static void expect_format(checker *c, const fixture *fx, const char *what, const char *needle)
{
    float *mean = malloc((size_t)fx->B * fx->V * fx->H * sizeof(float));
    porta_clear_error();
    porta_status s = forecast(fx, fx->tmp, mean);
    char line[512];
    snprintf(line, sizeof line, "%s: %s \"%s\"", what, porta_status_name(s), porta_last_error());
    check_true(c, line, s == PORTA_ERR_FORMAT && strstr(porta_last_error(), needle));
    free(mean);
}

static float *tensor(porta_st_file *st, const char *name, int64_t n)
{
    const porta_st_tensor *t = porta_st_find(st, name);
    float *v = malloc((size_t)n * sizeof(float));
    if (!t || !v || porta_st_numel(t) != n) exit(1);
    CHECK_OK(porta_st_to_f32(t, v, n));
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s BACKEND FIXTURE_DIR FUSED_FIXTURE_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    fixture fx = {.src = argv[2], .tmp = argv[4], .be = open_or_skip(argv[1])};
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", fx.src);
    fx.config = slurp(path);
    snprintf(path, sizeof path, "%s/model.safetensors", fx.src);
    CHECK_OK(porta_st_open(path, &fx.st));
    porta_st_file *ref;
    snprintf(path, sizeof path, "%s/reference.safetensors", fx.src);
    CHECK_OK(porta_st_open(path, &ref));
    const porta_st_tensor *series = porta_st_find(ref, "inputs.series");
    if (!series || series->ndim != 3) return 1;
    fx.B = (int)series->shape[0];
    fx.V = (int)series->shape[1];
    fx.T = (int)series->shape[2];
    fx.H = 17;
    int64_t n = (int64_t)fx.B * fx.V * fx.T;
    fx.x = tensor(ref, "inputs.series", n);
    fx.pad = tensor(ref, "inputs.padding_mask", n);
    float *idf = tensor(ref, "inputs.id_mask", n);
    fx.id = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) fx.id[i] = (int32_t)lrintf(idf[i]);
    size_t nh = (size_t)fx.B * fx.V * fx.H;
    float *base = malloc(nh * sizeof(float)), *other = malloc(nh * sizeof(float));
    checker c = {0};

    CHECK_OK(forecast(&fx, fx.src, base));
    fill_nan(other, (int64_t)nh);
    CHECK_OK(forecast(&fx, argv[3], other));
    check_true(&c, "fused-name fixture: identical forecasts", !memcmp(base, other, nh * sizeof(float)));
    put(fx.tmp, "config.json", fx.config);
    write_model(&fx, fx.tmp, &(rewrite){.swap_mlp = 1});
    fill_nan(other, (int64_t)nh);
    CHECK_OK(forecast(&fx, fx.tmp, other));
    check_true(&c, "MLP names swapped: identical forecasts", !memcmp(base, other, nh * sizeof(float)));

    write_model(&fx, fx.tmp, &(rewrite){.bf16 = 1});
    fill_nan(other, (int64_t)nh);
    CHECK_OK(forecast(&fx, fx.tmp, other));
    double e = 0, m = 0;
    for (size_t i = 0; i < nh; i++) {
        e += fabs(other[i] - base[i]);
        m += fabs(base[i]);
    }
    char what[128];
    snprintf(what, sizeof what, "bf16 checkpoint: mean rel MAE %.3g <= 2e-2", e / m);
    check_true(&c, what, e / m <= 2e-2);

    /* Broken state dicts, with the original config. */
    write_model(&fx, fx.tmp, &(rewrite){.drop = "model.unembed.bias"});
    expect_format(&c, &fx, "missing tensor", "model.unembed.bias");
    write_model(&fx, fx.tmp, &(rewrite){.shrink = "model.transformer.layers.0.attention.wO.weight"});
    expect_format(&c, &fx, "wrong shape", "layers.0.attention.wO.weight");

    /* Broken configs, with a valid state dict. */
    write_model(&fx, fx.tmp, &(rewrite){0});
    struct {
        const char *what, *from, *to, *needle;
    } cfgs[] = {
        {"not JSON", "{", "{{", "not valid JSON"},
        {"missing key", "\"embed_dim\"", "\"embed_dimension\"", "embed_dim"},
        {"wrong type", "\"num_heads\"", "\"num_heads\": \"x\", \"was_num_heads\"", "num_heads"},
        {"not divisible", "\"num_heads\"", "\"num_heads\": 7, \"was_num_heads\"", "divisible"},
        {"out of range", "\"dropout\"", "\"dropout\": 2, \"was_dropout\"", "dropout"},
        {"bad scaler", "CausalPatchStdMeanScaler", "StdMinScaler", "scaler_cls"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        char *bad = edit(fx.config, cfgs[i].from, cfgs[i].to);
        put(fx.tmp, "config.json", bad);
        expect_format(&c, &fx, cfgs[i].what, cfgs[i].needle);
        free(bad);
    }

    free(base);
    free(other);
    free(idf);
    free(fx.id);
    free(fx.pad);
    free(fx.x);
    free(fx.config);
    porta_st_close(ref);
    porta_st_close(fx.st);
    porta_backend_close(fx.be);
    return checker_exit(&c);
}
