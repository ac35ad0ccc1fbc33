/* Program invariants on one backend (argv[1]), with a 2-layer decoder and a KV
 * cache:
 *  - 300 steps of one new row per step, rows joining at different steps, equal
 *    a from-scratch full recompute of every row's sequence (ref backend, no
 *    cache, causal attention) within 2e-5 (float32 through two layers against
 *    float64; RoPE angles in float32 lose ~1e-5 at position 300);
 *  - chunks of 1..8 rows per step, per-row counts, same comparison;
 *  - xPos RoPE (whose centre depends on the chunking) against the ref backend
 *    run with the same chunking;
 *  - exactly one compile (and one capture or recording on GPU backends) for
 *    hundreds of replays;
 *  - resetting one row changes no other row's output, bit for bit;
 *  - 64 replays enqueued without waiting equal 64 synchronised ones, bit for bit;
 *  - GPU backends: L2 prefetches of weights change no output, bit for bit,
 *    and a malformed prefetch setting is refused; on Vulkan the same for
 *    nodes chained without barriers (PORTA_VK_CHAIN), and on lavapipe a
 *    deliberately low chain target is reported;
 *  - a full cache is refused before the replay, and truncation recovers;
 *  - a prefix prefilled once on row 0 by a one-row program and copied to the
 *    other rows (porta_kvcache_copy_row), or shared with them
 *    (porta_kvcache_share_rows), decodes like rows that each prefilled it
 *    themselves; a shared prefix cannot be overwritten while shared. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "decoder.h"
#include "testutil.h"

enum { LAYERS = 2, E = 64, H = 4, F = 96, ROWS = 3 };

typedef struct model {
    porta_backend *be;
    dec_weights *w;
    porta_kvcache *kv;
    porta_graph *g;
    porta_program *p;
    int chunk;
} model;

static void model_open(model *m, porta_backend *be, int chunk, int max_len, int xpos)
{
    memset(m, 0, sizeof *m);
    m->be = be;
    m->chunk = chunk;
    dec_config c = { LAYERS, E, H, F, xpos };
    CHECK_OK(dec_weights_new(be, &c, 42, &m->w));
    porta_kvcache_desc kd = { LAYERS, ROWS, H, max_len, E / H, PORTA_F32 };
    CHECK_OK(porta_kvcache_new(be, &kd, &m->kv));
    CHECK_OK(porta_graph_new(&m->g));
    porta_tensor *x = porta_input(m->g, "x", 3, (int64_t[]){ ROWS, chunk, E });
    CHECK_OK(porta_output(m->g, dec_build(m->g, m->w, m->kv, x)));
    CHECK_OK(porta_compile(m->g, be, &m->p));
}

static void model_close(model *m)
{
    porta_program_free(m->p);
    porta_graph_free(m->g);
    porta_kvcache_free(m->kv);
    dec_weights_free(m->w);
}

/* Per-row histories: inputs fed and outputs returned, by position. */
typedef struct history {
    int len[ROWS];
    float *in, *out; /* [ROWS][cap][E] */
    int cap;
} history;

static void history_init(history *h, int cap)
{
    memset(h, 0, sizeof *h);
    h->cap = cap;
    h->in = calloc((size_t)ROWS * cap * E, sizeof(float));
    h->out = calloc((size_t)ROWS * cap * E, sizeof(float));
}

static void history_free(history *h)
{
    free(h->in);
    free(h->out);
}

/* A schedule: how many rows each sequence appends at step s. */
typedef void (*schedule)(int s, int chunk, int32_t *row_new);

static void one_per_step(int s, int chunk, int32_t *n)
{
    (void)chunk;
    for (int b = 0; b < ROWS; b++) n[b] = s >= 5 * b ? 1 : 0; /* row b joins at step 5b */
}

static void chunks_1_to_8(int s, int chunk, int32_t *n)
{
    for (int b = 0; b < ROWS; b++) n[b] = (s + 3 * b) % (chunk + 1); /* 0..chunk, out of phase */
}

/* Runs steps on m, recording each row's inputs and outputs by position;
 * before step reset_at, forgets row reset_row. */
