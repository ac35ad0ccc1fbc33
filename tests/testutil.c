#include <math.h>
#include <stdlib.h>
#include "testutil.h"

void fill_random(rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = scale * rng_uniform(r);
}

void fill_nan(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
}

porta_backend *open_or_skip(const char *name)
{
    porta_backend *be = NULL;
    porta_status s = porta_backend_open(name, &be);
    if (s == PORTA_ERR_UNAVAILABLE) {
        printf("SKIP: backend %s unavailable: %s\n", name, porta_last_error());
        exit(TEST_SKIP);
    }
    if (s != PORTA_OK) {
        fprintf(stderr, "cannot open backend %s: %s: %s\n", name, porta_status_name(s), porta_last_error());
        exit(1);
    }
    printf("backend %s: %s\n", porta_backend_kind(be), porta_backend_device(be));
    return be;
}

errstat compare(const float *y, const float *ref, int64_t n)
{
    errstat e = { 0, 0, 0, 0, -1 };
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i]) || !isfinite(ref[i])) {
            if (e.nonfinite++ == 0) e.worst = i;
            continue;
        }
        double d = fabs((double)y[i] - (double)ref[i]);
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (d > e.max_abs) {
            e.max_abs = d;
            if (!e.nonfinite) e.worst = i;
        }
        if (fabs(ref[i]) > e.max_ref) e.max_ref = fabs(ref[i]);
    }
    e.rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    return e;
}

/* Passes when the normwise relative error is within tol and no element is off
 * by more than 10 * tol of the largest reference magnitude (a local error the
 * norm would dilute). */
int check_close(checker *c, const char *what, const float *y, const float *ref, int64_t n, double tol)
{
    errstat e = compare(y, ref, n);
    int ok = e.nonfinite == 0 && e.rel_l2 <= tol && e.max_abs <= 10 * tol * (e.max_ref > 0 ? e.max_ref : 1);
    printf("%-4s %-52s rel_l2 %.2e  max_abs %.2e  (tol %.0e)%s\n", ok ? "ok" : "FAIL", what, e.rel_l2, e.max_abs, tol,
           e.nonfinite ? "  NON-FINITE" : "");
    if (!ok && e.worst >= 0)
        printf("     worst element %lld: got %.9g, want %.9g\n", (long long)e.worst, y[e.worst], ref[e.worst]);
    if (ok) c->passed++;
    else c->failed++;
    return ok;
}

int check_true(checker *c, const char *what, int cond)
{
    printf("%-4s %s\n", cond ? "ok" : "FAIL", what);
    if (cond) c->passed++;
    else c->failed++;
    return cond;
}

int checker_exit(const checker *c)
{
    printf("%d passed, %d failed\n", c->passed, c->failed);
    return c->failed ? 1 : 0;
}
