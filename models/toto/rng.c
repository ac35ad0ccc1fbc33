/* The sampler's generator: xoshiro256** seeded through splitmix64, normal
 * draws by the polar method, Student-T as a normal over the root of a scaled
 * chi-square (Marsaglia-Tsang gamma; df >= 2 keeps the shape >= 1). */
#include <math.h>
#include "toto_internal.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void toto_rng_seed(toto_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(toto_rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double toto_rng_uniform(toto_rng *r) { return ((double)(next(r) >> 11) + 0.5) * 0x1.0p-53; }

/* Two independent standard normals: the polar method yields a pair for one
 * logarithm and one root. */
static void normal_pair(toto_rng *r, double *z0, double *z1)
{
    for (;;) {
        double u = 2 * toto_rng_uniform(r) - 1, v = 2 * toto_rng_uniform(r) - 1, q = u * u + v * v;
        if (q > 0 && q < 1) {
            double m = sqrt(-2 * log(q) / q);
            *z0 = u * m;
            *z1 = v * m;
            return;
        }
    }
}

/* Gamma(shape >= 1, 1) times the given c2 = 1 / (shape - 1/3), from the
 * normal z first and fresh normals after a rejection. Marsaglia and Tsang's
 * squeeze u < 1 - 0.0331 z^4 accepts most candidates without a logarithm;
 * it lies below the exact test, so the draw's distribution is unchanged. */
static double gamma_draw(toto_rng *r, double shape, double z)
{
    double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d), spare = 0;
    for (int have = 0;; have = !have) {
        double v = 1 + c * z;
        if (v > 0) {
            v = v * v * v;
            double u = toto_rng_uniform(r), z2 = z * z;
            if (u < 1 - 0.0331 * z2 * z2 || log(u) < 0.5 * z2 + d - d * v + d * log(v)) return d * v;
        }
        if (have) z = spare;
        else normal_pair(r, &z, &spare);
    }
}

/* One normal pair serves both the gamma's first candidate and the
 * numerator: the two are independent. */
double toto_rng_student_t(toto_rng *r, double df)
{
    double z0, z1;
    normal_pair(r, &z0, &z1);
    return z1 * sqrt(df / (2 * gamma_draw(r, df / 2, z0)));
}
