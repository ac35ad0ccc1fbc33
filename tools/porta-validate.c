/* porta-validate: runs the same Toto forecast on several backends and
 * compares each with a reference (the float64 ref backend when present). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "porta/safetensors.h"
#include "csv.h"
#include "validate.h"
#include "cli.h"

/* Relative MAE thresholds by the dtype the model computes in. f32: a
 * float32 pipeline against float64 differs by rounding (~1e-7 per op), grown
 * through the layers and fed back through the mean path at every step. The
 * CPU and Vulkan backends show 2e-7 on the tiny test checkpoint, the CPU 6e-7
 * on Toto-Open-Base-1.0's shapes (random weights), so 1e-4 leaves two orders
 * of margin, yet an op off by 1e-3 fails it. f16 and bf16 keep 11 and 8
 * significant bits. */
static const struct {
    const char *name;
    double tol;
} dtype_tol[] = {{"f32", 1e-4}, {"f16", 5e-3}, {"bf16", 3e-2}};
enum { N_DTYPES = sizeof dtype_tol / sizeof dtype_tol[0] };
/* Every Toto weight, activation and cache entry is f32 on every backend. */
#define MODEL_DTYPE 0

typedef struct options {
    const char *model, *input, *backends;
    uint64_t seed;
    int steps, series, variates, context;
    double tol[N_DTYPES];
    int trace, json;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: porta-validate --model DIR [options]\n"
            "Runs one Toto forecast (mean path) on several backends and compares each with a\n"
            "reference: the mixture parameters and the mean forecast at every step.\n"
            "  --model DIR         Toto checkpoint directory (config.json, model.safetensors)\n"
            "  --input CSV         series, one column per variate (as porta-forecast reads them)\n"
            "  --random SEED       random seasonal series instead of --input (default: --random 0)\n"
            "  --series N          random input: independent series (default 1)\n"
            "  --variates N        random input: variates per series (default 3)\n"
            "  --context N         random input: time steps of context (default 8 patches)\n"
            "  --backends LIST     comma-separated, e.g. ref,cpu,vulkan,cuda:0 (default: ref and\n"
            "                      every backend that opens); the reference is ref when listed,\n"
            "                      else the first\n"
            "  --steps N           decode steps after the prefill (default 3)\n"
            "  --tolerance T       relative MAE threshold: one number for the model's dtype, or\n"
            "                      DTYPE=T,... (f32, f16, bf16; defaults f32=1e-4,f16=5e-3,bf16=3e-2)\n"
            "  --trace             also compare every node of the prefill graph and of the first\n"
            "                      decode step's and report, for each graph, the\n"
            "                      first one over the threshold, with the error's growth\n"
            "  --json              machine-readable results on stdout instead of tables\n"
            "  --help              this text\n"
            "Exit status: 0 every comparison passes, 1 a threshold is exceeded or a backend\n"
            "fails, 2 a usage or input error.\n");
}

