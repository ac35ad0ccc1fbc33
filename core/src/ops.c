/* Op names, shared by core, backends and tools. */
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
