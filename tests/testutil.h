/* Shared helpers for the test programs: a seeded generator, backend opening
 * with skip semantics, error metrics. */
#ifndef PORTA_TESTUTIL_H
#define PORTA_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "porta/porta.h"

#define TEST_SKIP 77

typedef struct rng { uint64_t s; } rng;
static inline uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [-1, 1), never exactly zero. */
static inline float rng_uniform(rng *r)
{
    float v = (float)((double)(rng_next(r) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    return v == 0.0f ? 0.5f : v;
}
void fill_random(rng *r, float *x, int64_t n, float scale);
void fill_nan(float *x, int64_t n);

/* Opens a backend; on PORTA_ERR_UNAVAILABLE prints why and exits with TEST_SKIP. */
porta_backend *open_or_skip(const char *name);

typedef struct errstat { double rel_l2, max_abs, max_ref; int64_t nonfinite, worst; } errstat;
errstat compare(const float *y, const float *ref, int64_t n);

/* Counts failures; prints a line per check. */
typedef struct checker { int failed, passed; } checker;
int check_close(checker *c, const char *what, const float *y, const float *ref, int64_t n, double tol);
int check_true(checker *c, const char *what, int cond);
int checker_exit(const checker *c);

#define CHECK_OK(expr)                                                                                            \
    do {                                                                                                          \
        porta_status s_ = (expr);                                                                                 \
        if (s_ != PORTA_OK) {                                                                                     \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr, porta_status_name(s_),       \
                    porta_last_error());                                                                          \
            exit(1);                                                                                              \
        }                                                                                                         \
    } while (0)

#endif
