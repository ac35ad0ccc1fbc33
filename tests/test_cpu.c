/* CPU backend specifics: the thread count from the spec or PORTA_THREADS, and
 * results that do not depend on it. Every output element is computed by one
 * thread in a fixed order, so a decoder run on 1 and on 3 threads must agree
 * bit for bit (prefill through sgemm and the multi-row attention, decode
 * through the AVX2 row kernels and the streaming attention). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include "decoder.h"
#include "testutil.h"

enum { LAYERS = 2, E = 128, H = 4, F = 192, ROWS = 3, PRE = 24, STEPS = 12, MAXLEN = PRE + STEPS };

static porta_program *compile_chunk(porta_backend *be, const dec_weights *w, porta_kvcache *kv, int chunk)
{
    porta_graph *g = NULL;
    porta_program *p = NULL;
    CHECK_OK(porta_graph_new(&g));
    porta_tensor *x = porta_input(g, "x", 3, (int64_t[]){ ROWS, chunk, E });
    CHECK_OK(porta_output(g, dec_build(g, w, kv, x)));
    CHECK_OK(porta_compile(g, be, &p));
    porta_graph_free(g);
    return p;
}

/* Prefill PRE rows, then STEPS single-row steps; out gets every output. */
static void run_decoder(const char *name, float *out)
{
    porta_backend *be = open_or_skip(name);
    dec_config c = { LAYERS, E, H, F, 1 };
    dec_weights *w = NULL;
    porta_kvcache *kv = NULL;
    CHECK_OK(dec_weights_new(be, &c, 7, &w));
    porta_kvcache_desc kd = { LAYERS, ROWS, H, MAXLEN, E / H, PORTA_F32 };
    CHECK_OK(porta_kvcache_new(be, &kd, &kv));
    porta_program *pre = compile_chunk(be, w, kv, PRE), *dec = compile_chunk(be, w, kv, 1);
    rng r = { 11 };
    float *x = malloc(sizeof(float) * ROWS * PRE * E);
    fill_random(&r, x, ROWS * PRE * E, 1.0f);
    CHECK_OK(porta_run(pre, &(porta_step){ .n_new = PRE, .inputs = (const float *const[]){ x },
                                           .outputs = (float *const[]){ out } }));
    CHECK_OK(porta_program_wait(pre));
    for (int s = 0; s < STEPS; s++) {
        float *y = out + (int64_t)ROWS * PRE * E + (int64_t)s * ROWS * E;
        fill_random(&r, x, ROWS * E, 1.0f);
        CHECK_OK(porta_run(dec, &(porta_step){ .n_new = 1, .inputs = (const float *const[]){ x },
                                               .outputs = (float *const[]){ y } }));
    }
    CHECK_OK(porta_program_wait(dec));
    free(x);
    porta_program_free(pre);
    porta_program_free(dec);
    porta_kvcache_free(kv);
    dec_weights_free(w);
    porta_backend_close(be);
}

static int opens_with(const char *name, porta_status want)
{
    porta_backend *be = NULL;
    porta_status s = porta_backend_open(name, &be);
    porta_backend_close(be);
    return s == want;
}

static int device_says(const char *name, const char *text)
{
    porta_backend *be = NULL;
    if (porta_backend_open(name, &be) != PORTA_OK) return 0;
    int ok = strstr(porta_backend_device(be), text) != NULL;
    porta_backend_close(be);
    return ok;
}

int main(void)
{
    checker ck = { 0, 0 };
    porta_backend_close(open_or_skip("cpu"));

    check_true(&ck, "cpu:3 opens three threads", device_says("cpu:3", "3 threads"));
    check_true(&ck, "cpu:0 is refused", opens_with("cpu:0", PORTA_ERR_ARG));
    check_true(&ck, "cpu:x is refused", opens_with("cpu:x", PORTA_ERR_ARG));
    check_true(&ck, "cpu:100000 is refused", opens_with("cpu:100000", PORTA_ERR_ARG));
    setenv("PORTA_THREADS", "2", 1);
    check_true(&ck, "PORTA_THREADS=2 sets the default", device_says("cpu", "2 threads"));
    check_true(&ck, "an explicit count wins over PORTA_THREADS", device_says("cpu:1", "1 thread"));
    setenv("PORTA_THREADS", "two", 1);
    check_true(&ck, "PORTA_THREADS=two is refused", opens_with("cpu", PORTA_ERR_ARG));
    unsetenv("PORTA_THREADS");

    const int64_t n = (int64_t)ROWS * (PRE + STEPS) * E;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    fill_nan(a, n);
    fill_nan(b, n);
    run_decoder("cpu:1", a);
    run_decoder("cpu:3", b);
    errstat e = compare(a, b, n);
    check_true(&ck, "decoder outputs are finite", e.nonfinite == 0);
    check_true(&ck, "1 and 3 threads agree bit for bit", memcmp(a, b, sizeof(float) * n) == 0);
    free(a);
    free(b);
    return checker_exit(&ck);
}
