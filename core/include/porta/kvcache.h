/* KV cache: device storage per layer, positions on the host.
 *
 * Layout of one layer's K (and V): [rows, heads, max_len, head_dim], rows
 * outermost so that resetting or copying one sequence touches one contiguous
 * block, and head_dim innermost so that a decode step reads each key as one
 * contiguous vector. The current length of each row lives here, on the host;
 * a program learns it only through the step block written before each replay. */
#ifndef PORTA_KVCACHE_H
#define PORTA_KVCACHE_H

#include "porta/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct porta_kvcache porta_kvcache;

typedef struct porta_kvcache_desc {
    int layers;   /* cached layers */
    int rows;     /* independent sequences */
    int heads;
    int max_len;  /* positions per row */
    int head_dim;
    porta_dtype dtype; /* storage type; PORTA_F32 everywhere */
} porta_kvcache_desc;

porta_status porta_kvcache_new(porta_backend *be, const porta_kvcache_desc *desc, porta_kvcache **out);
void porta_kvcache_free(porta_kvcache *kv);
const porta_kvcache_desc *porta_kvcache_info(const porta_kvcache *kv);

/* Current length of one row. */
porta_status porta_kvcache_length(const porta_kvcache *kv, int row, int *len);
/* Forgets a row (row = -1: every row), and its shared prefix. Storage is
 * not cleared: positions past the length are never read. */
porta_status porta_kvcache_reset(porta_kvcache *kv, int row);
/* Shortens a row to len <= its current length. */
porta_status porta_kvcache_truncate(porta_kvcache *kv, int row, int len);
/* Copies row src's cached keys and values (every layer) and length onto row
 * dst, in the order of work already submitted on the cache's backend: how
 * sequences share a prefilled prefix. */
porta_status porta_kvcache_copy_row(porta_kvcache *kv, int src, int dst);
/* Copies the n rows [src, src + n) (keys, values and lengths) onto each of
 * the `copies` blocks of n rows that follow one another from row dst: row
 * dst + i * n + j becomes a copy of row src + j. The destination must not
 * overlap the source. Same ordering as porta_kvcache_copy_row, but with
 * 2 * layers * (1 + ceil(log2(copies))) device copies instead of 2 * layers
 * per row: how many sequences (sample paths) share one prefilled prefix. */
porta_status porta_kvcache_copy_rows(porta_kvcache *kv, int src, int n, int dst, int copies);
/* As porta_kvcache_copy_rows, but nothing is copied: row dst + i * n + j
 * takes row src + j's length and reads that row's keys and values for those
 * positions (its shared prefix); what it appends later is its own. Attention
 * reads one copy of the prefix for every row that shares it. The source rows
 * must not share a prefix themselves, and while rows share their prefix they
 * may not overwrite it: a source row's appends must start at or after the
 * shared length, and copies onto a source row are refused. A program that
 * covers only the first B rows refuses to run while one of them shares the
 * prefix of a row past them. Resetting or truncating a row ends its own
 * sharing. */
porta_status porta_kvcache_share_rows(porta_kvcache *kv, int src, int n, int dst, int copies);

#ifdef __cplusplus
}
#endif
#endif
