/* CausalPatchStdMeanScaler (toto-ts scaler.py), on the host in double: it is
 * a few cumulative sums per series, and toto-ts computes it in float64 too.
 * The sums run forward in time, so a forecast keeps them per row and extends
 * them by each new patch instead of re-running the whole series. */
#include <math.h>
#include <string.h>
#include "toto_internal.h"

/* toto-ts's defaults for the patch scaler (not in config.json). */
#define MINIMUM_SCALE 0.1

static void global_scale(const porta_toto_config *cfg, const double *x, const double *w, int prefix, double *lo,
                         double *hi)
{
    double sw = 0, sx = 0;
    for (int t = 0; t < prefix; t++) {
        sw += w[t];
        sx += w[t] * x[t];
    }
    double den = sw < 1.0 ? 1.0 : sw;
    double mean = sx / den;
    if (!isfinite(mean)) mean = 0; /* torch.nan_to_num */
    double sv = 0;
    for (int t = 0; t < prefix; t++) {
        double d = (x[t] - mean) * w[t];
        sv += d * d;
    }
    double g = sqrt(sv / den + MINIMUM_SCALE);
    double f = pow(10.0, cfg->scale_factor_exponent);
    *lo = g / f > MINIMUM_SCALE ? g / f : MINIMUM_SCALE;
    *hi = g * f;
}

void toto_scaler_start(const porta_toto_config *cfg, const double *x, const double *w, int prefix,
                       toto_scaler_state *st)
{
    memset(st, 0, sizeof *st);
    st->lo = 0;
    st->hi = INFINITY;
    if (cfg->stabilize_with_global) global_scale(cfg, x, w, prefix, &st->lo, &st->hi);
}

void toto_scaler_extend(const porta_toto_config *cfg, toto_scaler_state *st, const double *x, const double *w,
                        int n, double *loc, double *scale)
{
    /* Welford in the vectorised form toto-ts uses: the increment pairs the
     * previous step's mean with the current one. */
    int P = cfg->patch_size;
    for (int t = 0; t < n; t++) {
        st->cw += w[t];
        st->cv += w[t] * x[t];
        double den = st->cw < 1.0 ? 1.0 : st->cw;
        double mean = st->cv / den;
        st->m2 += (x[t] - st->mean) * (x[t] - mean) * w[t];
        st->mean = mean;
        if ((t + 1) % P) continue;
        double bessel = den - 1.0 < 1.0 ? 1.0 : den - 1.0;
        double s = sqrt(st->m2 / bessel + MINIMUM_SCALE);
        if (cfg->stabilize_with_global) s = s < st->lo ? st->lo : (s > st->hi ? st->hi : s);
        /* toto-ts hands the statistics on as float32. */
        loc[t / P] = (float)mean;
        scale[t / P] = (float)s;
    }
}
