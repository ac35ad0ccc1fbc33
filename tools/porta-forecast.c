/* porta-forecast: forecasts the series of a CSV file with a Toto checkpoint. */
#define _POSIX_C_SOURCE 200809L /* fileno, isatty */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include "porta/toto.h"
#include "csv.h"
#include "svg.h"
#include "cli.h"

#define MAX_QUANTILES 32

typedef struct options {
    const char *model, *backend, *input, *output, *svg;
    int horizon, samples;
    uint64_t seed;
    int nq;
    double q[MAX_QUANTILES];
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: porta-forecast --model DIR --horizon N [options]\n"
            "  --model DIR         Toto checkpoint directory (config.json, model.safetensors)\n"
            "  --horizon N         time steps to forecast\n"
            "  --samples N         sample paths (default 100; 0: mean path only, no quantiles)\n"
            "  --quantiles LIST    comma-separated levels in [0, 1] (default 0.1,0.5,0.9)\n"
            "  --backend NAME      cpu, ref, cuda, vulkan or auto (default auto)\n"
            "  --input CSV|-       series, one column per variate, optional header and\n"
            "                      timestamp column (default -: standard input)\n"
            "  --output CSV        forecast per step and variate: mean and quantiles (default stdout)\n"
            "  --svg FILE          plot of history, mean and quantile band\n"
            "  --seed N            sampling seed (default 0)\n"
            "  --help              this text\n");
}

static int parse_quantiles(const char *s, options *o)
{
    o->nq = 0;
    while (*s) {
        char *end;
        errno = 0;
        double q = strtod(s, &end);
        if (end == s || errno || !(q >= 0 && q <= 1) || o->nq == MAX_QUANTILES) return 0;
        o->q[o->nq++] = q;
        if (*end == ',') end++;
        else if (*end) return 0;
        s = end;
    }
    return o->nq > 0;
}

/* 0: run, 1: --help given, -1: bad usage (message printed). */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.backend = "auto", .input = "-", .samples = 100, .nq = 3, .q = {0.1, 0.5, 0.9}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (i + 1 >= argc) {
            fprintf(stderr, "porta-forecast: %s needs a value (or is unknown)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int n;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--input")) o->input = v;
        else if (!strcmp(a, "--output")) o->output = v;
        else if (!strcmp(a, "--svg")) o->svg = v;
        else if (!strcmp(a, "--horizon") && cli_int(v, 1, 1 << 20, &n)) o->horizon = n;
        else if (!strcmp(a, "--samples") && cli_int(v, 0, 1 << 16, &n)) o->samples = n;
        else if (!strcmp(a, "--seed") && cli_int(v, 0, INT32_MAX, &n)) o->seed = (uint64_t)n;
        else if (!strcmp(a, "--quantiles") && parse_quantiles(v, o)) continue;
        else {
            fprintf(stderr, "porta-forecast: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (!o->model || !o->horizon) {
        fprintf(stderr, "porta-forecast: --model and --horizon are required\n");
        return -1;
    }
    return 0;
}

/* Missing values are refused, naming the first run of them. */
static int check_missing(const csv_table *t)
{
    for (int c = 0; c < t->cols; c++)
        for (int r = 0; r < t->rows; r++) {
            if (!isnan(t->data[(size_t)r * t->cols + c])) continue;
            int e = r;
            while (e + 1 < t->rows && isnan(t->data[(size_t)(e + 1) * t->cols + c])) e++;
            fprintf(stderr,
                    "porta-forecast: variate \"%s\": %d NaN value%s at data rows %d..%d; fill or drop them first\n",
                    t->names[c], e - r + 1, e > r ? "s" : "", r + 1, e + 1);
            return 0;
        }
    return 1;
}

static double now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct progress {
    int steps;
    double start;
    int tty; /* rewrite one line on a terminal; a log gets one line per patch */
} progress;

static void on_step(void *user, const porta_toto_dist *d)
{
    const progress *p = user;
    int last = d->step + 1 == p->steps;
    fprintf(stderr, "%sporta-forecast: patch %d/%d, %.2f s%s", p->tty ? "\r" : "", d->step + 1, p->steps,
            now() - p->start, !p->tty || last ? "\n" : "");
}

static int write_csv(const options *o, const csv_table *t, const porta_toto_result *res, float *scratch)
{
    FILE *f = o->output ? fopen(o->output, "w") : stdout;
    if (!f) {
        fprintf(stderr, "porta-forecast: cannot write %s: %s\n", o->output, strerror(errno));
        return 0;
    }
    fprintf(f, "step,variate,mean");
    for (int i = 0; o->samples && i < o->nq; i++) fprintf(f, ",q%g", o->q[i]);
    fputc('\n', f);
    for (int h = 0; h < o->horizon; h++)
        for (int v = 0; v < t->cols; v++) {
            size_t at = (size_t)v * o->horizon + h;
            fprintf(f, "%d,%s,%.9g", h + 1, t->names[v], res->mean[at]);
            for (int i = 0; o->samples && i < o->nq; i++) {
                memcpy(scratch, res->samples + at * o->samples, (size_t)o->samples * sizeof(float));
                fprintf(f, ",%.9g", porta_toto_quantile(scratch, o->samples, o->q[i]));
            }
            fputc('\n', f);
        }
    int ok = !ferror(f);
    if (f != stdout) ok = (fclose(f) == 0) && ok;
    if (!ok) fprintf(stderr, "porta-forecast: writing %s failed\n", o->output ? o->output : "stdout");
    return ok;
}

