/* KV cache: one device buffer for every layer, lengths on the host. */
#include <stdlib.h>
#include "core.h"

porta_status porta_kvcache_new(porta_backend *be, const porta_kvcache_desc *d, porta_kvcache **out)
{
    if (!out) return porta_fail(PORTA_ERR_ARG, "porta_kvcache_new: out is NULL");
    *out = NULL;
    if (!be || !d) return porta_fail(PORTA_ERR_ARG, "porta_kvcache_new: NULL argument");
    if (d->layers <= 0 || d->rows <= 0 || d->heads <= 0 || d->max_len <= 0 || d->head_dim <= 0)
        return porta_fail(PORTA_ERR_ARG,
                          "porta_kvcache_new: layers %d, rows %d, heads %d, max_len %d, head_dim %d must all be positive",
                          d->layers, d->rows, d->heads, d->max_len, d->head_dim);
    if (d->dtype != PORTA_F32)
        return porta_fail(PORTA_ERR_UNSUPPORTED, "porta_kvcache_new: only float32 caches are supported");
    int64_t per = (int64_t)d->rows * d->heads * d->max_len * d->head_dim;
    if (per > ((int64_t)1 << 40) / (2 * (int64_t)d->layers))
        return porta_fail(PORTA_ERR_ARG, "porta_kvcache_new: cache of %lld elements per layer is too large", (long long)per);
    porta_kvcache *kv = calloc(1, sizeof *kv);
    if (!kv) return porta_fail(PORTA_ERR_NOMEM, "porta_kvcache_new: out of memory");
    kv->len = calloc((size_t)d->rows, sizeof *kv->len);
    kv->src = calloc((size_t)d->rows, sizeof *kv->src);
    kv->shared = calloc((size_t)d->rows, sizeof *kv->shared);
    kv->keep = calloc((size_t)d->rows, sizeof *kv->keep);
    if (!kv->len || !kv->src || !kv->shared || !kv->keep) {
        porta_kvcache_free(kv);
        return porta_fail(PORTA_ERR_NOMEM, "porta_kvcache_new: out of memory");
    }
    for (int r = 0; r < d->rows; r++) kv->src[r] = r;
    porta_status s = porta_buffer_new(be, d->dtype, per * 2 * d->layers, &kv->store);
    if (s != PORTA_OK) {
        porta_kvcache_free(kv);
        return s;
    }
    kv->be = be;
    kv->d = *d;
    *out = kv;
    return PORTA_OK;
}

void porta_kvcache_free(porta_kvcache *kv)
{
    if (!kv) return;
    porta_buffer_free(kv->store);
    free(kv->len);
    free(kv->src);
    free(kv->shared);
    free(kv->keep);
    free(kv);
}

const porta_kvcache_desc *porta_kvcache_info(const porta_kvcache *kv) { return kv ? &kv->d : NULL; }

int64_t porta_kvcache_offset(const porta_kvcache *kv, int layer, int which)
{
    int64_t per = (int64_t)kv->d.rows * kv->d.heads * kv->d.max_len * kv->d.head_dim;
    return per * (2 * (int64_t)layer + which);
}

static porta_status check_row(const porta_kvcache *kv, int row, int allow_all, const char *fn)
{
    if (!kv) return porta_fail(PORTA_ERR_ARG, "%s: cache is NULL", fn);
    if ((row < 0 && !(allow_all && row == -1)) || row >= kv->d.rows)
        return porta_fail(PORTA_ERR_ARG, "%s: row %d outside 0..%d", fn, row, kv->d.rows - 1);
    return PORTA_OK;
}

porta_status porta_kvcache_length(const porta_kvcache *kv, int row, int *len)
{
    porta_status s = check_row(kv, row, 0, "porta_kvcache_length");
    if (s != PORTA_OK) return s;
    if (!len) return porta_fail(PORTA_ERR_ARG, "porta_kvcache_length: len is NULL");
    *len = kv->len[row];
    return PORTA_OK;
}

/* keep[] from src[] and shared[]. */
static void update_keep(porta_kvcache *kv)
{
    for (int r = 0; r < kv->d.rows; r++) kv->keep[r] = 0;
    for (int r = 0; r < kv->d.rows; r++)
        if (kv->shared[r] > kv->keep[kv->src[r]]) kv->keep[kv->src[r]] = kv->shared[r];
}

static void unshare(porta_kvcache *kv, int r)
{
    kv->src[r] = r;
    kv->shared[r] = 0;
}

/* Fails when writing row r's storage (a copy onto it) would change a prefix
 * other rows share. */
static porta_status check_unshared(const porta_kvcache *kv, int r, const char *fn)
{
    if (kv->keep[r] > 0)
        return porta_fail(PORTA_ERR_ARG, "%s: row %d holds a prefix of %d positions other rows share; reset them first",
                          fn, r, kv->keep[r]);
    return PORTA_OK;
}

porta_status porta_kvcache_reset(porta_kvcache *kv, int row)
{
    porta_status s = check_row(kv, row, 1, "porta_kvcache_reset");
    if (s != PORTA_OK) return s;
    for (int r = 0; r < kv->d.rows; r++)
        if (row == -1 || r == row) {
            kv->len[r] = 0;
            unshare(kv, r);
        }
    update_keep(kv);
    return PORTA_OK;
}