static int parse_tol(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || (*end && *end != ',') || !(v > 0) || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* "T" sets the model's dtype; "f32=T,bf16=T" sets those named. */
static int parse_tolerance(const char *s, options *o)
{
    if (!strchr(s, '=')) return parse_tol(s, &o->tol[MODEL_DTYPE]) && !strchr(s, ',');
    while (*s) {
        const char *eq = strchr(s, '=');
        int d = N_DTYPES;
        for (int i = 0; eq && i < N_DTYPES; i++)
            if (strlen(dtype_tol[i].name) == (size_t)(eq - s) && !strncmp(s, dtype_tol[i].name, (size_t)(eq - s)))
                d = i;
        if (d == N_DTYPES || !parse_tol(eq + 1, &o->tol[d])) return 0;
        s = strchr(eq, ',');
        if (!s) break;
        s++;
    }
    return 1;
}

/* 0: run, 1: --help, -1: bad usage (message printed). */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.steps = 3, .series = 1, .variates = 3};
    for (int i = 0; i < N_DTYPES; i++) o->tol[i] = dtype_tol[i].tol;
    int random = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (!strcmp(a, "--trace")) {
            o->trace = 1;
            continue;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "porta-validate: %s needs a value (or is unknown)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int n;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--input")) o->input = v;
        else if (!strcmp(a, "--backends") && *v) o->backends = v;
        else if (!strcmp(a, "--random") && cli_int(v, 0, INT32_MAX, &n)) {
            o->seed = (uint64_t)n;
            random = 1;
        } else if (!strcmp(a, "--steps") && cli_int(v, 0, 4096, &n)) o->steps = n;
        else if (!strcmp(a, "--series") && cli_int(v, 1, 4096, &n)) o->series = n;
        else if (!strcmp(a, "--variates") && cli_int(v, 1, 4096, &n)) o->variates = n;
        else if (!strcmp(a, "--context") && cli_int(v, 1, 1 << 20, &n)) o->context = n;
        else if (!strcmp(a, "--tolerance") && parse_tolerance(v, o)) continue;
        else {
            fprintf(stderr, "porta-validate: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (!o->model) {
        fprintf(stderr, "porta-validate: --model is required\n");
        return -1;
    }
    if (o->input && random) {
        fprintf(stderr, "porta-validate: --input and --random exclude each other\n");
        return -1;
    }
    return 0;
}

/* ---- input ---------------------------------------------------------------- */

typedef struct input {
    int series, variates, len;
    float *x; /* [series, variates, len] */
    char desc[300];
} input;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s) { return ((double)(splitmix(s) >> 11) + 0.5) / 9007199254740992.0; }

/* Two sines of random periods and phases on a level and a trend, with noise:
 * the shape of series the forecaster is for, never zeros. */
static int random_input(const options *o, int patch, input *in)
{
    in->series = o->series;
    in->variates = o->variates;
    in->len = o->context ? o->context : 8 * patch;
    size_t n = (size_t)in->series * in->variates * in->len;
    in->x = malloc(n * sizeof *in->x);
    if (!in->x) return 0;
    uint64_t s = o->seed;
    for (size_t r = 0; r < (size_t)in->series * in->variates; r++) {
        double level = 20 * uniform(&s) - 10, trend = 0.1 * uniform(&s) - 0.05;
        double p1 = 6 + 58 * uniform(&s), p2 = 6 + 58 * uniform(&s), f1 = 6.283 * uniform(&s), f2 = 6.283 * uniform(&s);
        double a1 = 1 + 4 * uniform(&s), a2 = 2 * uniform(&s);
        for (int t = 0; t < in->len; t++) {
            double noise = 0.3 * (uniform(&s) + uniform(&s) + uniform(&s) - 1.5);
            in->x[r * in->len + t] = (float)(level + trend * t + a1 * sin(6.283 * t / p1 + f1) +
                                             a2 * sin(6.283 * t / p2 + f2) + noise);
        }
    }
    snprintf(in->desc, sizeof in->desc, "random (seed %llu): %d series x %d variates x %d steps",
             (unsigned long long)o->seed, in->series, in->variates, in->len);
    return 1;
}

static int csv_input(const options *o, input *in)
{
    csv_table t;
    char err[256];
    if (csv_read(o->input, &t, err, sizeof err) != PORTA_OK) {
        fprintf(stderr, "porta-validate: %s: %s\n", o->input, err);
        return 0;
    }
    in->series = 1;
    in->variates = t.cols;
    in->len = t.rows;
    in->x = malloc((size_t)t.cols * t.rows * sizeof *in->x);
    int ok = in->x != NULL;
    for (int r = 0; ok && r < t.rows; r++)
        for (int c = 0; c < t.cols; c++) {
            float v = t.data[(size_t)r * t.cols + c];
            if (isnan(v)) {
                fprintf(stderr, "porta-validate: %s: variate \"%s\" has a missing value at data row %d\n",
                        o->input, t.names[c], r + 1);
                ok = 0;
                break;
            }
            in->x[(size_t)c * t.rows + r] = v;
        }
    if (!in->x) fprintf(stderr, "porta-validate: out of memory\n");
    snprintf(in->desc, sizeof in->desc, "%s: %d variates x %d steps", o->input, t.cols, t.rows);
    csv_free(&t);
    return ok;
}

