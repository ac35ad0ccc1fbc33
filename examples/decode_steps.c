/* A small decoder run step by step with a KV cache: one program, compiled
 * once, replayed at every position. Prints each step and the program's
 * statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "decoder.h"

static int fail(const char *what, porta_status s)
{
    fprintf(stderr, "decode_steps: %s: %s: %s\n", what, porta_status_name(s), porta_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const char *backend = "cpu";
    int steps = 32, rows = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: decode_steps [--backend NAME] [--steps N] [--rows N]\n"
                   "  Runs a 4-layer, 256-wide decoder one position per step with a KV cache,\n"
                   "  replaying one compiled program, and prints per-step output norms and the\n"
                   "  program's statistics (compiles, replays). NAME: cpu (default), ref, cuda,\n"
                   "  vulkan, auto.\n");
            return 0;
        } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--rows") && i + 1 < argc) {
            rows = atoi(argv[++i]);
        } else {
            fprintf(stderr, "decode_steps: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (steps < 1 || rows < 1) {
        fprintf(stderr, "decode_steps: --steps and --rows must be positive\n");
        return 2;
    }
    porta_backend *be;
    porta_status s = porta_backend_open(backend, &be);
    if (s != PORTA_OK) return fail("opening the backend", s);
    printf("backend: %s (%s)\n", porta_backend_kind(be), porta_backend_device(be));

    dec_config c = { 4, 256, 8, 512, 1 };
    dec_weights *w;
    porta_kvcache *kv;
    porta_graph *g;
    porta_program *p;
    porta_kvcache_desc kd = { c.layers, rows, c.heads, steps, c.embed / c.heads, PORTA_F32 };
    if ((s = dec_weights_new(be, &c, 1, &w)) != PORTA_OK) return fail("weights", s);
    if ((s = porta_kvcache_new(be, &kd, &kv)) != PORTA_OK) return fail("KV cache", s);
    if ((s = porta_graph_new(&g)) != PORTA_OK) return fail("graph", s);
    porta_tensor *x = porta_input(g, "x", 3, (int64_t[]){ rows, 1, c.embed });
    if ((s = porta_output(g, dec_build(g, w, kv, x))) != PORTA_OK) return fail("building the graph", s);
    if ((s = porta_compile(g, be, &p)) != PORTA_OK) return fail("compiling", s);
    printf("model: %d layers, width %d, %d heads, %lld parameters; cache of %d positions x %d rows\n\n", c.layers,
           c.embed, c.heads, (long long)dec_param_count(&c), steps, rows);

    float *in = malloc((size_t)rows * c.embed * sizeof *in), *out = malloc((size_t)rows * c.embed * sizeof *out);
    printf("%6s %10s %14s\n", "step", "position", "|y| of row 0");
    for (int t = 0; t < steps; t++) {
        for (int i = 0; i < rows * c.embed; i++) in[i] = sinf(0.1f * (float)(t + 1) * (float)(i % 17 + 1));
        porta_step st = { .n_new = 1, .inputs = (const float *const[]){ in }, .outputs = (float *const[]){ out } };
        if ((s = porta_run(p, &st)) != PORTA_OK || (s = porta_program_wait(p)) != PORTA_OK) return fail("running", s);
        double n2 = 0;
        for (int i = 0; i < c.embed; i++) n2 += (double)out[i] * out[i];
        int len;
        porta_kvcache_length(kv, 0, &len);
        if (t < 4 || t == steps - 1 || t % 8 == 0) printf("%6d %10d %14.6f\n", t, len - 1, sqrt(n2));
    }
    porta_program_stats ps;
    porta_program_stats_get(p, &ps);
    printf("\nprogram: %llu compile, %llu captures, %llu recordings, %llu replays, %llu kernels, arena %.1f KiB "
           "(%.1f KiB without reuse)\n",
           (unsigned long long)ps.compiles, (unsigned long long)ps.captures, (unsigned long long)ps.records,
           (unsigned long long)ps.replays, (unsigned long long)ps.nodes, ps.arena_bytes / 1024.0,
           ps.naive_bytes / 1024.0);
    free(in);
    free(out);
    porta_program_free(p);
    porta_graph_free(g);
    porta_kvcache_free(kv);
    dec_weights_free(w);
    porta_backend_close(be);
    return 0;
}
