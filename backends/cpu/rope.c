/* ROPE with Toto's xPos scaling, as graph.h defines it. The cos, sin and scale
 * of a row depend only on its position, so each (b, t) task computes them once
 * in double precision (SLEEF) and applies them to all H heads. */
#include <math.h>
#include <string.h>
#include <sleef.h>

#include "cpu.h"

/* cc, ss and sc: D floats each. */
int64_t cpu_rope_scratch(const porta_node *n) { return 3 * n->out.shape[3]; }

typedef struct rope_job {
    const cpu_exec *ex;
    const porta_node *n;
    const float *x;
    float *out;
} rope_job;

/* Pair-expanded tables for position p: cc = (cos a_j, cos a_j), ss = (-sin a_j,
 * sin a_j), and sc = the xPos scale (left unset without xpos). */
static void tables(const porta_node *n, int64_t D, double p, double centre, float *cc, float *ss, float *sc)
{
    const int64_t half = D / 2;
    const double lt = log((double)n->p.rope.theta);
    for (int64_t j = 0; j < half; j += 4) {
        __m256d jj = _mm256_add_pd(_mm256_set1_pd((double)j), _mm256_setr_pd(0, 1, 2, 3));
        __m256d invf = Sleef_expd4_u10avx2(_mm256_mul_pd(jj, _mm256_set1_pd(-2.0 * lt / (double)D)));
        Sleef___m256d_2 r = Sleef_sincosd4_u10avx2(_mm256_mul_pd(_mm256_set1_pd(p), invf));
        double s[4], c[4];
        _mm256_storeu_pd(s, r.x);
        _mm256_storeu_pd(c, r.y);
        for (int l = 0; l < 4 && j + l < half; l++) {
            cc[2 * (j + l)] = cc[2 * (j + l) + 1] = (float)c[l];
            ss[2 * (j + l)] = (float)-s[l];
            ss[2 * (j + l) + 1] = (float)s[l];
        }
    }
    if (!n->p.rope.xpos) return;
    double e = (p - centre) / (double)n->p.rope.scale_base;
    if (n->p.rope.is_key) e = -e;
    for (int64_t k = 0; k < half; k += 4) {
        __m256d kk = _mm256_add_pd(_mm256_set1_pd((double)k), _mm256_setr_pd(0, 1, 2, 3));
        __m256d u = _mm256_div_pd(_mm256_add_pd(_mm256_mul_pd(kk, _mm256_set1_pd(2.0)), _mm256_set1_pd(0.4 * (double)D)),
                                  _mm256_set1_pd(1.4 * (double)D));
        __m256d s = Sleef_expd4_u10avx2(_mm256_mul_pd(_mm256_set1_pd(e), Sleef_logd4_u10avx2(u)));
        double sv[4];
        _mm256_storeu_pd(sv, s);
        for (int l = 0; l < 4 && k + l < half; l++) sc[k + l] = sc[half + k + l] = (float)sv[l];
    }
}

static void rope_task(void *ctx, int64_t begin, int64_t end, int tid)
{
    const rope_job *j = ctx;
    const porta_ref *x = &j->n->in[0];
    const int64_t T = x->shape[1], H = x->shape[2], D = x->shape[3];
    const int64_t sd = x->stride[3];
    float *cc = cpu_scratch(j->ex, tid), *ss = cc + D, *sc = ss + D;
    const int xpos = j->n->p.rope.xpos;
    for (int64_t r = begin; r < end; r++) {
        const int64_t b = r / T, i = r % T;
        float *o = j->out + r * H * D;
        int64_t pos, nb;
        cpu_step_row(j->ex, j->n->p.rope.cached, b, T, &pos, &nb);
        if (i >= nb) {
            memset(o, 0, (size_t)(H * D) * sizeof *o);
            continue;
        }
        /* Toto centres the xPos exponent on the chunk's largest position,
         * halved (floor). */
        const double centre = floor((double)(pos + nb - 1) / 2.0);
        tables(j->n, D, (double)(pos + i), centre, cc, ss, sc);
        for (int64_t h = 0; h < H; h++, o += D) {
            const float *xs = j->x + b * x->stride[0] + i * x->stride[1] + h * x->stride[2];
            int64_t k = 0;
            if (sd == 1) {
                for (; k + 8 <= D; k += 8) {
                    __m256 v = _mm256_loadu_ps(xs + k);
                    __m256 y = _mm256_fmadd_ps(v, _mm256_loadu_ps(cc + k),
                                               _mm256_mul_ps(_mm256_permute_ps(v, 0xB1), _mm256_loadu_ps(ss + k)));
                    if (xpos) y = _mm256_mul_ps(y, _mm256_loadu_ps(sc + k));
                    _mm256_storeu_ps(o + k, y);
                }
            }
            for (; k < D; k += 2) {
                float x0 = xs[k * sd], x1 = xs[(k + 1) * sd];
                float y0 = x0 * cc[k] + x1 * ss[k], y1 = x1 * cc[k + 1] + x0 * ss[k + 1];
                if (xpos) {
                    y0 *= sc[k];
                    y1 *= sc[k + 1];
                }
                o[k] = y0;
                o[k + 1] = y1;
            }
        }
    }
}

void cpu_rope(const cpu_exec *ex, const cpu_node *nd)
{
    const porta_ref *x = &nd->n.in[0];
    rope_job j = {ex, &nd->n, nd->in[0], nd->out};
    const int64_t HD = x->shape[2] * x->shape[3];
    cpu_pool_run(ex->pool, x->shape[0] * x->shape[1], (4096 + HD - 1) / (HD ? HD : 1), rope_task, &j);
}