static void drive_reset(model *m, int steps, schedule sch, uint64_t seed, history *h, int reset_at, int reset_row)
{
    rng r = { seed };
    float *x = malloc((size_t)ROWS * m->chunk * E * sizeof(float));
    float *y = malloc((size_t)ROWS * m->chunk * E * sizeof(float));
    int32_t n[ROWS];
    for (int s = 0; s < steps; s++) {
        if (s == reset_at) {
            CHECK_OK(porta_kvcache_reset(m->kv, reset_row));
            h->len[reset_row] = 0;
        }
        sch(s, m->chunk, n);
        fill_random(&r, x, (int64_t)ROWS * m->chunk * E, 1.0f);
        fill_nan(y, (int64_t)ROWS * m->chunk * E);
        porta_step st = { .row_new = n, .inputs = (const float *const[]){ x }, .outputs = (float *const[]){ y } };
        CHECK_OK(porta_run(m->p, &st));
        CHECK_OK(porta_program_wait(m->p));
        for (int b = 0; b < ROWS; b++)
            for (int i = 0; i < n[b]; i++) {
                int p = h->len[b]++;
                memcpy(h->in + ((size_t)b * h->cap + p) * E, x + ((size_t)b * m->chunk + i) * E, E * sizeof(float));
                memcpy(h->out + ((size_t)b * h->cap + p) * E, y + ((size_t)b * m->chunk + i) * E, E * sizeof(float));
            }
    }
    free(x);
    free(y);
}

static void drive(model *m, int steps, schedule sch, uint64_t seed, history *h)
{
    drive_reset(m, steps, sch, seed, h, -1, 0);
}

/* Full recompute of every row's whole sequence on the ref backend: one
 * program, causal attention, positions 0..len-1, no cache. */
static void full_recompute(const history *h, float *out)
{
    porta_backend *ref = open_or_skip("ref");
    dec_config c = { LAYERS, E, H, F, 0 };
    dec_weights *w;
    CHECK_OK(dec_weights_new(ref, &c, 42, &w));
    porta_graph *g;
    CHECK_OK(porta_graph_new(&g));
    porta_tensor *x = porta_input(g, "x", 3, (int64_t[]){ ROWS, h->cap, E });
    CHECK_OK(porta_output(g, dec_build(g, w, NULL, x)));
    porta_program *p;
    CHECK_OK(porta_compile(g, ref, &p));
    porta_step st = { .n_new = h->cap, .inputs = (const float *const[]){ h->in }, .outputs = (float *const[]){ out } };
    CHECK_OK(porta_run(p, &st));
    CHECK_OK(porta_program_wait(p));
    porta_program_free(p);
    porta_graph_free(g);
    dec_weights_free(w);
    porta_backend_close(ref);
}

static void compare_rows(checker *ck, const char *what, const history *h, const float *want, double tol)
{
    double worst = 0;
    int ok = 1;
    for (int b = 0; b < ROWS; b++) {
        char name[160];
        snprintf(name, sizeof name, "%s: row %d, %d positions", what, b, h->len[b]);
        errstat e = compare(h->out + (size_t)b * h->cap * E, want + (size_t)b * h->cap * E, (int64_t)h->len[b] * E);
        if (e.rel_l2 > worst) worst = e.rel_l2;
        ok &= check_close(ck, name, h->out + (size_t)b * h->cap * E, want + (size_t)b * h->cap * E,
                          (int64_t)h->len[b] * E, tol);
    }
    (void)ok;
}

static void test_against_full(checker *ck, porta_backend *be, int chunk, int steps, schedule sch, const char *what)
{
    model m;
    history h;
    history_init(&h, 310);
    model_open(&m, be, chunk, 310, 0);
    drive(&m, steps, sch, 7, &h);
    float *want = calloc((size_t)ROWS * h.cap * E, sizeof(float));
    /* Positions past a row's length are padding; any finite value will do. */
    for (int b = 0; b < ROWS; b++)
        for (int64_t i = (int64_t)h.len[b] * E; i < (int64_t)h.cap * E; i++) h.in[(size_t)b * h.cap * E + i] = 0.25f;
    full_recompute(&h, want);
    compare_rows(ck, what, &h, want, 2e-5);
    porta_program_stats st;
    CHECK_OK(porta_program_stats_get(m.p, &st));
    char line[200];
    snprintf(line, sizeof line, "%s: compiles %llu, captures %llu, records %llu, replays %llu", what,
             (unsigned long long)st.compiles, (unsigned long long)st.captures, (unsigned long long)st.records,
             (unsigned long long)st.replays);
    int gpu = !strcmp(porta_backend_kind(be), "cuda") || !strcmp(porta_backend_kind(be), "vulkan");
    check_true(ck, line,
               st.compiles == 1 && st.replays == (uint64_t)steps && st.captures + st.records == (gpu ? 1u : 0u));
    printf("     planned arena %llu bytes (%llu without reuse), %llu kernels\n", (unsigned long long)st.arena_bytes,
           (unsigned long long)st.naive_bytes, (unsigned long long)st.nodes);
    free(want);
    model_close(&m);
    history_free(&h);
}

