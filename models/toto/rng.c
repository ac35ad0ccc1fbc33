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

double toto_rng_normal(toto_rng *r)
{
    for (;;) {
        double u = 2 * toto_rng_uniform(r) - 1, v = 2 * toto_rng_uniform(r) - 1, q = u * u + v * v;
        if (q > 0 && q < 1) return u * sqrt(-2 * log(q) / q);
    }
}

/* Gamma(shape >= 1, 1). */
static double gamma_draw(toto_rng *r, double shape)
{
    double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double z = toto_rng_normal(r), v = 1 + c * z;
        if (v <= 0) continue;
        v = v * v * v;
        double u = toto_rng_uniform(r);
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v)) return d * v;
    }
}

double toto_rng_student_t(toto_rng *r, double df)
{
    double chi2 = 2 * gamma_draw(r, df / 2);
    return toto_rng_normal(r) / sqrt(chi2 / df);
}
