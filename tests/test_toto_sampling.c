/* Toto's sample paths: reproducible for a seed, different across seeds, and
 * right in distribution where that is known exactly. The first forecast patch
 * comes from the prefill's mixture for every path, so its sample mean must
 * match the mean path's first patch within the mixture's standard error
 * (computed from the step's own df/loc/scale/weights): tolerance 6 standard
 * errors per point. Later patches of sample paths condition on different
 * histories than the mean path, so only their finiteness is checked. The
 * draws, made on the host or by the backend's porta_mixture_sample, give the
 * same paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "porta/safetensors.h"
#include "porta/toto.h"
#include "toto_fixture.h"
#include "testutil.h"


typedef struct first_step {
    int rows, V, P;
    double *var; /* [rows * V * P]: variance of the first patch in data units */
} first_step;

static void on_step(void *user, const porta_toto_dist *d)
{
    first_step *fs = user;
    if (d->step != 0) return;
    int n = d->rows * d->variates * d->patch;
    fs->rows = d->rows;
    fs->V = d->variates;
    fs->P = d->patch;
    fs->var = malloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) {
        const double *lg = d->logits + (size_t)i * d->k;
        double mx = lg[0], z = 0, m1 = 0, m2 = 0;
        for (int k = 1; k < d->k; k++) mx = lg[k] > mx ? lg[k] : mx;
        for (int k = 0; k < d->k; k++) z += exp(lg[k] - mx);
        for (int k = 0; k < d->k; k++) {
            size_t o = (size_t)i * d->k + k;
            double p = exp(lg[k] - mx) / z, df = d->df[o], sc = d->scale[o], mu = d->loc[o];
            m1 += p * mu;
            m2 += p * (mu * mu + sc * sc * df / (df - 2));
        }
        double s = d->scaler_scale[i / d->patch];
        fs->var[i] = (m2 - m1 * m1) * s * s;
    }
}