static void test_xpos_same_chunking(checker *ck, porta_backend *be)
{
    porta_backend *ref = open_or_skip("ref");
    model m, r;
    history hm, hr;
    history_init(&hm, 500);
    history_init(&hr, 500);
    model_open(&m, be, 8, 500, 1);
    model_open(&r, ref, 8, 500, 1);
    drive(&m, 60, chunks_1_to_8, 11, &hm);
    drive(&r, 60, chunks_1_to_8, 11, &hr);
    compare_rows(ck, "xPos, chunks 0..8, vs ref with the same chunking", &hm, hr.out, 2e-5);
    model_close(&m);
    model_close(&r);
    history_free(&hm);
    history_free(&hr);
    porta_backend_close(ref);
}

/* Two identical runs, the second resetting row 1 half way: rows 0 and 2 must
 * not notice. */
static void test_reset_isolation(checker *ck, porta_backend *be)
{
    model a, b;
    history ha, hb;
    history_init(&ha, 100);
    history_init(&hb, 100);
    model_open(&a, be, 1, 100, 1);
    model_open(&b, be, 1, 100, 1);
    drive(&a, 40, one_per_step, 5, &ha);
    drive_reset(&b, 40, one_per_step, 5, &hb, 20, 1);
    int same = 1;
    for (int row = 0; row < ROWS; row += 2)
        same &= ha.len[row] == hb.len[row] &&
                !memcmp(ha.out + (size_t)row * ha.cap * E, hb.out + (size_t)row * hb.cap * E,
                        (size_t)ha.len[row] * E * sizeof(float));
    check_true(ck, "reset of row 1 leaves rows 0 and 2 bit-identical", same);
    int len1;
    CHECK_OK(porta_kvcache_length(b.kv, 1, &len1));
    check_true(ck, "reset row 1 restarted from position 0", len1 == 20 && hb.len[1] == 20);
    model_close(&a);
    model_close(&b);
    history_free(&ha);
    history_free(&hb);
}

static void test_async(checker *ck, porta_backend *be)
{
    enum { N = 64 };
    model a, b;
    model_open(&a, be, 1, 80, 1);
    model_open(&b, be, 1, 80, 1);
    rng r = { 3 };
    float *x = malloc((size_t)N * ROWS * E * sizeof(float));
    float *ya = malloc((size_t)N * ROWS * E * sizeof(float)), *yb = malloc((size_t)N * ROWS * E * sizeof(float));
    fill_random(&r, x, (int64_t)N * ROWS * E, 1.0f);
    fill_nan(ya, (int64_t)N * ROWS * E);
    fill_nan(yb, (int64_t)N * ROWS * E);
    for (int s = 0; s < N; s++) {
        porta_step st = { .n_new = 1, .inputs = (const float *const[]){ x + (size_t)s * ROWS * E },
                          .outputs = (float *const[]){ ya + (size_t)s * ROWS * E } };
        CHECK_OK(porta_run(a.p, &st));
    }
    CHECK_OK(porta_program_wait(a.p));
    for (int s = 0; s < N; s++) {
        porta_step st = { .n_new = 1, .inputs = (const float *const[]){ x + (size_t)s * ROWS * E },
                          .outputs = (float *const[]){ yb + (size_t)s * ROWS * E } };
        CHECK_OK(porta_run(b.p, &st));
        CHECK_OK(porta_program_wait(b.p));
    }
    int finite = 1;
    for (int64_t i = 0; i < (int64_t)N * ROWS * E; i++) finite &= isfinite(ya[i]) != 0;
    check_true(ck, "64 unsynchronised replays equal 64 synchronised ones, bit for bit",
               finite && !memcmp(ya, yb, (size_t)N * ROWS * E * sizeof(float)));
    free(x);
    free(ya);
    free(yb);
    model_close(&a);
    model_close(&b);
}

