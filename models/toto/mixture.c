/* Draws from Toto's output distribution, a mixture of Student-t components
 * (distribution.py's MixtureOfStudentTsOutput), from the head's raw outputs. */
#include <float.h>
#include <math.h>
#include "toto_internal.h"

static double softplus(double x) { return x > 20 ? x : log1p(exp(x)); }

double toto_student_df(float raw)
{
    double df = softplus(raw);
    return 2.0 + (df > FLT_EPSILON ? df : FLT_EPSILON);
}

double toto_mixture_scale(float raw)
{
    double sc = softplus(raw);
    return sc > FLT_EPSILON ? sc : FLT_EPSILON;
}

/* One draw, which needs the Student-t parameters of the drawn component
 * only. */
static double draw(toto_rng *r, int K, const float *df, const float *loc, const float *scale, const float *logits,
                   double *e)
{
    double mx = logits[0], sum = 0;
    for (int k = 1; k < K; k++) mx = logits[k] > mx ? logits[k] : mx;
    for (int k = 0; k < K; k++) sum += e[k] = exp(logits[k] - mx);
    double u = toto_rng_uniform(r), acc = 0;
    int k = 0;
    while (k < K - 1 && (acc += e[k] / sum) < u) k++;
    return loc[k] + toto_mixture_scale(scale[k]) * toto_rng_student_t(r, toto_student_df(df[k]));
}

void toto_mixture_sample(toto_rng *r, int n, int K, const float *const head[TOTO_HEAD_COUNT], double *work,
                         double *y)
{
    for (int i = 0; i < n; i++) {
        size_t o = (size_t)i * K;
        y[i] = draw(r, K, head[TOTO_HEAD_DF] + o, head[TOTO_HEAD_LOC] + o, head[TOTO_HEAD_SCALE] + o,
                    head[TOTO_HEAD_LOGITS] + o, work);
    }
}
