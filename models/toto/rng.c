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

/* Stream j + 1 starts 2^128 steps after stream j (xoshiro256's jump). */
void toto_rng_seed(toto_rng *r, uint64_t seed)
{
    static const uint64_t jump[4] = {0x180ec6d33cfd0abaull, 0xd5a61266f0c9392cull, 0xa9582618e03fc9aaull,
                                     0x39abdc4529b1661cull};
    for (int i = 0; i < 4; i++) r->s[i][0] = splitmix64(&seed);
    for (int j = 1; j < TOTO_RNG_LANES; j++) {
        uint64_t t[4] = {0, 0, 0, 0};
        for (int i = 0; i < 4; i++) r->s[i][j] = r->s[i][j - 1];
        for (int w = 0; w < 4; w++)
            for (int b = 0; b < 64; b++) {
                if ((jump[w] >> b) & 1)
                    for (int i = 0; i < 4; i++) t[i] ^= r->s[i][j];
                toto_rng_step(r, j);
            }
        for (int i = 0; i < 4; i++) r->s[i][j] = t[i];
    }
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
