/* Toto on porta against toto-ts: the fixture's reference.safetensors holds
 * toto-ts's mixture parameters and scaler statistics at every step of a mean
 * forecast (prefill, then one decode per patch) and the forecast mean
 * (tests/data/toto-tiny/README.md). Every tensor of every step is compared by
 * relative MAE (MAE / mean |ref|).
 *
 * Tolerance 1e-5: float32 kernels against toto-ts in float32 (PyTorch CPU) on
 * a tiny model; what remains is summation order in GEMMs and softmax, about
 * 1e-7 relative per op, and the fed-back mean carries it through the decode
 * steps. The ref backend (float64) must be within the same bound: toto-ts
 * itself rounds to float32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "porta/safetensors.h"
#include "porta/toto.h"
#include "toto_fixture.h"
#include "testutil.h"

#define TOL 1e-5

typedef struct ref_ctx {
    porta_st_file *st;
    checker *c;
    int steps_seen;
    double worst;
} ref_ctx;

static double rel_mae(const double *y, const float *ref, int64_t n)
{
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        e += fabs(y[i] - ref[i]);
        m += fabs(ref[i]);
    }
    return m > 0 ? e / m : e;
}

static void check_step(ref_ctx *r, int step, const char *name, const double *ours, int64_t n)
{
    char full[64], what[128];
    snprintf(full, sizeof full, "step%d.%s", step, name);
    float *ref = fixture_tensor(r->st, full, n);
    double e = rel_mae(ours, ref, n);
    r->worst = e > r->worst ? e : r->worst;
    snprintf(what, sizeof what, "%s rel MAE %.3g <= %g", full, e, TOL);
    check_true(r->c, what, e <= TOL);
    free(ref);
}

/* The reference stores the mixture weights as toto-ts's Categorical.logits:
 * log-softmax of the raw head output. */
static void log_softmax(double *dst, const double *src, int64_t rows, int k)
{
    for (int64_t i = 0; i < rows; i++) {
        const double *x = src + i * k;
        double mx = x[0], z = 0;
        for (int j = 1; j < k; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < k; j++) z += exp(x[j] - mx);
        for (int j = 0; j < k; j++) dst[i * k + j] = x[j] - mx - log(z);
    }
}

static void on_step(void *user, const porta_toto_dist *d)
{
    ref_ctx *r = user;
    int64_t points = (int64_t)d->rows * d->variates * d->patch, n = points * d->k;
    double *tmp = calloc((size_t)n, sizeof(double));
    check_step(r, d->step, "df", d->df, n);
    check_step(r, d->step, "loc", d->loc, n);
    check_step(r, d->step, "scale", d->scale, n);
    log_softmax(tmp, d->logits, points, d->k);
    check_step(r, d->step, "weights_logits", tmp, n);
    for (int64_t i = 0; i < points; i++) tmp[i] = d->scaler_loc[i / d->patch];
    check_step(r, d->step, "scaler_loc", tmp, points);
    for (int64_t i = 0; i < points; i++) tmp[i] = d->scaler_scale[i / d->patch];
    check_step(r, d->step, "scaler_scale", tmp, points);
    free(tmp);
    r->steps_seen++;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s BACKEND FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    porta_backend *be = open_or_skip(argv[1]);
    toto_fixture fx;
    fixture_open(argv[2], &fx);
    porta_st_file *st = fx.st;
    const char *hz = porta_st_metadata(st, "horizon"), *ns = porta_st_metadata(st, "num_steps");
    if (!hz || !ns) {
        fprintf(stderr, "%s: horizon / num_steps metadata missing\n", argv[2]);
        return 1;
    }
    int B = fx.B, V = fx.V, T = fx.T;
    int H = atoi(hz), steps = atoi(ns);

    porta_toto_model *m;
    CHECK_OK(porta_toto_model_load(argv[2], be, &m));
    porta_toto_forecaster *f;
    porta_toto_forecast_desc d = {.series = B, .variates = V, .context_len = T, .horizon = H};
    CHECK_OK(porta_toto_forecaster_new(m, &d, &f));
    checker c = {0};
    ref_ctx r = {st, &c, 0, 0};
    float *mean = malloc((size_t)B * V * H * sizeof(float));
    fill_nan(mean, (int64_t)B * V * H);
    porta_toto_inputs in = {.series = fx.series, .padding_mask = fx.padding_mask, .id_mask = fx.id_mask,
                             .on_step = on_step, .user = &r};
    porta_toto_result res = {mean, NULL};
    CHECK_OK(porta_toto_forecast(f, &in, &res));
    check_true(&c, "every reference step compared", r.steps_seen == steps);

    float *ref_mean = fixture_tensor(st, "mean", (int64_t)B * V * H);
    double *m64 = malloc((size_t)B * V * H * sizeof(double));
    for (int64_t i = 0; i < (int64_t)B * V * H; i++) m64[i] = mean[i];
    double e = rel_mae(m64, ref_mean, (int64_t)B * V * H);
    char what[96];
    snprintf(what, sizeof what, "mean rel MAE %.3g <= %g", e, TOL);
    check_true(&c, what, e <= TOL);
    printf("worst step rel MAE %.3g, mean rel MAE %.3g (%s)\n", r.worst, e, argv[1]);

    porta_program_stats ps, ds;
    CHECK_OK(porta_toto_forecaster_stats(f, &ps, &ds));
    check_true(&c, "prefill compiled once, replayed once", ps.compiles == 1 && ps.replays == 1);
    check_true(&c, "decode compiled once, replayed per step",
               steps < 2 || (ds.compiles == 1 && ds.replays == (uint64_t)steps - 1));

    free(m64);
    free(ref_mean);
    free(mean);
    porta_toto_forecaster_free(f);
    porta_toto_model_free(m);
    fixture_close(&fx);
    porta_backend_close(be);
    return checker_exit(&c);
}
