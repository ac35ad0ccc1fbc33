/* Op names, shared by core, backends and tools. */
#include <stdio.h>
#include "plan.h"

const char *porta_op_name(porta_op op)
{
    static const char *const names[PORTA_OP_COUNT] = {
        [PORTA_OP_COPY] = "copy",           [PORTA_OP_LINEAR] = "linear",
        [PORTA_OP_MATMUL] = "matmul",       [PORTA_OP_ADD] = "add",
        [PORTA_OP_MUL] = "mul",             [PORTA_OP_RMSNORM] = "rmsnorm",
        [PORTA_OP_LAYERNORM] = "layernorm", [PORTA_OP_SILU] = "silu",
        [PORTA_OP_SWIGLU] = "swiglu",       [PORTA_OP_SOFTMAX] = "softmax",
        [PORTA_OP_ROPE] = "rope",           [PORTA_OP_KV_APPEND] = "kv_append",
        [PORTA_OP_ATTN_CACHED] = "attention_cached", [PORTA_OP_ATTN] = "attention",
        [PORTA_OP_LINEAR_FUSED] = "linear_fused",     [PORTA_OP_KV_APPEND_ROPE] = "kv_append_rope",
        [PORTA_OP_MIXTURE_SAMPLE] = "mixture_sample",
    };
    return (op >= 0 && op < PORTA_OP_COUNT) ? names[op] : "?";
}

/* One line per op kind, then the 12 slowest nodes, slowest first. us_sum[i]
 * is node i's time summed over `runs` replays. */
void porta_profile_report(FILE *f, const char *backend, const porta_node *nodes, int n_nodes, const double *us_sum,
                          int runs, const char *note)
{
    if (runs < 3 || n_nodes <= 0) return;
    double total = 0, by_op[PORTA_OP_COUNT] = { 0 };
    int count[PORTA_OP_COUNT] = { 0 };
    for (int i = 0; i < n_nodes; i++) {
        double us = us_sum[i] / runs;
        total += us;
        if (nodes[i].op >= 0 && nodes[i].op < PORTA_OP_COUNT) {
            by_op[nodes[i].op] += us;
            count[nodes[i].op]++;
        }
    }
    fprintf(f, "\nporta %s profile: %d nodes, %.1f us of kernels per replay (mean of %d%s%s)\n", backend, n_nodes,
            total, runs, note && *note ? "; " : "", note ? note : "");
    fprintf(f, "  %-16s %6s %10s %6s %9s\n", "op", "nodes", "us", "%", "us/node");
    for (int o = 0; o < PORTA_OP_COUNT; o++)
        if (count[o])
            fprintf(f, "  %-16s %6d %10.1f %5.1f%% %9.2f\n", porta_op_name((porta_op)o), count[o], by_op[o],
                    total > 0 ? 100 * by_op[o] / total : 0.0, by_op[o] / count[o]);
    int top[12], nt = 0;
    for (; nt < 12 && nt < n_nodes; nt++) {
        int best = -1;
        for (int i = 0; i < n_nodes; i++) {
            int taken = 0;
            for (int k = 0; k < nt; k++) taken |= top[k] == i;
            if (!taken && (best < 0 || us_sum[i] > us_sum[best])) best = i;
        }
        top[nt] = best;
    }
    fprintf(f, "  most expensive nodes:\n");
    for (int k = 0; k < nt; k++) {
        const porta_node *n = &nodes[top[k]];
        char shape[96] = "";
        for (int d = 0, at = 0; d < n->out.ndim && at < (int)sizeof shape - 24; d++)
            at += snprintf(shape + at, sizeof shape - (size_t)at, d ? "x%lld" : "%lld", (long long)n->out.shape[d]);
        fprintf(f, "  %4d %-16s %-28s out %-20s %9.2f us\n", top[k], porta_op_name(n->op), n->name, shape,
                us_sum[top[k]] / runs);
    }
}