/* ---- runs ----------------------------------------------------------------- */

typedef struct collector {
    validation *v;
    backend_run *run;
} collector;

/* Keeps each step's mixture parameters (model space, as the host sees them). */
static void on_step(void *user, const porta_toto_dist *d)
{
    collector *c = user;
    int64_t n = output_numel(c->v, OUT_DF);
    const double *src[4] = {d->df, d->loc, d->scale, d->logits};
    for (int o = 0; o < 4; o++) memcpy(c->run->out[o] + d->step * n, src[o], (size_t)n * sizeof(double));
    fprintf(stderr, "\rporta-validate: %-10s step %d/%d", c->run->name, d->step + 1, c->v->steps);
}

static void run_fail(backend_run *r, const char *what, porta_status s)
{
    r->failed = 1;
    snprintf(r->error, sizeof r->error, "%s: %s (%s)", what, porta_last_error(), porta_status_name(s));
}

/* Copies what the report needs out of the traced program. */
static void keep_trace(backend_run *r, int g, porta_program *p, float *const *values)
{
    int n = porta_program_n_traced(p);
    r->nodes[g] = calloc((size_t)(n ? n : 1), sizeof *r->nodes[g]);
    for (int i = 0; r->nodes[g] && i < n; i++) {
        porta_node_info ni;
        trace_node *t = &r->nodes[g][i];
        if (porta_program_node_info(p, i, &ni) != PORTA_OK) break;
        snprintf(t->name, sizeof t->name, "%s", ni.name);
        snprintf(t->op, sizeof t->op, "%s", ni.op);
        t->ndim = ni.ndim;
        memcpy(t->shape, ni.shape, sizeof t->shape);
        t->n_inputs = ni.n_inputs;
        memcpy(t->inputs, ni.inputs, sizeof t->inputs);
        int64_t len = porta_program_output_numel(p, ni.output);
        if (!(t->value = malloc((size_t)len * sizeof(double)))) break;
        for (int64_t j = 0; j < len; j++) t->value[j] = values[ni.output][j];
        r->n_nodes[g] = i + 1;
    }
    if (r->n_nodes[g] != n) {
        r->failed = 1;
        snprintf(r->error, sizeof r->error, "cannot keep %d traced %s nodes: %s", n, graph_name[g],
                 porta_last_error());
    }
}

/* Traces graph g of the forecast on in's context. The decode step starts
 * from patch (NULL: this backend's own first forecast patch). */
static void trace_graph(porta_toto_forecaster *fc, const input *in, const float *patch, backend_run *r, int g)
{
    porta_program *p = NULL;
    float **values = NULL;
    porta_toto_inputs tin = {.series = in->x};
    porta_status s = g == GRAPH_PREFILL ? porta_toto_trace_prefill(fc, &tin, &p, &values)
                                        : porta_toto_trace_decode(fc, &tin, patch, &p, &values);
    if (s != PORTA_OK) {
        char what[32];
        snprintf(what, sizeof what, "tracing the %s", graph_name[g]);
        run_fail(r, what, s);
    } else {
        keep_trace(r, g, p, values);
    }
    for (int i = 0; values && i < porta_program_n_outputs(p); i++) free(values[i]);
    free(values);
    porta_program_free(p);
}