/* Sets var to val (NULL: unset) and returns its previous value (to free). */
static char *env_swap(const char *var, const char *val)
{
    const char *was = getenv(var);
    char *saved = was ? strdup(was) : NULL;
    if (val) setenv(var, val, 1);
    else unsetenv(var);
    return saved;
}

static void env_restore(const char *var, char *saved)
{
    if (saved) setenv(var, saved, 1);
    else unsetenv(var);
    free(saved);
}

typedef uint64_t (*stat_fn)(const porta_program_stats *);
static uint64_t stat_prefetches(const porta_program_stats *st) { return st->prefetches; }
static uint64_t stat_chained(const porta_program_stats *st) { return st->chained; }

/* Replays N steps on two programs, a on be and b on be2, and checks that
 * their outputs are finite and equal bit for bit and that the statistic
 * is zero on exactly one side. */
static void compare_switched(checker *ck, porta_backend *be, porta_backend *be2, stat_fn stat, const char *what)
{
    model a, b;
    model_open(&a, be, 1, 80, 1);
    model_open(&b, be2, 1, 80, 1);
    porta_program_stats sa, sb;
    CHECK_OK(porta_program_stats_get(a.p, &sa));
    CHECK_OK(porta_program_stats_get(b.p, &sb));
    enum { N = 40 };
    rng r = { 5 };
    size_t n = (size_t)N * ROWS * E;
    float *x = malloc(n * sizeof(float)), *ya = malloc(n * sizeof(float)), *yb = malloc(n * sizeof(float));
    fill_random(&r, x, (int64_t)n, 1.0f);
    fill_nan(ya, (int64_t)n);
    fill_nan(yb, (int64_t)n);
    for (int s = 0; s < N; s++) {
        const float *const in[] = { x + (size_t)s * ROWS * E };
        CHECK_OK(porta_run(a.p, &(porta_step){ .n_new = 1, .inputs = in, .outputs = (float *const[]){ ya + (size_t)s * ROWS * E } }));
        CHECK_OK(porta_run(b.p, &(porta_step){ .n_new = 1, .inputs = in, .outputs = (float *const[]){ yb + (size_t)s * ROWS * E } }));
    }
    CHECK_OK(porta_program_wait(a.p));
    CHECK_OK(porta_program_wait(b.p));
    int finite = 1;
    for (size_t i = 0; i < n; i++) finite &= isfinite(ya[i]) != 0;
    char line[200];
    snprintf(line, sizeof line, "%s (%llu against %llu a replay) change no output, bit for bit", what,
             (unsigned long long)stat(&sa), (unsigned long long)stat(&sb));
    check_true(ck, line, finite && (stat(&sa) == 0) != (stat(&sb) == 0) && !memcmp(ya, yb, n * sizeof(float)));
    free(x);
    free(ya);
    free(yb);
    model_close(&a);
    model_close(&b);
}

/* A second instance of the backend with var switched the other way (off by
 * default, or as the caller's environment has it) gives the same outputs;
 * a malformed value is refused with a message naming var. */
static void test_switch(checker *ck, porta_backend *be, const char *name, const char *var, const char *on,
                        stat_fn stat, const char *what)
{
    model a;
    model_open(&a, be, 1, 80, 1);
    porta_program_stats sa;
    CHECK_OK(porta_program_stats_get(a.p, &sa));
    model_close(&a);
    char *saved = env_swap(var, stat(&sa) ? "0" : on);
    porta_backend *be2 = NULL;
    CHECK_OK(porta_backend_open(name, &be2));
    setenv(var, "1x", 1);
    porta_backend *bad = NULL;
    porta_status bs = porta_backend_open(name, &bad);
    char line[160];
    snprintf(line, sizeof line, "a malformed %s setting is refused with a message naming it", var);
    check_true(ck, line, bs == PORTA_ERR_ARG && !bad && strstr(porta_last_error(), var));
    porta_backend_close(bad);
    env_restore(var, saved);
    compare_switched(ck, be, be2, stat, what);
    porta_backend_close(be2);
}

/* GPU backends read the weights of later linears into L2 beside the kernels
 * before them. The reads are hints: a program with them replays bit for bit
 * like one without (a second instance of the backend, the switch flipped),
 * and the program that has them says how many it launches. */
