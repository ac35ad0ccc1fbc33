/* Programs: a graph compiled once for one backend, replayed at every step. */
#ifndef PORTA_PROGRAM_H
#define PORTA_PROGRAM_H

#include <stdint.h>
#include <stddef.h>
#include "porta/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct porta_program porta_program;

/* Plans memory, uploads nothing per step, and captures (CUDA) or records
 * (Vulkan) the program exactly once. The graph may be freed afterwards. */
porta_status porta_compile(porta_graph *g, porta_backend *be, porta_program **out);
void porta_program_free(porta_program *p);

typedef struct porta_step {
    /* Rows appended to every cache row this step (1..T). */
    int n_new;
    /* Optional per-row counts (0..T each) instead of n_new: a row with 0 is
     * left as it is. NULL: every row appends n_new. */
    const int32_t *row_new;
    /* One host pointer per input, declaration order; read before porta_run
     * returns. */
    const float *const *inputs;
    /* One host pointer per output, marking order (entries may be NULL); filled
     * by the time porta_program_wait returns. */
    float *const *outputs;
} porta_step;

/* Enqueues one replay. Checks the cache first: a row that would pass max_len
 * fails with PORTA_ERR_OVERFLOW and nothing is enqueued. Then writes positions
 * and counts into the replay's step block, advances the cache's host lengths
 * and submits. It may return before the device has finished; back-to-back
 * calls without waiting are safe. */
porta_status porta_run(porta_program *p, const porta_step *step);
/* Waits for every submitted replay; outputs are then in place. */
porta_status porta_program_wait(porta_program *p);

typedef struct porta_program_stats {
    uint64_t compiles;  /* 1 for every program */
    uint64_t captures;  /* CUDA graphs captured */
    uint64_t records;   /* Vulkan command buffers recorded */
    uint64_t replays;   /* porta_run calls that submitted */
    uint64_t nodes;     /* kernels in the program */
    uint64_t prefetches; /* launches beside them that read weights into the GPU's L2
                          * cache ahead of the linears (hints: results never depend on them) */
    uint64_t chained;   /* Vulkan: nodes that wait for the dispatches before them
                         * in-shader instead of behind a pipeline barrier (PORTA_VK_CHAIN) */
    uint64_t arena_bytes; /* planned intermediate memory */
    uint64_t naive_bytes; /* the same without reuse */
} porta_program_stats;
porta_status porta_program_stats_get(const porta_program *p, porta_program_stats *st);

/* A debug twin of porta_compile for cross-backend tracing: every node's result
 * is also read back, as extra outputs after the graph's own (the normal
 * program is unchanged; this one keeps every intermediate alive). */
porta_status porta_compile_traced(porta_graph *g, porta_backend *be, porta_program **out);

typedef struct porta_node_info {
    const char *name;  /* the node's name (porta_name, or "op.id") */
    const char *op;    /* op name, as in every backend's file stems */
    int output;        /* its output slot */
    int ndim;
    int64_t shape[PORTA_MAX_DIMS];
    int n_inputs;
    int inputs[4];     /* trace index of each input's producer, -1 for a leaf */
} porta_node_info;
/* Nodes a traced program reads back, in execution order. */
int porta_program_n_traced(const porta_program *p);
porta_status porta_program_node_info(const porta_program *p, int i, porta_node_info *info);

int porta_program_n_inputs(const porta_program *p);
int porta_program_n_outputs(const porta_program *p);
/* Element count of input / output i. */
int64_t porta_program_input_numel(const porta_program *p, int i);
int64_t porta_program_output_numel(const porta_program *p, int i);

#ifdef __cplusplus
}
#endif
#endif
