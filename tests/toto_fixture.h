/* The Toto reference fixture (tests/data/toto-tiny/reference.safetensors,
 * documented in that folder's README) as the Toto tests read it. */
#ifndef PORTA_TESTS_TOTO_FIXTURE_H
#define PORTA_TESTS_TOTO_FIXTURE_H

#include <math.h>
#include "porta/safetensors.h"
#include "testutil.h"

typedef struct toto_fixture {
    porta_st_file *st;
    int B, V, T;                /* series, variates, context points */
    float *series, *padding_mask;
    int32_t *id_mask;
} toto_fixture;

/* A float32 copy of reference tensor `name`, which must hold n elements; exits on failure. */
static inline float *fixture_tensor(porta_st_file *st, const char *name, int64_t n)
{
    const porta_st_tensor *t = porta_st_find(st, name);
    if (!t || porta_st_numel(t) != n) {
        fprintf(stderr, "reference tensor %s missing or not %lld elements\n", name, (long long)n);
        exit(1);
    }
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) exit(1);
    CHECK_OK(porta_st_to_f32(t, v, n));
    return v;
}

/* Opens DIR/reference.safetensors and reads the inputs; exits on failure. */
static inline void fixture_open(const char *dir, toto_fixture *f)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    CHECK_OK(porta_st_open(path, &f->st));
    const porta_st_tensor *s = porta_st_find(f->st, "inputs.series");
    if (!s || s->ndim != 3) {
        fprintf(stderr, "%s: inputs.series [B, V, T] missing\n", path);
        exit(1);
    }
    f->B = (int)s->shape[0], f->V = (int)s->shape[1], f->T = (int)s->shape[2];
    int64_t n = (int64_t)f->B * f->V * f->T;
    f->series = fixture_tensor(f->st, "inputs.series", n);
    f->padding_mask = fixture_tensor(f->st, "inputs.padding_mask", n);
    float *idf = fixture_tensor(f->st, "inputs.id_mask", n);
    f->id_mask = malloc((size_t)n * sizeof(int32_t));
    if (!f->id_mask) exit(1);
    for (int64_t i = 0; i < n; i++) f->id_mask[i] = (int32_t)lrintf(idf[i]);
    free(idf);
}

static inline void fixture_close(toto_fixture *f)
{
    free(f->series);
    free(f->padding_mask);
    free(f->id_mask);
    porta_st_close(f->st);
}

#endif
