/* CausalPatchStdMeanScaler (toto-ts scaler.py), on the host in double: it is
 * a few cumulative sums per series, and toto-ts computes it in float64 too. */
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

void toto_scaler(const porta_toto_config *cfg, const double *x, const double *w, int n, int prefix, double *loc,
                 double *scale)
{
    double lo = 0, hi = INFINITY;
    if (cfg->stabilize_with_global) global_scale(cfg, x, w, prefix < n ? prefix : n, &lo, &hi);
    /* Welford in the vectorised form toto-ts uses: the increment pairs the
     * previous step's mean with the current one. */
    double cw = 0, cv = 0, m2 = 0, prev_mean = 0;
    int P = cfg->patch_size;
    for (int t = 0; t < n; t++) {
        cw += w[t];
        cv += w[t] * x[t];
        double den = cw < 1.0 ? 1.0 : cw;
        double mean = cv / den;
        m2 += (x[t] - prev_mean) * (x[t] - mean) * w[t];
        prev_mean = mean;
        if ((t + 1) % P) continue;
        double bessel = den - 1.0 < 1.0 ? 1.0 : den - 1.0;
        double s = sqrt(m2 / bessel + MINIMUM_SCALE);
        if (cfg->stabilize_with_global) s = s < lo ? lo : (s > hi ? hi : s);
        /* toto-ts hands the statistics on as float32. */
        loc[t / P] = (float)mean;
        scale[t / P] = (float)s;
    }
}