porta_status porta_kvcache_truncate(porta_kvcache *kv, int row, int len)
{
    porta_status s = check_row(kv, row, 0, "porta_kvcache_truncate");
    if (s != PORTA_OK) return s;
    if (len < 0 || len > kv->len[row])
        return porta_fail(PORTA_ERR_ARG, "porta_kvcache_truncate: length %d outside 0..%d of row %d", len,
                          kv->len[row], row);
    kv->len[row] = len;
    if (kv->shared[row] > len) kv->shared[row] = len;
    if (kv->shared[row] == 0) unshare(kv, row);
    update_keep(kv);
    return PORTA_OK;
}

porta_status porta_kvcache_copy_row(porta_kvcache *kv, int src, int dst)
{
    porta_status s = check_row(kv, src, 0, "porta_kvcache_copy_row");
    if (s == PORTA_OK) s = check_row(kv, dst, 0, "porta_kvcache_copy_row");
    if (s != PORTA_OK) return s;
    if (src == dst) return PORTA_OK;
    if ((s = check_unshared(kv, dst, "porta_kvcache_copy_row")) != PORTA_OK) return s;
    /* Only the filled prefix of each head matters, but heads are strided by
     * max_len: copying whole rows keeps it to one transfer per layer. */
    int64_t row_elems = (int64_t)kv->d.heads * kv->d.max_len * kv->d.head_dim;
    const porta_backend_vt *vt = kv->be->vt;
    for (int l = 0; l < kv->d.layers; l++)
        for (int w = 0; w < 2; w++) {
            int64_t base = porta_kvcache_offset(kv, l, w);
            s = vt->buf_copy(kv->be->impl, kv->store->impl, base + row_elems * dst, kv->store->impl,
                             base + row_elems * src, row_elems);
            if (s != PORTA_OK) return s;
        }
    kv->len[dst] = kv->len[src];
    /* A copy of a sharing row shares the same prefix. */
    kv->src[dst] = kv->shared[src] ? kv->src[src] : dst;
    kv->shared[dst] = kv->shared[src];
    update_keep(kv);
    return PORTA_OK;
}

/* The checks of copy_rows and share_rows. */
static porta_status check_blocks(const porta_kvcache *kv, int src, int n, int dst, int copies, const char *fn)
{
    if (!kv) return porta_fail(PORTA_ERR_ARG, "%s: cache is NULL", fn);
    int64_t end = (int64_t)dst + (int64_t)n * copies;
    if (n < 1 || copies < 0 || src < 0 || dst < 0 || src + (int64_t)n > kv->d.rows || end > kv->d.rows)
        return porta_fail(PORTA_ERR_ARG, "%s: %d copies of rows %d..%d at row %d do not fit rows 0..%d", fn, copies,
                          src, src + n - 1, dst, kv->d.rows - 1);
    if (copies > 0 && dst < src + n && src < end)
        return porta_fail(PORTA_ERR_ARG, "%s: destination rows %d..%lld overlap source rows %d..%d", fn, dst,
                          (long long)end - 1, src, src + n - 1);
    for (int64_t r = dst; r < end; r++) {
        porta_status s = check_unshared(kv, (int)r, fn);
        if (s != PORTA_OK) return s;
    }
    return PORTA_OK;
}

porta_status porta_kvcache_copy_rows(porta_kvcache *kv, int src, int n, int dst, int copies)
{
    porta_status st = check_blocks(kv, src, n, dst, copies, "porta_kvcache_copy_rows");
    if (st != PORTA_OK) return st;
    int64_t row_elems = (int64_t)kv->d.heads * kv->d.max_len * kv->d.head_dim;
    const porta_backend_vt *vt = kv->be->vt;
    /* Rows are contiguous within a layer's K or V, so the first copy and then
     * each doubling of the copies made so far is one transfer per layer and
     * half: 2 * layers * (1 + ceil(log2(copies))) transfers in all. */
    for (int done = 0; done < copies;) {
        int from = done ? dst : src, rows = done ? done * n : n;
        if (done && rows > (copies - done) * n) rows = (copies - done) * n;
        for (int l = 0; l < kv->d.layers; l++)
            for (int w = 0; w < 2; w++) {
                int64_t base = porta_kvcache_offset(kv, l, w);
                porta_status s = vt->buf_copy(kv->be->impl, kv->store->impl, base + row_elems * (dst + done * n),
                                              kv->store->impl, base + row_elems * from, row_elems * rows);
                if (s != PORTA_OK) return s;
            }
        done += rows / n;
    }
    for (int i = 0; i < copies * n; i++) {
        int s = src + i % n, d = dst + i;
        kv->len[d] = kv->len[s];
        kv->src[d] = kv->shared[s] ? kv->src[s] : d;
        kv->shared[d] = kv->shared[s];
    }
    update_keep(kv);
    return PORTA_OK;
}

porta_status porta_kvcache_share_rows(porta_kvcache *kv, int src, int n, int dst, int copies)
{
    porta_status st = check_blocks(kv, src, n, dst, copies, "porta_kvcache_share_rows");
    if (st != PORTA_OK) return st;
    for (int j = 0; j < n; j++)
        if (kv->shared[src + j] > 0)
            return porta_fail(PORTA_ERR_ARG,
                              "porta_kvcache_share_rows: row %d shares a prefix itself; copy it (porta_kvcache_copy_rows)",
                              src + j);
    for (int i = 0; i < copies * n; i++) {
        int s = src + i % n, d = dst + i;
        kv->len[d] = kv->len[s];
        kv->src[d] = s;
        kv->shared[d] = kv->len[s];
        if (kv->shared[d] == 0) unshare(kv, d);
    }
    update_keep(kv);
    return PORTA_OK;
}