static void test_prefetch(checker *ck, porta_backend *be, const char *name)
{
    const char *kind = porta_backend_kind(be);
    const char *var = !strcmp(kind, "cuda") ? "PORTA_CUDA_L2PF" : !strcmp(kind, "vulkan") ? "PORTA_VK_L2PF" : NULL;
    if (!var) return;
    /* With a window of 1 MiB on Vulkan, so that this small model's linears
     * take several prefetches. */
    char *mb = env_swap("PORTA_VK_L2PF_MB", "1");
    test_switch(ck, be, name, var, !strcmp(kind, "vulkan") ? "3" : "1", stat_prefetches, "L2 prefetches");
    env_restore("PORTA_VK_L2PF_MB", mb);
}

/* Vulkan: GEMVs and rope groups that wait in-shader for the dispatches
 * before them (PORTA_VK_CHAIN=2) give the outputs of barriers, bit for bit.
 * On lavapipe, where every wait finds the dispatches before it done, a chain
 * target one below the planned count must be reported as a miscount, not
 * pass silently (on a GPU a wait could end before the extra count lands). */
static void test_chain(checker *ck, porta_backend *be, const char *name)
{
    if (strcmp(porta_backend_kind(be), "vulkan")) return;
    const char *layers = getenv("VK_LAYER_ENABLES");
    if (layers && strstr(layers, "SYNCHRONIZATION")) {
        printf("skip chained nodes: the synchronization validation layer cannot see waits inside shaders\n");
        return;
    }
    test_switch(ck, be, name, "PORTA_VK_CHAIN", "2", stat_chained, "GEMVs and ropes chained without barriers");
    if (!strstr(porta_backend_device(be), "llvmpipe")) return;
    char *chain = env_swap("PORTA_VK_CHAIN", "2"), *skew = env_swap("PORTA_VK_CHAIN_SKEW", "-1");
    porta_backend *be2 = NULL;
    CHECK_OK(porta_backend_open(name, &be2));
    env_restore("PORTA_VK_CHAIN", chain);
    env_restore("PORTA_VK_CHAIN_SKEW", skew);
    model m;
    model_open(&m, be2, 1, 80, 1);
    float x[ROWS * E], y[ROWS * E];
    rng r = { 11 };
    fill_random(&r, x, ROWS * E, 1.0f);
    porta_status s = porta_run(m.p, &(porta_step){ .n_new = 1, .inputs = (const float *const[]){ x },
                                                   .outputs = (float *const[]){ y } });
    if (s == PORTA_OK) s = porta_program_wait(m.p);
    printf("     miscount message: %s\n", s ? porta_last_error() : "(none)");
    check_true(ck, "a chain target below the dispatches' workgroups is reported (PORTA_ERR_DEVICE), not passed",
               s == PORTA_ERR_DEVICE && strstr(porta_last_error(), "counted more workgroups"));
    model_close(&m);
    porta_backend_close(be2);
}

static void test_overflow(checker *ck, porta_backend *be)
{
    model m;
    model_open(&m, be, 4, 10, 0);
    float x[ROWS * 4 * E];
    rng r = { 9 };
    fill_random(&r, x, ROWS * 4 * E, 1.0f);
    porta_step st = { .n_new = 4, .inputs = (const float *const[]){ x }, .outputs = NULL };
    CHECK_OK(porta_run(m.p, &st));
    CHECK_OK(porta_run(m.p, &st));
    porta_status s = porta_run(m.p, &st); /* 8 + 4 > 10 */
    int len;
    CHECK_OK(porta_kvcache_length(m.kv, 0, &len));
    printf("     overflow message: %s\n", porta_last_error());
    check_true(ck, "a step past max_len is refused with PORTA_ERR_OVERFLOW and a message, cache untouched",
               s == PORTA_ERR_OVERFLOW && strstr(porta_last_error(), "overflow") && len == 8);
    st.n_new = 2;
    check_true(ck, "a step that fits exactly still runs", porta_run(m.p, &st) == PORTA_OK);
    CHECK_OK(porta_program_wait(m.p));
    CHECK_OK(porta_kvcache_truncate(m.kv, 0, 3));
    st.row_new = (const int32_t[]){ 4, 0, 0 };
    check_true(ck, "after truncating row 0 to 3 it takes 4 more", porta_run(m.p, &st) == PORTA_OK);
    CHECK_OK(porta_program_wait(m.p));
    st.row_new = (const int32_t[]){ 0, 9, 0 };
    check_true(ck, "a per-row count above the chunk is refused", porta_run(m.p, &st) == PORTA_ERR_ARG);
    model_close(&m);
}

