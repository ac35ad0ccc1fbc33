/* One Toto forecast on a porta backend, timed: load, build (compile), then N
 * forecasts after a warm-up, split into the prefill and the decode steps,
 * with the programs' counters and peak memory. bench_toto_torch.py times the
 * same forecast with toto-ts on the same checkpoint and the same input. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "porta/safetensors.h"
#include "porta/toto.h"
#include "../tools/cli.h"

typedef struct options {
    const char *model, *backend;
    int variates, samples, horizon, context, repeat, json, host_sampler;
} options;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_toto --model DIR [options]\n"
            "  --model DIR      Toto checkpoint directory (config.json, model.safetensors)\n"
            "  --backend NAME   cpu, cuda, vulkan, ref or auto (default cpu)\n"
            "  --variates V     variates of the one series (default 7)\n"
            "  --samples S      sample paths; 0: the mean path (default 0)\n"
            "  --horizon H      time steps forecast (default 336)\n"
            "  --context C      context time steps (default 4096)\n"
            "  --repeat N       timed forecasts after one warm-up (default 5)\n"
            "  --host-sampler   draw sample paths on the host even where the backend samples\n"
            "  --json           one JSON object on stdout instead of the text report\n"
            "  --help           this text\n"
            "The input is bench_series(): see the comment in bench_toto.c; bench_toto_torch.py\n"
            "generates the same values.\n");
}

/* 0: run, 1: --help, -1: bad usage (message printed). */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.backend = "cpu", .variates = 7, .horizon = 336, .context = 4096, .repeat = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (!strcmp(a, "--json") || !strcmp(a, "--host-sampler")) {
            *(!strcmp(a, "--json") ? &o->json : &o->host_sampler) = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_toto: %s needs a value (or is unknown)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!(!strcmp(a, "--variates") && cli_int(v, 1, 4096, &o->variates)) &&
                 !(!strcmp(a, "--samples") && cli_int(v, 0, 1 << 16, &o->samples)) &&
                 !(!strcmp(a, "--horizon") && cli_int(v, 1, 1 << 20, &o->horizon)) &&
                 !(!strcmp(a, "--context") && cli_int(v, 1, 1 << 24, &o->context)) &&
                 !(!strcmp(a, "--repeat") && cli_int(v, 1, 100000, &o->repeat))) {
            fprintf(stderr, "bench_toto: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (!o->model) {
        fprintf(stderr, "bench_toto: --model is required\n");
        return -1;
    }
    return 0;
}

/* SplitMix64: a counter-based generator both sides compute bit for bit. */
static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The benchmark input, [V][C] float32: for variate v and time t,
 *   10 + v + 0.001 t + 3 sin(2 pi t / (24 + 7 v)) + 1.5 sin(2 pi t / (168 + 13 v)) + 0.5 (u - 0.5)
 * in double, rounded to float32, with u = (splitmix64(v * 2^32 + t) >> 11) * 2^-53.
 * Two seasons, a trend and noise: a forecastable series that is never zero. */
static void bench_series(float *x, int V, int C)
{
    const double two_pi = 6.283185307179586;
    for (int v = 0; v < V; v++)
        for (int t = 0; t < C; t++) {
            double u = (double)(splitmix64(((uint64_t)v << 32) + (uint64_t)t) >> 11) * 0x1p-53;
            double y = 10.0 + v + 0.001 * t + 3.0 * sin(two_pi * t / (24.0 + 7.0 * v)) +
                       1.5 * sin(two_pi * t / (168.0 + 13.0 * v)) + 0.5 * (u - 0.5);
            x[(size_t)v * C + t] = (float)y;
        }
}

/* ---- memory ------------------------------------------------------------ */

static double peak_rss_mb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss / 1024.0 : NAN;
}

static double rss_mb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return NAN;
    int n = fscanf(f, "%ld %ld", &pages, &resident);
    fclose(f);
    return n == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0) : NAN;
}

/* Device memory in use on GPU 0 through NVML (the driver's management
 * library, loaded at run time), so the figure includes what the backend
 * allocates outside porta's own accounting (context, cuBLAS workspace).
 * NAN where NVML is absent. */
typedef struct nvml_memory { unsigned long long total, free, used; } nvml_memory;
typedef struct nvml {
    void *lib;
    void *dev;
    int (*get_memory)(void *, nvml_memory *);
    int (*shutdown)(void);
} nvml;