/* The checks of one sampler (the host's, or the backend's porta_mixture_sample). */
static void check_sampler(checker *c, porta_toto_model *m, const toto_fixture *fx, int H, const float *mean_path,
                          int host_sampler, int SAMPLES, float *kept)
{
    int B = fx->B, V = fx->V, P = porta_toto_model_config(m)->patch_size;
    size_t nh = (size_t)B * V * H;
    const char *who = host_sampler ? "host sampler" : "backend sampler";
    porta_toto_forecaster *fs;
    porta_toto_forecast_desc ds = {.series = B, .variates = V, .context_len = fx->T, .horizon = H,
                                   .samples = SAMPLES, .seed = 1234, .host_sampler = host_sampler};
    CHECK_OK(porta_toto_forecaster_new(m, &ds, &fs));
    float *mean[3], *smp[3];
    first_step first = {0};
    for (int run = 0; run < 3; run++) {
        mean[run] = malloc(nh * sizeof(float));
        smp[run] = malloc(nh * SAMPLES * sizeof(float));
        fill_nan(smp[run], (int64_t)(nh * SAMPLES));
    }
    /* The first run reads every step's mixture parameters back (on_step),
     * the others only what the forecast needs: the same draws. */
    porta_toto_inputs ins = {.series = fx->series, .padding_mask = fx->padding_mask, .id_mask = fx->id_mask,
                             .on_step = on_step, .user = &first};
    CHECK_OK(porta_toto_forecast(fs, &ins, &(porta_toto_result){mean[0], smp[0]}));
    ins.on_step = NULL;
    CHECK_OK(porta_toto_forecast(fs, &ins, &(porta_toto_result){mean[1], smp[1]}));
    porta_toto_forecaster *fs2;
    ds.seed = 99;
    CHECK_OK(porta_toto_forecaster_new(m, &ds, &fs2));
    CHECK_OK(porta_toto_forecast(fs2, &ins, &(porta_toto_result){mean[2], smp[2]}));

    char what[160];
    snprintf(what, sizeof what, "%s, same seed: identical samples", who);
    check_true(c, what, !memcmp(smp[0], smp[1], nh * SAMPLES * sizeof(float)));
    snprintf(what, sizeof what, "%s, other seed: different samples", who);
    check_true(c, what, memcmp(smp[0], smp[2], nh * SAMPLES * sizeof(float)) != 0);
    int finite = 1;
    for (size_t i = 0; i < nh * SAMPLES; i++) finite &= isfinite(smp[0][i]) != 0;
    snprintf(what, sizeof what, "%s: every sample finite", who);
    check_true(c, what, finite);

    double worst = 0;
    int close = first.var != NULL;
    for (int r = 0; close && r < B * V; r++)
        for (int t = 0; t < P; t++) {
            size_t o = (size_t)r * H + t;
            double se = sqrt(first.var[(size_t)r * P + t] / SAMPLES);
            double z = fabs(mean[0][o] - mean_path[o]) / se;
            worst = z > worst ? z : worst;
            close &= z <= 6;
        }
    snprintf(what, sizeof what,
             "%s, first patch: sample mean within 6 standard errors of the mean path (worst %.2f)", who, worst);
    check_true(c, what, close);

    porta_program_stats ps, dstat;
    CHECK_OK(porta_toto_forecaster_stats(fs, &ps, &dstat));
    snprintf(what, sizeof what, "%s, prefill: one compile, one replay per forecast", who);
    check_true(c, what, ps.compiles == 1 && ps.replays == 2);
    snprintf(what, sizeof what, "%s, decode: one compile, one replay per step", who);
    check_true(c, what, dstat.compiles == 1 && dstat.replays == 2 * 2);

    memcpy(kept, smp[0], nh * SAMPLES * sizeof(float));
    for (int run = 0; run < 3; run++) {
        free(mean[run]);
        free(smp[run]);
    }
    free(first.var);
    porta_toto_forecaster_free(fs2);
    porta_toto_forecaster_free(fs);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s BACKEND FIXTURE_DIR [SAMPLES]\n", argv[0]);
        return 2;
    }
    /* Each sample is a cache row: a software Vulkan device is given fewer. */
    const int SAMPLES = argc > 3 ? atoi(argv[3]) : 256;
    if (SAMPLES < 16) {
        fprintf(stderr, "%s: SAMPLES must be at least 16\n", argv[0]);
        return 2;
    }
    porta_backend *be = open_or_skip(argv[1]);
    toto_fixture fx;
    fixture_open(argv[2], &fx);
    int B = fx.B, V = fx.V, T = fx.T;

    porta_toto_model *m;
    CHECK_OK(porta_toto_model_load(argv[2], be, &m));
    int P = porta_toto_model_config(m)->patch_size, H = 2 * P + 3;
    size_t nh = (size_t)B * V * H;
    checker c = {0};

    porta_toto_forecaster *fm;
    porta_toto_forecast_desc dm = {.series = B, .variates = V, .context_len = T, .horizon = H};
    CHECK_OK(porta_toto_forecaster_new(m, &dm, &fm));
    float *mean_path = malloc(nh * sizeof(float));
    porta_toto_inputs in = {.series = fx.series, .padding_mask = fx.padding_mask, .id_mask = fx.id_mask};
    CHECK_OK(porta_toto_forecast(fm, &in, &(porta_toto_result){mean_path, NULL}));

    float *host = malloc(nh * SAMPLES * sizeof(float)), *dev = malloc(nh * SAMPLES * sizeof(float));
    check_sampler(&c, m, &fx, H, mean_path, 1, SAMPLES, host);
    if (porta_backend_can_sample(be)) {
        check_sampler(&c, m, &fx, H, mean_path, 0, SAMPLES, dev);
        /* One draw, on the host or in the programs: the same paths up to
         * float rounding (which feeds back through the steps). */
        size_t close = 0;
        for (size_t i = 0; i < nh * SAMPLES; i++) close += fabsf(host[i] - dev[i]) <= 1e-3f * (1 + fabsf(host[i]));
        char what[160];
        snprintf(what, sizeof what, "host and backend draws: the same paths (%zu of %zu values within 1e-3)", close,
                 nh * SAMPLES);
        check_true(&c, what, close >= nh * SAMPLES * 999 / 1000);
    }
    free(host);
    free(dev);
    free(mean_path);
    porta_toto_forecaster_free(fm);
    porta_toto_model_free(m);
    fixture_close(&fx);
    porta_backend_close(be);
    return checker_exit(&c);
}