/* A decoder program over the first `batch` rows of a shared cache. */
static porta_program *program_on(const model *m, int batch, int chunk)
{
    porta_graph *g;
    porta_program *p;
    CHECK_OK(porta_graph_new(&g));
    porta_tensor *x = porta_input(g, "x", 3, (int64_t[]){ batch, chunk, E });
    CHECK_OK(porta_output(g, dec_build(g, m->w, m->kv, x)));
    CHECK_OK(porta_compile(g, m->be, &p));
    porta_graph_free(g);
    return p;
}

/* share: rows 1.. share row 0's prefix (porta_kvcache_share_rows) instead
 * of copying it (porta_kvcache_copy_row). */
static void test_shared_prefix(checker *ck, porta_backend *be, int share)
{
    enum { PRE = 8, DEC = 12 };
    model a, b; /* a: prefill row 0 and copy or share; b: every row prefills itself */
    model_open(&a, be, 1, 64, 1);
    model_open(&b, be, PRE, 64, 1);
    porta_program *pre1 = program_on(&a, 1, PRE);
    rng r = { 77 };
    float pre[ROWS * PRE * E], x[ROWS * E], ya[ROWS * E], yb[ROWS * E];
    fill_random(&r, pre, PRE * E, 1.0f);
    for (int row = 1; row < ROWS; row++) memcpy(pre + (size_t)row * PRE * E, pre, PRE * E * sizeof(float));
    CHECK_OK(porta_run(pre1, &(porta_step){ .n_new = PRE, .inputs = (const float *const[]){ pre } }));
    if (share) CHECK_OK(porta_kvcache_share_rows(a.kv, 0, 1, 1, ROWS - 1));
    else
        for (int row = 1; row < ROWS; row++) CHECK_OK(porta_kvcache_copy_row(a.kv, 0, row));
    CHECK_OK(porta_run(b.p, &(porta_step){ .n_new = PRE, .inputs = (const float *const[]){ pre } }));
    porta_program *decb = program_on(&b, ROWS, 1);
    int same = 1;
    for (int s = 0; s < DEC; s++) {
        fill_random(&r, x, ROWS * E, 1.0f);
        fill_nan(ya, ROWS * E);
        fill_nan(yb, ROWS * E);
        CHECK_OK(porta_run(a.p, &(porta_step){ .n_new = 1, .inputs = (const float *const[]){ x },
                                                .outputs = (float *const[]){ ya } }));
        CHECK_OK(porta_run(decb, &(porta_step){ .n_new = 1, .inputs = (const float *const[]){ x },
                                                 .outputs = (float *const[]){ yb } }));
        CHECK_OK(porta_program_wait(a.p));
        CHECK_OK(porta_program_wait(decb));
        for (int i = 0; i < ROWS * E; i++) same &= isfinite(ya[i]) && fabsf(ya[i] - yb[i]) <= 1e-5f * (1 + fabsf(yb[i]));
    }
    int len;
    CHECK_OK(porta_kvcache_length(a.kv, 2, &len));
    check_true(ck,
               share ? "prefix prefilled once on row 0 and shared with rows 1, 2 decodes like rows that prefilled it"
                     : "prefix prefilled once on row 0 and copied to rows 1, 2 decodes like rows that prefilled it",
               same && len == PRE + DEC);
    porta_step bad = { .row_new = (const int32_t[]){ 1, 1, 0 }, .inputs = (const float *const[]){ pre } };
    check_true(ck, "a one-row program refuses to append to row 1", porta_run(pre1, &bad) == PORTA_ERR_ARG);
    if (share) {
        /* Row 0 holds the prefix rows 1 and 2 read: it may not rewrite it,
         * nor be copied over, nor share onward a prefix it holds. */
        CHECK_OK(porta_kvcache_truncate(a.kv, 0, PRE - 1));
        check_true(ck, "a row whose prefix others share refuses appends inside it",
                   porta_run(a.p, &(porta_step){ .n_new = 1, .inputs = (const float *const[]){ x } }) == PORTA_ERR_ARG);
        check_true(ck, "a copy onto a row whose prefix others share is refused",
                   porta_kvcache_copy_row(a.kv, 1, 0) == PORTA_ERR_ARG);
        check_true(ck, "a row that shares a prefix cannot be shared onward",
                   porta_kvcache_share_rows(a.kv, 1, 1, 2, 1) == PORTA_ERR_ARG);
        CHECK_OK(porta_kvcache_reset(a.kv, 1));
        CHECK_OK(porta_kvcache_reset(a.kv, 2));
        check_true(ck, "once its sharers are reset, the row appends again",
                   porta_run(a.p, &(porta_step){ .n_new = 1, .inputs = (const float *const[]){ x } }) == PORTA_OK);
        CHECK_OK(porta_program_wait(a.p));
        /* Row 0 sharing the prefix of row 1 (its copy): the one-row program
         * does not cover row 1. */
        CHECK_OK(porta_kvcache_copy_row(a.kv, 0, 1));
        CHECK_OK(porta_kvcache_reset(a.kv, 0));
        CHECK_OK(porta_kvcache_share_rows(a.kv, 1, 1, 0, 1));
        check_true(ck, "a program refuses rows that share the prefix of a row it does not cover",
                   porta_run(pre1, &(porta_step){ .n_new = 1, .inputs = (const float *const[]){ pre } }) ==
                       PORTA_ERR_ARG);
    }
    porta_program_free(pre1);
    porta_program_free(decb);
    model_close(&a);
    model_close(&b);
}