static void nvml_open(nvml *n)
{
    memset(n, 0, sizeof *n);
    n->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) return;
    int (*init)(void) = (int (*)(void))dlsym(n->lib, "nvmlInit_v2");
    int (*handle)(unsigned, void **) = (int (*)(unsigned, void **))dlsym(n->lib, "nvmlDeviceGetHandleByIndex_v2");
    n->get_memory = (int (*)(void *, nvml_memory *))dlsym(n->lib, "nvmlDeviceGetMemoryInfo");
    n->shutdown = (int (*)(void))dlsym(n->lib, "nvmlShutdown");
    if (!init || !handle || !n->get_memory || !n->shutdown || init() != 0) {
        dlclose(n->lib);
        n->lib = NULL;
        return;
    }
    if (handle(0, &n->dev) != 0) {
        n->shutdown();
        dlclose(n->lib);
        n->lib = NULL;
    }
}

static double nvml_used_mb(const nvml *n)
{
    nvml_memory m;
    if (!n->lib || n->get_memory(n->dev, &m) != 0) return NAN;
    return (double)m.used / (1024.0 * 1024.0);
}

static void nvml_close(nvml *n)
{
    if (!n->lib) return;
    n->shutdown();
    dlclose(n->lib);
}

/* Weight bytes as porta holds them (float32, one copy). */
static double weights_mb(const char *dir)
{
    size_t len = strlen(dir) + 32;
    char *path = malloc(len);
    if (!path) return NAN;
    snprintf(path, len, "%s/model.safetensors", dir);
    porta_st_file *f = NULL;
    double n = 0;
    if (porta_st_open(path, &f) != PORTA_OK) n = NAN;
    for (int i = 0; f && i < porta_st_count(f); i++) n += (double)porta_st_numel(porta_st_at(f, i));
    porta_st_close(f);
    free(path);
    return n * 4.0 / (1024.0 * 1024.0);
}

/* ---- timing ------------------------------------------------------------- */

/* Time at which each step's mixture parameters were ready: step 0 ends the
 * prefill; every later one ends a decode step. */
typedef struct step_clock {
    int steps;
    double *at;
} step_clock;

