/* Bad input gets a status and a message, never a crash: null arguments, wrong
 * shapes (refused while the graph is built), unknown backends, misuse of the
 * cache and of programs. Backend-independent: runs on ref. */
#include <string.h>
#include "testutil.h"

static int refused(porta_status s, porta_status want)
{
    return s == want && porta_last_error()[0] != '\0';
}

#define EXPECT(ck, what, cond)                                                                                   \
    do {                                                                                                         \
        porta_clear_error();                                                                                     \
        int c_ = (cond);                                                                                         \
        char w_[300];                                                                                            \
        snprintf(w_, sizeof w_, "%s  [%s]", what, porta_last_error());                                           \
        check_true(ck, w_, c_);                                                                                  \
    } while (0)

/* Whether porta_mixture_sample refuses parameters [5, 24] but the third
 * [5, k3], a key of key_n elements and `repeat`, with a shape error. */
static int sample_refused(int k3, int key_n, int repeat)
{
    porta_graph *g;
    CHECK_OK(porta_graph_new(&g));
    porta_tensor *p[4];
    for (int i = 0; i < 4; i++) p[i] = porta_input(g, "p", 2, (int64_t[]){ 5, i == 2 ? k3 : 24 });
    porta_tensor *key = porta_input(g, "key", 1, (int64_t[]){ key_n });
    int refused = porta_mixture_sample(g, p[0], p[1], p[2], p[3], key, repeat) == NULL &&
                  porta_graph_status(g) == PORTA_ERR_SHAPE;
    porta_graph_free(g);
    return refused;
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv;
    checker ck = { 0, 0 };
    porta_backend *be = NULL;
    EXPECT(&ck, "unknown backend name", refused(porta_backend_open("tpu", &be), PORTA_ERR_ARG) && !be);
    EXPECT(&ck, "NULL backend name", refused(porta_backend_open(NULL, &be), PORTA_ERR_ARG));
    EXPECT(&ck, "NULL out pointer", refused(porta_backend_open("ref", NULL), PORTA_ERR_ARG));
    EXPECT(&ck, "ref takes no device index", refused(porta_backend_open("ref:3", &be), PORTA_ERR_ARG));
    be = open_or_skip("ref");

    porta_buffer *buf = NULL;
    EXPECT(&ck, "buffer of size 0", refused(porta_buffer_new(be, PORTA_F32, 0, &buf), PORTA_ERR_ARG));
    CHECK_OK(porta_buffer_new(be, PORTA_F32, 100, &buf));
    float tmp[200] = { 0 };
    EXPECT(&ck, "buffer write past the end", refused(porta_buffer_write(buf, 50, 60, tmp), PORTA_ERR_ARG));
    EXPECT(&ck, "buffer read with NULL dst", refused(porta_buffer_read(buf, 0, 10, NULL), PORTA_ERR_ARG));

    porta_graph *g;
    CHECK_OK(porta_graph_new(&g));
    porta_tensor *x = porta_input(g, "x", 2, (int64_t[]){ 4, 8 });
    porta_tensor *w = porta_param(g, buf, 0, 2, (int64_t[]){ 5, 9 });
    EXPECT(&ck, "linear with mismatched K is refused at build time",
           porta_linear(g, x, w, NULL) == NULL && refused(porta_graph_status(g), PORTA_ERR_SHAPE));
    EXPECT(&ck, "later builder calls return NULL, first error kept",
           porta_silu(g, x) == NULL && strstr(porta_graph_error(g), "porta_linear"));
    porta_program *p = NULL;
    EXPECT(&ck, "compiling a failed graph is refused", refused(porta_compile(g, be, &p), PORTA_ERR_SHAPE) && !p);
    porta_graph_free(g);

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 2, (int64_t[]){ 4, 8 });
    EXPECT(&ck, "param larger than its buffer", porta_param(g, buf, 90, 2, (int64_t[]){ 4, 8 }) == NULL &&
                                                   porta_graph_status(g) == PORTA_ERR_SHAPE);
    porta_graph_free(g);

    const struct { const char *what; int ndim; int64_t shape[4]; } bad_shapes[] = {
        { "zero-size dim", 2, { 3, 0 } }, { "negative dim", 2, { -1, 4 } }, { "too many dims", 7, { 1, 1, 1, 1 } },
    };
    for (size_t i = 0; i < sizeof bad_shapes / sizeof bad_shapes[0]; i++) {
        CHECK_OK(porta_graph_new(&g));
        EXPECT(&ck, bad_shapes[i].what,
               porta_input(g, "x", bad_shapes[i].ndim, bad_shapes[i].shape) == NULL &&
                   porta_graph_status(g) == PORTA_ERR_SHAPE);
        porta_graph_free(g);
    }

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 3, (int64_t[]){ 2, 3, 5 });
    EXPECT(&ck, "add with a non-suffix shape",
           porta_add(g, x, porta_input(g, "b", 1, (int64_t[]){ 3 })) == NULL && porta_graph_status(g) == PORTA_ERR_SHAPE);
    porta_graph_free(g);

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 3, (int64_t[]){ 2, 3, 5 });
    EXPECT(&ck, "swiglu with an odd last dim", porta_swiglu(g, x) == NULL && porta_graph_status(g) == PORTA_ERR_SHAPE);
    porta_graph_free(g);

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 3, (int64_t[]){ 2, 3, 5 });
    EXPECT(&ck, "reshape to a different element count",
           porta_reshape(g, x, 2, (int64_t[]){ 7, 4 }) == NULL && porta_graph_status(g) == PORTA_ERR_SHAPE);
    porta_graph_free(g);

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 3, (int64_t[]){ 2, 3, 5 });
    EXPECT(&ck, "permute with a repeated axis",
           porta_permute(g, x, (int[]){ 0, 0, 1 }) == NULL && porta_graph_status(g) == PORTA_ERR_ARG);
    porta_graph_free(g);

    /* porta_mixture_sample: parameters of one shape, a key of 4, a repeat
     * of at least 1; a backend without the op refuses the program. */
    EXPECT(&ck, "mixture_sample with parameters of different shapes", sample_refused(23, 4, 1));
    EXPECT(&ck, "mixture_sample with a key of 3 elements", sample_refused(24, 3, 1));
    EXPECT(&ck, "mixture_sample repeated 0 times", sample_refused(24, 4, 0));

    porta_kvcache *kv = NULL;
    porta_kvcache_desc kd = { 2, 3, 4, 16, 8, PORTA_F32 };
    porta_kvcache_desc bad = kd;
    bad.max_len = 0;
    EXPECT(&ck, "cache with max_len 0", refused(porta_kvcache_new(be, &bad, &kv), PORTA_ERR_ARG) && !kv);
    CHECK_OK(porta_kvcache_new(be, &kd, &kv));
    EXPECT(&ck, "reset of a row out of range", refused(porta_kvcache_reset(kv, 3), PORTA_ERR_ARG));
    EXPECT(&ck, "truncate beyond the current length", refused(porta_kvcache_truncate(kv, 0, 1), PORTA_ERR_ARG));
    EXPECT(&ck, "copy_row from a row out of range", refused(porta_kvcache_copy_row(kv, -2, 0), PORTA_ERR_ARG));
    EXPECT(&ck, "share_rows onto rows past the last", refused(porta_kvcache_share_rows(kv, 0, 1, 1, 3), PORTA_ERR_ARG));
    EXPECT(&ck, "share_rows onto its own source", refused(porta_kvcache_share_rows(kv, 0, 2, 1, 1), PORTA_ERR_ARG));
    EXPECT(&ck, "share_rows of a NULL cache", refused(porta_kvcache_share_rows(NULL, 0, 1, 1, 1), PORTA_ERR_ARG));

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 4, (int64_t[]){ 3, 2, 5, 8 });
    EXPECT(&ck, "kv_append with the wrong head count",
           porta_kv_append(g, kv, 0, PORTA_KV_K, x) == NULL && porta_graph_status(g) == PORTA_ERR_SHAPE);
    porta_graph_free(g);

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 4, (int64_t[]){ 3, 2, 4, 8 });
    EXPECT(&ck, "kv_append to a layer out of range",
           porta_kv_append(g, kv, 2, PORTA_KV_K, x) == NULL && porta_graph_status(g) == PORTA_ERR_ARG);
    porta_graph_free(g);

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 4, (int64_t[]){ 3, 2, 4, 8 });
    porta_tensor *kc = porta_kv_append(g, kv, 0, PORTA_KV_K, x);
    porta_tensor *vc = porta_kv_append(g, kv, 1, PORTA_KV_V, x);
    EXPECT(&ck, "attention_cached over K and V of different layers",
           porta_attention_cached(g, x, kc, vc, 0.3f) == NULL && porta_graph_status(g) == PORTA_ERR_ARG);
    porta_graph_free(g);

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 4, (int64_t[]){ 3, 2, 4, 8 });
    kc = porta_kv_append(g, kv, 0, PORTA_KV_K, x);
    vc = porta_kv_append(g, kv, 0, PORTA_KV_V, x);
    CHECK_OK(porta_output(g, porta_attention_cached(g, x, kc, vc, 0.3f)));
    CHECK_OK(porta_compile(g, be, &p));
    float in[3 * 2 * 4 * 8] = { 0 };
    EXPECT(&ck, "run with NULL inputs", refused(porta_run(p, &(porta_step){ .n_new = 1 }), PORTA_ERR_ARG));
    EXPECT(&ck, "run with n_new 0",
           refused(porta_run(p, &(porta_step){ .n_new = 0, .inputs = (const float *const[]){ in } }), PORTA_ERR_ARG));
    EXPECT(&ck, "run with n_new above the chunk",
           refused(porta_run(p, &(porta_step){ .n_new = 3, .inputs = (const float *const[]){ in } }), PORTA_ERR_ARG));
    EXPECT(&ck, "run with a NULL step", refused(porta_run(p, NULL), PORTA_ERR_ARG));
    porta_program_free(p);

    porta_backend *other = open_or_skip("ref");
    EXPECT(&ck, "compiling for a backend that does not hold the cache",
           refused(porta_compile(g, other, &p), PORTA_ERR_ARG));
    porta_backend_close(other);
    porta_graph_free(g);

    CHECK_OK(porta_graph_new(&g));
    x = porta_input(g, "x", 2, (int64_t[]){ 4, 8 });
    EXPECT(&ck, "compiling a graph with no outputs", refused(porta_compile(g, be, &p), PORTA_ERR_ARG));
    porta_graph_free(g);

    porta_kvcache_free(kv);
    porta_buffer_free(buf);
    porta_backend_close(be);
    return checker_exit(&ck);
}
