/* Core's private object layouts. */
#ifndef PORTA_CORE_H
#define PORTA_CORE_H

#include "porta/porta.h"
#include "plan.h"

extern const porta_host porta_core_host;

struct porta_backend {
    const porta_backend_vt *vt;
    void *impl;
    void *module; /* dlopen handle of a run-time module, or NULL */
    char name[32];
};

struct porta_buffer {
    porta_backend *be;
    void *impl;
    porta_dtype dtype;
    int64_t n;
};

struct porta_kvcache {
    porta_backend *be;
    porta_kvcache_desc d;
    porta_buffer *store;   /* [layers][2][rows][heads][max_len][head_dim] */
    int32_t *len;          /* host lengths, one per row */
    /* Shared prefixes (porta_kvcache_share_rows): row r's positions below
     * shared[r] are row src[r]'s; keep[r] is the longest prefix of row r
     * that other rows share, which its appends must not overwrite. */
    int32_t *src, *shared, *keep;
};

/* Nonzero when t's strides are row-major dense (size-1 dims aside). */
int porta_tensor_dense(const porta_tensor *t);

/* Offset in elements of one layer's K or V inside the cache store. */
int64_t porta_kvcache_offset(const porta_kvcache *kv, int layer, int which);

typedef enum porta_tkind { PORTA_T_INPUT, PORTA_T_PARAM, PORTA_T_NODE, PORTA_T_VIEW } porta_tkind;

struct porta_tensor {
    porta_graph *g;
    int id;
    porta_tkind kind;
    int ndim;
    int64_t shape[PORTA_MAX_DIMS];
    int64_t stride[PORTA_MAX_DIMS]; /* elements, relative to the root's storage */
    int64_t offset;                 /* elements, relative to the root's storage */
    porta_tensor *root;             /* storage owner (self for non-views) */
    /* nodes */
    porta_op op;
    int n_in;
    porta_tensor *in[PORTA_PLAN_MAX_IN]; /* optional inputs keep their slot, NULL when absent */
    porta_node params;              /* only .p is used */
    porta_buffer *ext;              /* node writing into an external buffer (KV) */
    porta_kvcache *kv;              /* op reads the step block of this cache */
    int kv_layer, kv_which;         /* KV_APPEND: which layer and half */
    /* leaves */
    porta_buffer *buf;              /* params */
    int input_index;
    char name[48];
};

struct porta_graph {
    porta_tensor **t;
    int n, cap;
    int n_inputs;
    porta_tensor **outputs;
    int n_outputs, cap_outputs;
    porta_kvcache *kv;              /* at most one cache per graph */
    porta_status err;
    char errmsg[512];
};

#endif