static porta_program *program_kv(const dec_weights *w, porta_kvcache *kv, porta_backend *be, int batch, int chunk)
{
    porta_graph *g;
    porta_program *p;
    CHECK_OK(porta_graph_new(&g));
    porta_tensor *x = porta_input(g, "x", 3, (int64_t[]){ batch, chunk, E });
    CHECK_OK(porta_output(g, dec_build(g, w, kv, x)));
    CHECK_OK(porta_compile(g, be, &p));
    porta_graph_free(g);
    return p;
}

/* Two prefilled rows copied 5 times with porta_kvcache_copy_rows (a first
 * copy, two doublings and a partial one): every copy then decodes the same
 * inputs as its source row to the same outputs. */
static void test_copy_rows(checker *ck, porta_backend *be)
{
    enum { N = 2, COPIES = 5, KR = N * (1 + COPIES), PRE = 6, DEC = 4 };
    dec_config c = { LAYERS, E, H, F, 1 };
    dec_weights *w;
    porta_kvcache *kv;
    CHECK_OK(dec_weights_new(be, &c, 42, &w));
    CHECK_OK(porta_kvcache_new(be, &(porta_kvcache_desc){ LAYERS, KR, H, 32, E / H, PORTA_F32 }, &kv));
    porta_program *pre = program_kv(w, kv, be, N, PRE), *dec = program_kv(w, kv, be, KR, 1);
    rng r = { 91 };
    float xp[N * PRE * E], x[KR * E], y[KR * E];
    fill_random(&r, xp, N * PRE * E, 1.0f);
    CHECK_OK(porta_run(pre, &(porta_step){ .n_new = PRE, .inputs = (const float *const[]){ xp } }));
    CHECK_OK(porta_kvcache_copy_rows(kv, 0, N, N, COPIES));
    int same = 1, lens = 1;
    for (int row = 0; row < KR; row++) {
        int len;
        CHECK_OK(porta_kvcache_length(kv, row, &len));
        lens &= len == PRE;
    }
    for (int s = 0; s < DEC; s++) {
        fill_random(&r, x, N * E, 1.0f);
        for (int row = N; row < KR; row++) memcpy(x + (size_t)row * E, x + (size_t)(row % N) * E, E * sizeof(float));
        fill_nan(y, KR * E);
        CHECK_OK(porta_run(dec, &(porta_step){ .n_new = 1, .inputs = (const float *const[]){ x },
                                                .outputs = (float *const[]){ y } }));
        CHECK_OK(porta_program_wait(dec));
        /* Same data through the same kernels: only the batch position differs,
         * which may change a blocked kernel's summation order. */
        for (int row = N; row < KR; row++)
            for (int i = 0; i < E; i++) {
                float a = y[(size_t)row * E + i], b = y[(size_t)(row % N) * E + i];
                same &= isfinite(a) && fabsf(a - b) <= 1e-5f * (1 + fabsf(b));
            }
    }
    check_true(ck, "rows 0, 1 copied 5 times by porta_kvcache_copy_rows keep their lengths and decode like the source",
               same && lens);
    check_true(ck, "porta_kvcache_copy_rows refuses a destination overlapping its source",
               porta_kvcache_copy_rows(kv, 0, N, 1, 2) == PORTA_ERR_ARG);
    check_true(ck, "porta_kvcache_copy_rows refuses copies past the last row",
               porta_kvcache_copy_rows(kv, 0, N, N, COPIES + 1) == PORTA_ERR_ARG);
    porta_program_free(pre);
    porta_program_free(dec);
    porta_kvcache_free(kv);
    dec_weights_free(w);
}

