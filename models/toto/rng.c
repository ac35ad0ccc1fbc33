/* The sampler's generator: xoshiro256** seeded through splitmix64 (the
 * step itself is inline, in toto_internal.h), and the Marsaglia-Tsang gamma
 * draw past its first candidate, with normals by the polar method. */
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

double toto_rng_gamma(toto_rng *r, double shape, double z, double u)
{
    double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d), spare = 0;
    for (int have = 0;; have = !have) {
        double v = 1 + c * z;
        if (v > 0) {
            v = v * v * v;
            double z2 = z * z;
            if (u < 1 - 0.0331 * z2 * z2 || log(u) < 0.5 * z2 + d - d * v + d * log(v)) return d * v;
        }
        if (have) z = spare;
        else normal_pair(r, &z, &spare);
        u = toto_rng_uniform(r);
    }
}
