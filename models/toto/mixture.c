/* Draws from Toto's output distribution, a mixture of Student-t components
 * (distribution.py's MixtureOfStudentTsOutput), from the head's raw outputs.
 *
 * The component weights are the only part computed in float: a block of
 * draws at a time, one draw per vector lane and a loop over the components,
 * so that every loop vectorises (exp by a branch-free polynomial, within
 * 1 ulp of the exact value on [-87, 0]). The drawn component's Student-t is
 * drawn in double. */
#include <float.h>
#include <math.h>
#include <string.h>
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

/* exp(x) for x in [-87, 0] (Cephes expf's reduction and polynomial),
 * 0x1.8p23f rounding n = x / ln 2 to an integer without a conversion. */
static float exp_nonpos(float x)
{
    float t = x * 1.44269504088896341f + 0x1.8p23f, n = t - 0x1.8p23f;
    uint32_t tb, sb;
    memcpy(&tb, &t, sizeof tb);
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    sb = (tb - 0x4B400000u + 127u) << 23; /* 2^n: n in [-126, 0] */
    float s;
    memcpy(&s, &sb, sizeof s);
    return p * s;
}

/* The drawn component of each of the m <= TOTO_MIXTURE_BLOCK mixtures with
 * logits lg [m][K] into comp [m]: the first whose cumulative weight reaches
 * u times the total, u uniform in (0, 1). Work: [K][TOTO_MIXTURE_BLOCK]. */
static void draw_components(toto_rng *r, int m, int K, const float *lg, float *work, int32_t *comp)
{
    enum { NB = TOTO_MIXTURE_BLOCK };
    float mx[NB], acc[NB], t[NB];
    for (int i = 0; i < m; i++)
        for (int k = 0; k < K; k++) work[k * NB + i] = lg[(size_t)i * K + k];
    for (int i = 0; i < m; i++) mx[i] = work[i];
    for (int k = 1; k < K; k++)
        for (int i = 0; i < m; i++) mx[i] = work[k * NB + i] > mx[i] ? work[k * NB + i] : mx[i];
    /* Logits more than 87 below the largest (and NaN) weigh exp(-87), which
     * is zero next to the largest weight, 1. A loop of its own: inlined
     * into the next, the clamp would keep it from vectorising. */
    for (int k = 0; k < K; k++)
        for (int i = 0; i < m; i++) {
            float x = work[k * NB + i] - mx[i];
            work[k * NB + i] = x > -87.0f ? x : -87.0f;
        }
    for (int i = 0; i < m; i++) acc[i] = 0;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < m; i++) work[k * NB + i] = acc[i] += exp_nonpos(work[k * NB + i]);
    /* 0 < t <= total: the component found has a positive weight. */
    for (int i = 0; i < m; i++) t[i] = (float)(toto_rng_uniform(r) * acc[i]);
    for (int i = 0; i < m; i++) comp[i] = 0;
    for (int k = 0; k < K - 1; k++)
        for (int i = 0; i < m; i++) comp[i] += work[k * NB + i] < t[i];
}

void toto_mixture_sample(toto_rng *r, int n, int K, const float *const head[TOTO_HEAD_COUNT], float *work,
                         double *y)
{
    int32_t comp[TOTO_MIXTURE_BLOCK];
    for (int i0 = 0; i0 < n; i0 += TOTO_MIXTURE_BLOCK) {
        int m = n - i0 < TOTO_MIXTURE_BLOCK ? n - i0 : TOTO_MIXTURE_BLOCK;
        draw_components(r, m, K, head[TOTO_HEAD_LOGITS] + (size_t)i0 * K, work, comp);
        for (int i = 0; i < m; i++) {
            size_t o = (size_t)(i0 + i) * K + comp[i];
            y[i0 + i] = head[TOTO_HEAD_LOC][o] + toto_mixture_scale(head[TOTO_HEAD_SCALE][o]) *
                                                     toto_rng_student_t(r, toto_student_df(head[TOTO_HEAD_DF][o]));
        }
    }
}