/* One backend: load, forecast, optionally trace the prefill and decode. */
static void run_backend(validation *v, porta_backend *be, const input *in, backend_run *r)
{
    porta_toto_model *m = NULL;
    porta_toto_forecaster *fc = NULL;
    int H = v->steps * v->patch;
    float *mean = malloc((size_t)in->series * in->variates * H * sizeof(float));
    for (int o = 0; o < OUT_COUNT; o++) r->out[o] = malloc((size_t)(output_numel(v, o) * v->steps) * sizeof(double));
    int ok = mean != NULL;
    for (int o = 0; o < OUT_COUNT; o++) ok = ok && r->out[o];
    if (!ok) {
        r->failed = 1;
        snprintf(r->error, sizeof r->error, "out of host memory");
        free(mean);
        return;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    porta_status s = porta_toto_model_load(v->model, be, &m);
    if (s != PORTA_OK) run_fail(r, "loading the model", s);
    porta_toto_forecast_desc d = {.series = in->series, .variates = in->variates, .context_len = in->len, .horizon = H};
    if (!r->failed && (s = porta_toto_forecaster_new(m, &d, &fc)) != PORTA_OK) run_fail(r, "preparing the forecast", s);
    collector c = {v, r};
    porta_toto_inputs pin = {.series = in->x, .on_step = on_step, .user = &c};
    porta_toto_result res = {mean, NULL};
    if (!r->failed && (s = porta_toto_forecast(fc, &pin, &res)) != PORTA_OK) run_fail(r, "forecasting", s);
    if (!r->failed) {
        /* The mean path per step: [series, variates, patch] of each patch. */
        int P = v->patch;
        int64_t n = output_numel(v, OUT_MEAN);
        for (int st = 0; st < v->steps; st++)
            for (int64_t row = 0; row < (int64_t)in->series * in->variates; row++)
                for (int i = 0; i < P; i++)
                    r->out[OUT_MEAN][st * n + row * P + i] = mean[row * H + st * P + i];
    }
    /* Every backend decodes the reference's first patch, so that a prefill
     * error does not reach the decode trace's input. */
    int64_t np = output_numel(v, OUT_MEAN);
    int pinned = v->graphs > GRAPH_DECODE && r != &v->runs[v->ref] && !v->runs[v->ref].failed;
    float *patch = pinned ? malloc((size_t)np * sizeof(float)) : NULL;
    if (pinned && !patch) {
        r->failed = 1;
        snprintf(r->error, sizeof r->error, "out of host memory");
    }
    for (int64_t i = 0; patch && i < np; i++) patch[i] = (float)v->runs[v->ref].out[OUT_MEAN][i];
    for (int g = 0; g < v->graphs && !r->failed; g++) trace_graph(fc, in, patch, r, g);
    free(patch);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "\rporta-validate: %-10s %s in %.0f ms\n", r->name, r->failed ? "failed" : "done",
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6);
    porta_toto_forecaster_free(fc);
    porta_toto_model_free(m);
    free(mean);
}

static void free_run(backend_run *r)
{
    for (int o = 0; o < OUT_COUNT; o++) free(r->out[o]);
    for (int g = 0; g < GRAPH_COUNT; g++) {
        for (int i = 0; i < r->n_nodes[g]; i++) free(r->nodes[g][i].value);
        free(r->nodes[g]);
    }
}

/* Backends by name: the list given, or ref and every other that opens. The
 * reference goes first. Returns 0 (message printed) when a named one fails. */
static int open_backends(const options *o, validation *v, porta_backend **be, char *names)
{
    static const char *const all[] = {"ref", "cpu", "vulkan", "cuda"};
    const char *list[MAX_BACKENDS];
    int n = 0;
    if (o->backends) {
        snprintf(names, 256, "%s", o->backends);
        char *save = NULL;
        for (char *tok = strtok_r(names, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (n == MAX_BACKENDS) {
                fprintf(stderr, "porta-validate: at most %d backends\n", MAX_BACKENDS);
                return 0;
            }
            list[n++] = tok;
        }
    } else {
        for (int i = 0; i < 4; i++) list[n++] = all[i];
    }
    int ref = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], "ref")) ref = i;
    const char *t = list[0];
    list[0] = list[ref];
    list[ref] = t;
    v->ref = 0;
    for (int i = 0; i < n; i++) {
        porta_status s = porta_backend_open(list[i], &be[v->n_runs]);
        if (s != PORTA_OK) {
            if (o->backends) {
                fprintf(stderr, "porta-validate: backend %s: %s (%s)\n", list[i], porta_last_error(),
                        porta_status_name(s));
                return 0;
            }
            fprintf(stderr, "porta-validate: skipping %s: %s\n", list[i], porta_last_error());
            continue;
        }
        backend_run *r = &v->runs[v->n_runs++];
        r->name = list[i];
        snprintf(r->device, sizeof r->device, "%s", porta_backend_device(be[v->n_runs - 1]));
    }
    if (v->n_runs < 2) {
        fprintf(stderr, "porta-validate: %d backend%s opened; comparing needs two\n", v->n_runs,
                v->n_runs == 1 ? "" : "s");
        return 0;
    }
    return 1;
}