/* A traced twin of the decoder program reads back every node; each agrees
 * with the ref backend's, and inputs point at their producers. */
static void test_trace(checker *ck, porta_backend *be)
{
    porta_backend *ref = open_or_skip("ref");
    model m[2];
    porta_program *tp[2];
    porta_backend *bes[2] = { be, ref };
    float *out[2][128];
    int n = 0;
    rng r = { 5 };
    float x[ROWS * 4 * E];
    fill_random(&r, x, ROWS * 4 * E, 1.0f);
    for (int k = 0; k < 2; k++) {
        model_open(&m[k], bes[k], 4, 16, 1);
        CHECK_OK(porta_compile_traced(m[k].g, bes[k], &tp[k]));
        n = porta_program_n_traced(tp[k]);
        int no = porta_program_n_outputs(tp[k]);
        for (int i = 0; i < no && i < 128; i++) {
            out[k][i] = malloc((size_t)porta_program_output_numel(tp[k], i) * sizeof(float));
            fill_nan(out[k][i], porta_program_output_numel(tp[k], i));
        }
        CHECK_OK(porta_run(tp[k], &(porta_step){ .n_new = 3, .inputs = (const float *const[]){ x },
                                                  .outputs = (float *const *)out[k] }));
        CHECK_OK(porta_program_wait(tp[k]));
    }
    /* The traced twin is never fused (every node is read back): it has every
     * node of the graph but the cache writes. */
    porta_program_stats st;
    CHECK_OK(porta_program_stats_get(tp[0], &st));
    int ok = n > 0 && n <= 128, links = 1;
    double worst = 0;
    for (int i = 0; ok && i < n; i++) {
        porta_node_info ni;
        CHECK_OK(porta_program_node_info(tp[0], i, &ni));
        for (int j = 0; j < ni.n_inputs; j++) links &= ni.inputs[j] < i;
        int64_t len = porta_program_output_numel(tp[0], ni.output);
        errstat e = compare(out[0][ni.output], out[1][ni.output], len);
        if (e.rel_l2 > worst) worst = e.rel_l2;
        ok &= e.nonfinite == 0 && e.rel_l2 <= 2e-5;
        if (!(e.nonfinite == 0 && e.rel_l2 <= 2e-5)) printf("     node %d %s (%s): rel_l2 %.2e\n", i, ni.name, ni.op, e.rel_l2);
    }
    char line[160];
    snprintf(line, sizeof line, "traced program: %d nodes read back, each within 2e-5 of ref (worst %.2e)", n, worst);
    check_true(ck, line, ok && (uint64_t)n == st.nodes - 2 * LAYERS); /* every node but the cache writes */
    check_true(ck, "traced inputs point at earlier nodes", links);
    CHECK_OK(porta_program_stats_get(m[0].p, &st));
    check_true(ck, "the normal program is untouched by its traced twin", porta_program_n_traced(m[0].p) == 0 &&
                                                                           porta_program_n_outputs(m[0].p) == 1);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < porta_program_n_outputs(tp[k]) && i < 128; i++) free(out[k][i]);
        porta_program_free(tp[k]);
        model_close(&m[k]);
    }
    porta_backend_close(ref);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: test_program BACKEND\n  program invariants of a 2-layer decoder with a KV cache on BACKEND\n");
        return argc < 2 ? 2 : 0;
    }
    porta_backend *be = open_or_skip(argv[1]);
    checker ck = { 0, 0 };
    test_against_full(&ck, be, 1, 300, one_per_step, "300 steps x 1 row vs full recompute");
    test_against_full(&ck, be, 8, 70, chunks_1_to_8, "chunks 0..8 per row vs full recompute");
    test_xpos_same_chunking(&ck, be);
    test_reset_isolation(&ck, be);
    test_async(&ck, be);
    test_prefetch(&ck, be, argv[1]);
    test_chain(&ck, be, argv[1]);
    test_overflow(&ck, be);
    test_shared_prefix(&ck, be, 0);
    test_shared_prefix(&ck, be, 1);
    test_copy_rows(&ck, be);
    test_trace(&ck, be);
    porta_backend_close(be);
    return checker_exit(&ck);
}
