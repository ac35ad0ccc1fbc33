/* config.json as toto-ts's Toto constructor reads it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>
#include "toto_internal.h"

#define SCALER_CAUSAL_PATCH "<class 'model.scaler.CausalPatchStdMeanScaler'>"
#define DIST_MIXTURE "<class 'model.distribution.MixtureOfStudentTsOutput'>"

typedef struct cfg_ctx {
    const char *path;
    json_object *root;
} cfg_ctx;

static porta_status bad(const cfg_ctx *c, const char *key, const char *why)
{
    return toto_fail(PORTA_ERR_FORMAT, "%s: \"%s\" %s", c->path, key, why);
}

/* *found = 0 when absent (the caller decides whether that is an error). */
static porta_status get_int(const cfg_ctx *c, const char *key, int required, int lo, int hi, int *out)
{
    json_object *v;
    if (!json_object_object_get_ex(c->root, key, &v))
        return required ? bad(c, key, "is missing") : PORTA_OK;
    if (!json_object_is_type(v, json_type_int)) return bad(c, key, "must be an integer");
    int64_t x = json_object_get_int64(v);
    if (x < lo || x > hi) {
        return toto_fail(PORTA_ERR_FORMAT, "%s: \"%s\" = %lld is outside [%d, %d]", c->path, key, (long long)x, lo,
                         hi);
    }
    *out = (int)x;
    return PORTA_OK;
}

static porta_status get_double(const cfg_ctx *c, const char *key, int required, double lo, double hi, double *out)
{
    json_object *v;
    if (!json_object_object_get_ex(c->root, key, &v))
        return required ? bad(c, key, "is missing") : PORTA_OK;
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return bad(c, key, "must be a number");
    double x = json_object_get_double(v);
    if (!(x >= lo && x <= hi))
        return toto_fail(PORTA_ERR_FORMAT, "%s: \"%s\" = %g is outside [%g, %g]", c->path, key, x, lo, hi);
    *out = x;
    return PORTA_OK;
}

static porta_status get_bool(const cfg_ctx *c, const char *key, int *out)
{
    json_object *v;
    if (!json_object_object_get_ex(c->root, key, &v)) return PORTA_OK;
    if (!json_object_is_type(v, json_type_boolean)) return bad(c, key, "must be true or false");
    *out = json_object_get_boolean(v);
    return PORTA_OK;
}

static porta_status check_scaler(const cfg_ctx *c)
{
    json_object *v;
    if (!json_object_object_get_ex(c->root, "scaler_cls", &v)) return bad(c, "scaler_cls", "is missing");
    if (!json_object_is_type(v, json_type_string)) return bad(c, "scaler_cls", "must be a string");
    if (strcmp(json_object_get_string(v), SCALER_CAUSAL_PATCH) != 0)
        return toto_fail(PORTA_ERR_FORMAT, "%s: scaler_cls \"%s\" is not supported (only %s)", c->path,
                         json_object_get_string(v), SCALER_CAUSAL_PATCH);
    return PORTA_OK;
}

static porta_status check_distribution(const cfg_ctx *c, porta_toto_config *cfg)
{
    json_object *v;
    if (!json_object_object_get_ex(c->root, "output_distribution_classes", &v))
        return bad(c, "output_distribution_classes", "is missing");
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) < 1)
        return bad(c, "output_distribution_classes", "must be a non-empty array");
    json_object *first = json_object_array_get_idx(v, 0);
    if (!json_object_is_type(first, json_type_string) || strcmp(json_object_get_string(first), DIST_MIXTURE) != 0)
        return toto_fail(PORTA_ERR_FORMAT, "%s: output_distribution_classes[0] must be \"%s\"", c->path,
                         DIST_MIXTURE);
    json_object *kw;
    if (!json_object_object_get_ex(c->root, "output_distribution_kwargs", &kw) || json_object_is_type(kw, json_type_null))
        return bad(c, "output_distribution_kwargs", "must give k_components for a mixture");
    if (!json_object_is_type(kw, json_type_object)) return bad(c, "output_distribution_kwargs", "must be an object");
    json_object_object_foreach(kw, key, val)
    {
        (void)val;
        if (strcmp(key, "k_components") != 0)
            fprintf(stderr, "porta toto: %s: ignoring unknown output_distribution_kwargs key \"%s\"\n", c->path, key);
    }
    cfg_ctx sub = {c->path, kw};
    return get_int(&sub, "k_components", 1, 1, 4096, &cfg->k_components);
}

static const char *const known_keys[] = {
    "patch_size", "stride", "embed_dim", "num_layers", "num_heads", "mlp_hidden_dim", "dropout",
    "spacewise_every_n_layers", "scaler_cls", "output_distribution_classes", "spacewise_first",
    "output_distribution_kwargs", "use_memory_efficient_attention", "stabilize_with_global",
    "scale_factor_exponent", "pre_xformers_checkpoint",
};