static int fail(const char *what, porta_status s)
{
    fprintf(stderr, "porta-forecast: %s: %s (%s)\n", what, porta_last_error(), porta_status_name(s));
    return 1;
}

static int forecast(const options *o, const csv_table *t)
{
    porta_backend *be = NULL;
    porta_toto_model *m = NULL;
    porta_toto_forecaster *fc = NULL;
    int V = t->cols, L = t->rows, rc = 1;
    size_t nh = (size_t)V * o->horizon;
    float *series = malloc((size_t)V * L * sizeof(float));
    float *mean = malloc(nh * sizeof(float));
    float *samples = o->samples ? malloc(nh * o->samples * sizeof(float)) : NULL;
    float *scratch = malloc(((size_t)o->samples + 1) * sizeof(float));
    porta_status s = PORTA_OK;
    if (!series || !mean || !scratch || (o->samples && !samples)) {
        fprintf(stderr, "porta-forecast: out of memory\n");
        goto out;
    }
    for (int v = 0; v < V; v++)
        for (int r = 0; r < L; r++) series[(size_t)v * L + r] = t->data[(size_t)r * V + v];
    if ((s = porta_backend_open(o->backend, &be)) != PORTA_OK) {
        rc = fail("opening the backend", s);
        goto out;
    }
    double t0 = now();
    if ((s = porta_toto_model_load(o->model, be, &m)) != PORTA_OK) {
        rc = fail("loading the model", s);
        goto out;
    }
    const porta_toto_config *c = porta_toto_model_config(m);
    porta_toto_forecast_desc d = {.series = 1, .variates = V, .context_len = L, .horizon = o->horizon,
                                  .samples = o->samples, .seed = o->seed};
    if ((s = porta_toto_forecaster_new(m, &d, &fc)) != PORTA_OK) {
        rc = fail("preparing the forecast", s);
        goto out;
    }
    fprintf(stderr, "porta-forecast: %s on %s: model loaded and programs compiled in %.2f s\n",
            porta_backend_kind(be), porta_backend_device(be), now() - t0);
    progress pr = {(o->horizon + c->patch_size - 1) / c->patch_size, now(), isatty(fileno(stderr))};
    porta_toto_inputs in = {.series = series, .on_step = on_step, .user = &pr, .step_only = 1};
    porta_toto_result res = {mean, samples};
    if ((s = porta_toto_forecast(fc, &in, &res)) != PORTA_OK) {
        rc = fail("forecasting", s);
        goto out;
    }
    rc = !write_csv(o, t, &res, scratch);
    if (!rc && o->svg) {
        svg_plot p = {o->svg, V, L, o->horizon, series, mean, NULL, NULL, t->names};
        float *band = NULL;
        if (o->samples && o->nq >= 2) {
            band = malloc(2 * nh * sizeof(float));
            if (!band) {
                fprintf(stderr, "porta-forecast: out of memory\n");
                rc = 1;
                goto out;
            }
            double lo = o->q[0], hi = o->q[0];
            for (int i = 1; i < o->nq; i++) {
                lo = o->q[i] < lo ? o->q[i] : lo;
                hi = o->q[i] > hi ? o->q[i] : hi;
            }
            for (size_t at = 0; at < nh; at++) {
                memcpy(scratch, samples + at * o->samples, (size_t)o->samples * sizeof(float));
                band[at] = (float)porta_toto_quantile(scratch, o->samples, lo);
                band[nh + at] = (float)porta_toto_quantile(scratch, o->samples, hi);
            }
            p.lo = band;
            p.hi = band + nh;
        }
        rc = !svg_write(&p);
        free(band);
    }
out:
    porta_toto_forecaster_free(fc);
    porta_toto_model_free(m);
    porta_backend_close(be);
    free(series);
    free(mean);
    free(samples);
    free(scratch);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    int a = parse_args(argc, argv, &o);
    if (a) return cli_usage_exit(a, usage);
    csv_table t;
    char err[256];
    if (csv_read(o.input, &t, err, sizeof err) != PORTA_OK) {
        fprintf(stderr, "porta-forecast: %s: %s\n", strcmp(o.input, "-") ? o.input : "stdin", err);
        return 1;
    }
    int rc = check_missing(&t) ? forecast(&o, &t) : 1;
    csv_free(&t);
    return rc;
}