static void on_step(void *user, const porta_toto_dist *d)
{
    step_clock *c = user;
    if (d->step < c->steps) c->at[d->step] = now();
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct figures {
    double load_ms, build_ms, warmup_ms;
    double forecast_ms, forecast_min_ms, cpu_ms, prefill_ms, decode_ms;
    int steps;
    int can_sample; /* the backend runs porta_mixture_sample */
    porta_program_stats prefill, decode;
    double kv_mb, weights_mb, rss_after_load_mb, peak_rss_mb, device_mb;
} figures;

static int fail(const char *what, porta_status s)
{
    fprintf(stderr, "bench_toto: %s: %s (%s)\n", what, porta_last_error(), porta_status_name(s));
    return 1;
}

static int bench(const options *o, figures *fg, char *device, size_t device_len)
{
    porta_backend *be = NULL;
    porta_toto_model *m = NULL;
    porta_toto_forecaster *fc = NULL;
    nvml nv;
    nvml_open(&nv);
    double dev0 = nvml_used_mb(&nv);
    int rc = 1, V = o->variates, H = o->horizon, S = o->samples, R = o->repeat;
    size_t nh = (size_t)V * H;
    float *series = malloc((size_t)V * o->context * sizeof(float));
    float *mean = malloc(nh * sizeof(float));
    float *samples = S ? malloc(nh * S * sizeof(float)) : NULL;
    double *total = malloc((size_t)R * sizeof(double)), *pre = malloc((size_t)R * sizeof(double));
    double *dec = malloc((size_t)R * sizeof(double)), *cpu = malloc((size_t)R * sizeof(double));
    step_clock clock = {0};
    porta_status s;
    if (!series || !mean || (S && !samples) || !total || !pre || !dec || !cpu) {
        fprintf(stderr, "bench_toto: out of host memory\n");
        goto out;
    }
    bench_series(series, V, o->context);
    double t0 = now();
    if ((s = porta_backend_open(o->backend, &be)) != PORTA_OK) {
        rc = fail("opening the backend", s);
        goto out;
    }
    snprintf(device, device_len, "%s", porta_backend_device(be));
    fg->can_sample = porta_backend_can_sample(be);
    if ((s = porta_toto_model_load(o->model, be, &m)) != PORTA_OK || (s = porta_backend_sync(be)) != PORTA_OK) {
        rc = fail("loading the model", s);
        goto out;
    }
    double t1 = now();
    fg->rss_after_load_mb = rss_mb();
    const porta_toto_config *c = porta_toto_model_config(m);
    porta_toto_forecast_desc d = {.series = 1, .variates = V, .context_len = o->context, .horizon = H,
                                  .samples = S, .host_sampler = o->host_sampler};
    if ((s = porta_toto_forecaster_new(m, &d, &fc)) != PORTA_OK) {
        rc = fail("building the forecaster", s);
        goto out;
    }
    double t2 = now();
    fg->load_ms = 1e3 * (t1 - t0);
    fg->build_ms = 1e3 * (t2 - t1);
    fg->steps = clock.steps = (H + c->patch_size - 1) / c->patch_size;
    clock.at = calloc((size_t)clock.steps, sizeof(double));
    if (!clock.at) {
        fprintf(stderr, "bench_toto: out of host memory\n");
        goto out;
    }
    porta_toto_inputs in = {.series = series, .on_step = on_step, .user = &clock, .step_only = 1};
    porta_toto_result res = {mean, samples};
    for (int i = -1; i < R; i++) {
        double a = now(), ca = cpu_now();
        if ((s = porta_toto_forecast(fc, &in, &res)) != PORTA_OK) {
            rc = fail("forecasting", s);
            goto out;
        }
        double b = now(), cb = cpu_now();
        if (i < 0) {
            fg->warmup_ms = 1e3 * (b - a);
            continue;
        }
        total[i] = 1e3 * (b - a);
        cpu[i] = 1e3 * (cb - ca);
        pre[i] = 1e3 * (clock.at[0] - a);
        /* Decode steps: from the prefill's end to the last step's result,
         * feeding back each patch on the host included. */
        dec[i] = clock.steps > 1 ? 1e3 * (clock.at[clock.steps - 1] - clock.at[0]) / (clock.steps - 1) : 0;
    }
    for (size_t k = 0; k < nh; k++)
        if (!isfinite(mean[k])) {
            fprintf(stderr, "bench_toto: forecast value %zu is not finite\n", k);
            goto out;
        }
    fg->forecast_ms = median(total, R);
    fg->forecast_min_ms = total[0];
    fg->cpu_ms = median(cpu, R);
    fg->prefill_ms = median(pre, R);
    fg->decode_ms = median(dec, R);
    if ((s = porta_toto_forecaster_stats(fc, &fg->prefill, &fg->decode)) != PORTA_OK) {
        rc = fail("reading program counters", s);
        goto out;
    }
    /* K and V of every time-wise layer, one row per (sample, variate). */
    int time_layers = c->spacewise_every_n_layers > 0 ? c->num_layers - c->num_layers / c->spacewise_every_n_layers
                                                      : c->num_layers;
    double len = (o->context + c->patch_size - 1) / c->patch_size + fg->steps;
    fg->kv_mb = 2.0 * time_layers * (S ? S : 1) * V * len * c->embed_dim * 4.0 / (1024.0 * 1024.0);
    fg->weights_mb = weights_mb(o->model);
    fg->peak_rss_mb = peak_rss_mb();
    fg->device_mb = nvml_used_mb(&nv) - dev0;
    rc = 0;
out:
    porta_toto_forecaster_free(fc);
    porta_toto_model_free(m);
    porta_backend_close(be);
    nvml_close(&nv);
    free(clock.at);
    free(series);
    free(mean);
    free(samples);
    free(total);
    free(pre);
    free(dec);
    free(cpu);
    return rc;
}

/* Where the sample paths' draws are made. */
static const char *sampler(const options *o, const figures *f)
{
    return o->samples == 0 ? "none" : o->host_sampler || !f->can_sample ? "host" : "backend";
}

static void print_text(const options *o, const figures *f, const char *device)
{
    printf("porta Toto forecast: backend %s (%s), context %d, horizon %d (%d patches), variates %d, %s\n",
           o->backend, device, o->context, o->horizon, f->steps, o->variates,
           o->samples ? "sample paths" : "mean path");
    if (o->samples) printf("  samples              %d, drawn on the %s\n", o->samples, sampler(o, f));
    printf("  load weights         %10.1f ms\n", f->load_ms);
    printf("  build (compile)      %10.1f ms\n", f->build_ms);
    printf("  warm-up forecast     %10.2f ms\n", f->warmup_ms);
    printf("  forecast (median %d) %10.2f ms  (min %.2f, CPU time %.0f ms)\n", o->repeat, f->forecast_ms,
           f->forecast_min_ms, f->cpu_ms);
    printf("    prefill            %10.2f ms\n", f->prefill_ms);
    printf("    decode step        %10.2f ms  (x %d)\n", f->decode_ms, f->steps - 1);
    printf("  prefill program      compiles %llu, captures %llu, records %llu, replays %llu, %llu nodes, "
           "arena %.1f MB\n",
           (unsigned long long)f->prefill.compiles, (unsigned long long)f->prefill.captures,
           (unsigned long long)f->prefill.records, (unsigned long long)f->prefill.replays,
           (unsigned long long)f->prefill.nodes, f->prefill.arena_bytes / 1048576.0);
    printf("  decode program       compiles %llu, captures %llu, records %llu, replays %llu, %llu nodes, "
           "arena %.1f MB\n",
           (unsigned long long)f->decode.compiles, (unsigned long long)f->decode.captures,
           (unsigned long long)f->decode.records, (unsigned long long)f->decode.replays,
           (unsigned long long)f->decode.nodes, f->decode.arena_bytes / 1048576.0);
    printf("  memory: weights %.1f MB, KV cache %.1f MB, arenas %.1f MB; host RSS after load %.1f MB, peak "
           "%.1f MB",
           f->weights_mb, f->kv_mb, (f->prefill.arena_bytes + f->decode.arena_bytes) / 1048576.0,
           f->rss_after_load_mb, f->peak_rss_mb);
    if (isfinite(f->device_mb)) printf("; device (NVML, GPU 0) %.1f MB", f->device_mb);
    printf("\n");
}

static void print_json(const options *o, const figures *f, const char *device)
{
    printf("{\"impl\": \"porta\", \"backend\": \"%s\", \"device\": \"%s\", \"context\": %d, \"horizon\": %d, "
           "\"variates\": %d, \"samples\": %d, \"sampler\": \"%s\", \"repeat\": %d, \"steps\": %d, "
           "\"load_ms\": %.3f, \"build_ms\": %.3f, \"warmup_ms\": %.3f, \"forecast_ms\": %.3f, "
           "\"forecast_min_ms\": %.3f, \"cpu_ms\": %.3f, \"prefill_ms\": %.3f, \"decode_step_ms\": %.3f, "
           "\"prefill_compiles\": %llu, \"prefill_captures\": %llu, \"prefill_records\": %llu, "
           "\"prefill_replays\": %llu, \"decode_compiles\": %llu, \"decode_captures\": %llu, "
           "\"decode_records\": %llu, \"decode_replays\": %llu, \"arena_mb\": %.3f, \"weights_mb\": %.3f, "
           "\"kv_mb\": %.3f, \"rss_after_load_mb\": %.3f, \"peak_rss_mb\": %.3f",
           o->backend, device, o->context, o->horizon, o->variates, o->samples, sampler(o, f), o->repeat, f->steps,
           f->load_ms,
           f->build_ms, f->warmup_ms, f->forecast_ms, f->forecast_min_ms, f->cpu_ms, f->prefill_ms, f->decode_ms,
           (unsigned long long)f->prefill.compiles, (unsigned long long)f->prefill.captures,
           (unsigned long long)f->prefill.records, (unsigned long long)f->prefill.replays,
           (unsigned long long)f->decode.compiles, (unsigned long long)f->decode.captures,
           (unsigned long long)f->decode.records, (unsigned long long)f->decode.replays,
           (f->prefill.arena_bytes + f->decode.arena_bytes) / 1048576.0, f->weights_mb, f->kv_mb,
           f->rss_after_load_mb, f->peak_rss_mb);
    if (isfinite(f->device_mb)) printf(", \"device_mb\": %.3f", f->device_mb);
    printf("}\n");
}

int main(int argc, char **argv)
{
    options o;
    int a = parse_args(argc, argv, &o);
    if (a) return cli_usage_exit(a, usage);
    figures f = {0};
    char device[256] = "?";
    if (bench(&o, &f, device, sizeof device)) return 1;
    if (o.json) print_json(&o, &f, device);
    else print_text(&o, &f, device);
    return 0;
}