static void warn_unknown(const cfg_ctx *c)
{
    json_object_object_foreach(c->root, key, val)
    {
        (void)val;
        int known = 0;
        for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++) known |= !strcmp(key, known_keys[i]);
        if (!known) fprintf(stderr, "porta toto: %s: ignoring unknown key \"%s\"\n", c->path, key);
    }
}

static porta_status check_relations(const cfg_ctx *c, const porta_toto_config *cfg)
{
    if (cfg->stride != cfg->patch_size)
        return toto_fail(PORTA_ERR_FORMAT, "%s: stride %d != patch_size %d (the forecaster decodes whole patches)",
                         c->path, cfg->stride, cfg->patch_size);
    if (cfg->embed_dim % cfg->num_heads)
        return toto_fail(PORTA_ERR_FORMAT, "%s: embed_dim %d is not divisible by num_heads %d", c->path,
                         cfg->embed_dim, cfg->num_heads);
    if ((cfg->embed_dim / cfg->num_heads) % 2)
        return toto_fail(PORTA_ERR_FORMAT, "%s: head dim %d must be even for rotary embeddings", c->path,
                         cfg->embed_dim / cfg->num_heads);
    if (cfg->spacewise_every_n_layers == 0 || cfg->spacewise_every_n_layers < -1)
        return bad(c, "spacewise_every_n_layers", "must be -1 or positive");
    if (cfg->spacewise_every_n_layers > 0 && cfg->num_layers % cfg->spacewise_every_n_layers)
        return toto_fail(PORTA_ERR_FORMAT, "%s: num_layers %d is not divisible by spacewise_every_n_layers %d",
                         c->path, cfg->num_layers, cfg->spacewise_every_n_layers);
    /* The cache layout needs at least one time-wise layer, as toto-ts's KVCache. */
    if (cfg->spacewise_every_n_layers == 1)
        return bad(c, "spacewise_every_n_layers", "= 1 leaves no time-wise layer");
    return PORTA_OK;
}

porta_status toto_config_parse(const char *path, const char *text, porta_toto_config *cfg)
{
    enum json_tokener_error jerr;
    json_object *root = json_tokener_parse_verbose(text, &jerr);
    if (!root)
        return toto_fail(PORTA_ERR_FORMAT, "%s: not valid JSON (%s)", path, json_tokener_error_desc(jerr));
    cfg_ctx c = {path, root};
    porta_status s = PORTA_OK;
    if (!json_object_is_type(root, json_type_object)) s = toto_fail(PORTA_ERR_FORMAT, "%s: not a JSON object", path);
    /* toto-ts's defaults for the optional constructor arguments. */
    *cfg = (porta_toto_config){.spacewise_first = 1, .stabilize_with_global = 1, .scale_factor_exponent = 10.0};
    if (s == PORTA_OK) s = get_int(&c, "patch_size", 1, 1, 1 << 16, &cfg->patch_size);
    if (s == PORTA_OK) s = get_int(&c, "stride", 1, 1, 1 << 16, &cfg->stride);
    if (s == PORTA_OK) s = get_int(&c, "embed_dim", 1, 1, 1 << 16, &cfg->embed_dim);
    if (s == PORTA_OK) s = get_int(&c, "num_layers", 1, 1, 1024, &cfg->num_layers);
    if (s == PORTA_OK) s = get_int(&c, "num_heads", 1, 1, 1024, &cfg->num_heads);
    if (s == PORTA_OK) s = get_int(&c, "mlp_hidden_dim", 1, 1, 1 << 20, &cfg->mlp_hidden_dim);
    if (s == PORTA_OK) s = get_double(&c, "dropout", 1, 0.0, 1.0, &cfg->dropout);
    if (s == PORTA_OK) s = get_int(&c, "spacewise_every_n_layers", 1, -1, 1024, &cfg->spacewise_every_n_layers);
    if (s == PORTA_OK) s = check_scaler(&c);
    if (s == PORTA_OK) s = check_distribution(&c, cfg);
    if (s == PORTA_OK) s = get_bool(&c, "spacewise_first", &cfg->spacewise_first);
    if (s == PORTA_OK) s = get_bool(&c, "stabilize_with_global", &cfg->stabilize_with_global);
    if (s == PORTA_OK) s = get_double(&c, "scale_factor_exponent", 0, 0.0, 30.0, &cfg->scale_factor_exponent);
    int ignored = 0;
    if (s == PORTA_OK) s = get_bool(&c, "use_memory_efficient_attention", &ignored);
    if (s == PORTA_OK) s = get_bool(&c, "pre_xformers_checkpoint", &ignored);
    if (s == PORTA_OK) s = check_relations(&c, cfg);
    if (s == PORTA_OK) warn_unknown(&c);
    json_object_put(root);
    return s;
}

porta_status porta_toto_config_load(const char *path, porta_toto_config *cfg)
{
    if (!path || !cfg) return toto_fail(PORTA_ERR_ARG, "porta_toto_config_load: null argument");
    char *text = NULL;
    porta_status s = toto_read_text(path, &text);
    if (s != PORTA_OK) return s;
    s = toto_config_parse(path, text, cfg);
    free(text);
    return s;
}