/* A backend whose traced graph differs from the reference's cannot be
 * compared node by node. */
static void check_traces(validation *v)
{
    const backend_run *ref = &v->runs[v->ref];
    for (int r = 0; r < v->n_runs; r++) {
        backend_run *b = &v->runs[r];
        if (r == v->ref || b->failed || ref->failed) continue;
        for (int g = 0; g < v->graphs && !b->failed; g++) {
            int same = b->n_nodes[g] == ref->n_nodes[g];
            for (int i = 0; same && i < b->n_nodes[g]; i++)
                same = !strcmp(b->nodes[g][i].name, ref->nodes[g][i].name);
            if (!same) {
                b->failed = 1;
                snprintf(b->error, sizeof b->error, "its traced %s has %d nodes, the reference's %d, or other names",
                         graph_name[g], b->n_nodes[g], ref->n_nodes[g]);
            }
        }
    }
}

/* A missing or malformed checkpoint is an input error, found before any
 * backend runs. */
static int check_model(const char *dir, porta_toto_config *cfg)
{
    size_t len = strlen(dir) + 32;
    char *path = malloc(len);
    if (!path) {
        fprintf(stderr, "porta-validate: out of memory\n");
        return 0;
    }
    porta_st_file *st = NULL;
    snprintf(path, len, "%s/config.json", dir);
    porta_status s = porta_toto_config_load(path, cfg);
    if (s == PORTA_OK) {
        snprintf(path, len, "%s/model.safetensors", dir);
        s = porta_st_open(path, &st);
        porta_st_close(st);
    }
    free(path);
    if (s != PORTA_OK) fprintf(stderr, "porta-validate: %s: %s (%s)\n", dir, porta_last_error(), porta_status_name(s));
    return s == PORTA_OK;
}

int main(int argc, char **argv)
{
    options o;
    int a = parse_args(argc, argv, &o);
    if (a) return cli_usage_exit(a, usage);
    porta_toto_config cfg;
    if (!check_model(o.model, &cfg)) return 2;
    input in = {0};
    if (!(o.input ? csv_input(&o, &in) : random_input(&o, cfg.patch_size, &in))) {
        free(in.x);
        return 2;
    }
    validation v = {
        .model = o.model, .input = in.desc, .steps = o.steps + 1, .series = in.series, .variates = in.variates,
        .patch = cfg.patch_size, .k = cfg.k_components, .dtype = dtype_tol[MODEL_DTYPE].name,
        .tol = o.tol[MODEL_DTYPE], .trace = o.trace,
        /* --steps 0 forecasts one patch: there is no decode step to trace. */
        .graphs = !o.trace ? 0 : o.steps > 0 ? GRAPH_COUNT : 1,
    };
    porta_backend *be[MAX_BACKENDS] = {0};
    char names[256];
    int rc = 2;
    if (open_backends(&o, &v, be, names)) {
        for (int r = 0; r < v.n_runs; r++) run_backend(&v, be[r], &in, &v.runs[r]);
        if (v.trace) check_traces(&v);
        rc = (o.json ? report_json(&v, stdout) : report_text(&v, stdout)) ? 1 : 0;
    }
    for (int r = 0; r < MAX_BACKENDS; r++) {
        free_run(&v.runs[r]);
        porta_backend_close(be[r]);
    }
    free(in.x);
    return rc;
}
