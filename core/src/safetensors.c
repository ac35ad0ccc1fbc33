/* Safetensors reader. Layout: an 8-byte little-endian header length n, n bytes
 * of JSON (possibly padded with spaces), then the data section. Everything is
 * validated up front so that later accessors cannot read outside the image:
 * the JSON is parsed by json-c, each tensor entry is checked field by field,
 * and the byte ranges must tile the data section exactly (sorted, no overlap,
 * no hole, nothing after the last tensor), as the format requires. */
#define _POSIX_C_SOURCE 200809L

#include "porta/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* A valid header nests at most three levels (root, entry, shape array). */
#define ST_MAX_DEPTH 4

typedef struct st_meta {
    char *key;
    char *value;
} st_meta;

struct porta_st_file {
    const unsigned char *image;
    size_t size;
    int mapped;
    porta_st_tensor *t;
    int n;
    st_meta *meta;
    int n_meta;
    char *path;
};

static const struct {
    const char *name;
    porta_st_dtype dt;
    int size;
} st_dtypes[] = {
    {"F64", PORTA_ST_F64, 8}, {"F32", PORTA_ST_F32, 4}, {"F16", PORTA_ST_F16, 2},
    {"BF16", PORTA_ST_BF16, 2}, {"I64", PORTA_ST_I64, 8}, {"I32", PORTA_ST_I32, 4},
    {"I16", PORTA_ST_I16, 2}, {"I8", PORTA_ST_I8, 1}, {"U8", PORTA_ST_U8, 1},
    {"BOOL", PORTA_ST_BOOL, 1},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

const char *porta_st_dtype_name(porta_st_dtype dt)
{
    for (int i = 0; i < ST_NDTYPES; i++)
        if (st_dtypes[i].dt == dt)
            return st_dtypes[i].name;
    return "?";
}

static int st_dtype_size(porta_st_dtype dt)
{
    for (int i = 0; i < ST_NDTYPES; i++)
        if (st_dtypes[i].dt == dt)
            return st_dtypes[i].size;
    return 0;
}

static char *st_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void st_free(porta_st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free((char *)f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->t);
    free(f->meta);
    if (f->mapped && f->image)
        munmap((void *)f->image, f->size);
    free(f->path);
    free(f);
}

/* ---- duplicate keys ----------------------------------------------------------
 * json-c keeps the last of several equal keys in an object and says nothing, so
 * a duplicate tensor name (or a doubled "dtype") would silently win. This scan
 * runs over text json-c has already accepted, so strings and nesting are
 * well-formed; it only locates each object's keys and lets json-c decode them
 * (escapes make "a" and "\u0061" the same name). */

typedef struct st_key {
    char *s;
    size_t len;
} st_key;

static int st_key_cmp(const void *a, const void *b)
{
    const st_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Decodes the JSON string literal h[0..len) with json-c. */
static char *st_decode_key(const char *h, size_t len, size_t *out_len)
{
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    json_object *o = json_tokener_parse_ex(tok, h, (int)len);
    char *s = NULL;
    if (o && json_object_is_type(o, json_type_string)) {
        *out_len = (size_t)json_object_get_string_len(o);
        s = st_strndup(json_object_get_string(o), *out_len);
    }
    json_object_put(o);
    json_tokener_free(tok);
    return s;
}

/* Checks one object's keys, given as literal spans. A key with an escaped NUL
 * is refused too: json-c would cut it short and merge it with another. */
static porta_status st_check_keys(const char *path, const char *h, const size_t *span, int n)
{
    st_key *k = calloc((size_t)n, sizeof *k);
    if (!k)
        return porta_fail(PORTA_ERR_NOMEM, "%s: out of memory checking header keys", path);
    porta_status st = PORTA_OK;
    int decoded = 0;
    for (; decoded < n; decoded++) {
        k[decoded].s = st_decode_key(h + span[2 * decoded], span[2 * decoded + 1], &k[decoded].len);
        if (!k[decoded].s) {
            st = porta_fail(PORTA_ERR_NOMEM, "%s: out of memory checking header keys", path);
            break;
        }
        if (strlen(k[decoded].s) != k[decoded].len) {
            st = porta_fail(PORTA_ERR_FORMAT, "%s: header: key \"%s\" contains a NUL character", path,
                            k[decoded].s);
            decoded++;
            break;
        }
    }
    if (st == PORTA_OK) {
        qsort(k, (size_t)n, sizeof *k, st_key_cmp);
        for (int i = 1; i < n; i++)
            if (st_key_cmp(&k[i - 1], &k[i]) == 0) {
                st = porta_fail(PORTA_ERR_FORMAT, "%s: header: duplicate key \"%.*s\"", path,
                                (int)(k[i].len > 200 ? 200 : k[i].len), k[i].s);
                break;
            }
    }
    for (int i = 0; i < decoded; i++)
        free(k[i].s);
    free(k);
    return st;
}

static porta_status st_check_duplicates(const char *path, const char *h, size_t n)
{
    /* Key spans (offset, length) of every open object, innermost last. */
    size_t *span = NULL;
    int nspan = 0, cap = 0;
    int first[ST_MAX_DEPTH + 1];  /* index in span of each open object's first key */
    int is_obj[ST_MAX_DEPTH + 1];
    int want_key = 0, depth = 0;
    porta_status st = PORTA_OK;

    for (size_t i = 0; i < n && st == PORTA_OK; i++) {
        char c = h[i];
        if (c == '"') {
            size_t j = i + 1;
            while (j < n && h[j] != '"')
                j += h[j] == '\\' ? 2 : 1;
            if (want_key) {
                if (nspan == cap) {
                    int nc = cap ? 2 * cap : 64;
                    size_t *ns = realloc(span, (size_t)nc * 2 * sizeof *span);
                    if (!ns) {
                        st = porta_fail(PORTA_ERR_NOMEM, "%s: out of memory checking header keys", path);
                        break;
                    }
                    span = ns;
                    cap = nc;
                }
                span[2 * nspan] = i;
                span[2 * nspan + 1] = j + 1 - i;
                nspan++;
                want_key = 0;
            }
            i = j;
        } else if (c == '{' || c == '[') {
            if (depth == ST_MAX_DEPTH) {
                st = porta_fail(PORTA_ERR_FORMAT, "%s: header nested too deeply", path);
                break;
            }
            first[depth] = nspan;
            is_obj[depth] = c == '{';
            depth++;
            want_key = c == '{';
        } else if (c == '\'') {
            /* json-c accepts single-quoted strings even when strict. */
            st = porta_fail(PORTA_ERR_FORMAT, "%s: header is not valid JSON (single-quoted string at byte %zu)",
                            path, i);
        } else if (c == ',') {
            want_key = depth > 0 && is_obj[depth - 1];
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
            if (is_obj[depth] && nspan > first[depth])
                st = st_check_keys(path, h, span + 2 * first[depth], nspan - first[depth]);
            nspan = first[depth];
            want_key = 0;
        }
    }
    free(span);
    return st;
}

/* ---- header entries ---------------------------------------------------------- */

/* A JSON integer in [0, INT64_MAX). json-c saturates larger literals to
 * INT64_MAX, so that value is refused too rather than trusted. */
static int st_get_count(json_object *o, int64_t *v)
{
    if (!json_object_is_type(o, json_type_int))
        return 0;
    *v = json_object_get_int64(o);
    return *v >= 0 && *v != INT64_MAX;
}

static porta_status st_parse_metadata(porta_st_file *f, json_object *o)
{
    if (!json_object_is_type(o, json_type_object))
        return porta_fail(PORTA_ERR_FORMAT, "%s: \"__metadata__\" is not an object", f->path);
    int n = json_object_object_length(o);
    f->meta = calloc((size_t)(n ? n : 1), sizeof *f->meta);
    if (!f->meta)
        return porta_fail(PORTA_ERR_NOMEM, "%s: out of memory reading metadata", f->path);
    json_object_object_foreach(o, key, val) {
        if (!json_object_is_type(val, json_type_string))
            return porta_fail(PORTA_ERR_FORMAT, "%s: metadata \"%s\" is not a string", f->path, key);
        size_t len = (size_t)json_object_get_string_len(val);
        if (strlen(json_object_get_string(val)) != len)
            return porta_fail(PORTA_ERR_FORMAT, "%s: metadata \"%s\" contains a NUL character", f->path, key);
        st_meta *m = &f->meta[f->n_meta];
        m->key = st_strndup(key, strlen(key));
        m->value = st_strndup(json_object_get_string(val), len);
        if (!m->key || !m->value) {
            free(m->key);
            free(m->value);
            return porta_fail(PORTA_ERR_NOMEM, "%s: out of memory reading metadata", f->path);
        }
        f->n_meta++;
    }
    return PORTA_OK;
}

/* Fills t (except data) from a tensor entry; begin/end are its data_offsets. */
static porta_status st_parse_tensor(const porta_st_file *f, const char *name, json_object *o,
                                    uint64_t data_size, porta_st_tensor *t, int64_t *begin, int64_t *end)
{
    if (!json_object_is_type(o, json_type_object))
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": entry is not an object", f->path, name);
    json_object *dtype = NULL, *shape = NULL, *offsets = NULL;
    json_object_object_foreach(o, key, val) {
        if (strcmp(key, "dtype") == 0)
            dtype = val;
        else if (strcmp(key, "shape") == 0)
            shape = val;
        else if (strcmp(key, "data_offsets") == 0)
            offsets = val;
        else
            return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": unknown field \"%s\"", f->path, name, key);
    }
    if (!dtype || !shape || !offsets)
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": missing field \"%s\"", f->path, name,
                          !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    if (!json_object_is_type(dtype, json_type_string))
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": dtype is not a string", f->path, name);
    const char *ds = json_object_get_string(dtype);
    int di = 0;
    while (di < ST_NDTYPES && strcmp(st_dtypes[di].name, ds) != 0)
        di++;
    if (di == ST_NDTYPES || (size_t)json_object_get_string_len(dtype) != strlen(ds))
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%.32s\"", f->path, name, ds);
    t->dtype = st_dtypes[di].dt;

    if (!json_object_is_type(shape, json_type_array))
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": shape is not an array", f->path, name);
    size_t nd = json_object_array_length(shape);
    if (nd > PORTA_ST_MAX_DIMS)
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": shape has %zu dims (at most %d)", f->path, name,
                          nd, PORTA_ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    int overflow = 0, zero = 0;
    for (size_t i = 0; i < nd; i++) {
        int64_t d;
        if (!st_get_count(json_object_array_get_idx(shape, i), &d))
            return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": shape[%zu] is not a non-negative integer",
                              f->path, name, i);
        t->shape[i] = d;
        zero |= d == 0;
        if (d && numel > (uint64_t)INT64_MAX / (uint64_t)d)
            overflow = 1;
        numel *= (uint64_t)d;
    }
    uint64_t esize = (uint64_t)st_dtype_size(t->dtype);
    /* A zero dimension makes an overflowing prefix harmless: the count is 0. */
    if (zero) {
        overflow = 0;
        numel = 0;
    }
    if (overflow || numel > (uint64_t)INT64_MAX / esize)
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": shape's byte size overflows", f->path, name);

    if (!json_object_is_type(offsets, json_type_array) || json_object_array_length(offsets) != 2 ||
        !st_get_count(json_object_array_get_idx(offsets, 0), begin) ||
        !st_get_count(json_object_array_get_idx(offsets, 1), end))
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": data_offsets is not [begin, end] of non-negative "
                          "integers", f->path, name);
    if (*begin > *end || (uint64_t)*end > data_size)
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%lld, %lld] outside the data section "
                          "(%llu bytes)", f->path, name, (long long)*begin, (long long)*end,
                          (unsigned long long)data_size);
    t->nbytes = (size_t)(numel * esize);
    if ((uint64_t)(*end - *begin) != numel * esize)
        return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": shape and dtype give %llu bytes, data_offsets %lld",
                          f->path, name, (unsigned long long)(numel * esize), (long long)(*end - *begin));
    return PORTA_OK;
}

typedef struct st_range {
    int64_t begin, end;
    int index;
} st_range;

static int st_range_cmp(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin)
        return (x->begin > y->begin) - (x->begin < y->begin);
    return (x->end > y->end) - (x->end < y->end);
}

static porta_status st_check_tiling(const porta_st_file *f, st_range *r, int n, uint64_t data_size)
{
    qsort(r, (size_t)n, sizeof *r, st_range_cmp);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *name = f->t[r[i].index].name;
        if (r[i].begin < at)
            return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": bytes [%lld, %lld) overlap tensor \"%s\"",
                              f->path, name, (long long)r[i].begin, (long long)r[i].end,
                              f->t[r[i - 1].index].name);
        if (r[i].begin > at)
            return porta_fail(PORTA_ERR_FORMAT, "%s: tensor \"%s\": unreferenced bytes [%lld, %lld) before it",
                              f->path, name, (long long)at, (long long)r[i].begin);
        at = r[i].end;
    }
    if ((uint64_t)at != data_size)
        return porta_fail(PORTA_ERR_FORMAT, "%s: %llu trailing bytes after the last tensor", f->path,
                          (unsigned long long)(data_size - (uint64_t)at));
    return PORTA_OK;
}

static porta_status st_parse_json(porta_st_file *f, const char *h, size_t hlen, uint64_t data_size)
{
    json_tokener *tok = json_tokener_new_ex(ST_MAX_DEPTH);
    if (!tok)
        return porta_fail(PORTA_ERR_NOMEM, "%s: out of memory parsing the header", f->path);
    /* Trailing characters are allowed here only to be reported below with a
     * clearer message than json-c's. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS | JSON_TOKENER_VALIDATE_UTF8);
    json_object *root = json_tokener_parse_ex(tok, h, (int)hlen);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (!root && jerr == json_tokener_continue) {
        /* A bare number is complete only once the input is known to end. */
        root = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = hlen;
    }
    json_tokener_free(tok);
    if (!root)
        return porta_fail(PORTA_ERR_FORMAT, "%s: header is not valid JSON (%s at byte %zu)", f->path,
                          jerr == json_tokener_continue ? "truncated" : json_tokener_error_desc(jerr), end);
    porta_status st = PORTA_OK;
    for (size_t i = end; i < hlen && st == PORTA_OK; i++)
        if (h[i] != ' ' && h[i] != '\t' && h[i] != '\n' && h[i] != '\r')
            st = porta_fail(PORTA_ERR_FORMAT, "%s: header has trailing bytes after the JSON (byte %zu)", f->path, i);
    if (st == PORTA_OK && !json_object_is_type(root, json_type_object))
        st = porta_fail(PORTA_ERR_FORMAT, "%s: header is not a JSON object", f->path);
    if (st == PORTA_OK)
        st = st_check_duplicates(f->path, h, end);

    st_range *r = NULL;
    if (st == PORTA_OK) {
        int n = json_object_object_length(root);
        f->t = calloc((size_t)(n ? n : 1), sizeof *f->t);
        r = calloc((size_t)(n ? n : 1), sizeof *r);
        if (!f->t || !r)
            st = porta_fail(PORTA_ERR_NOMEM, "%s: out of memory reading the header", f->path);
    }
    if (st == PORTA_OK) {
        json_object_object_foreach(root, key, val) {
            if (strcmp(key, "__metadata__") == 0) {
                st = st_parse_metadata(f, val);
            } else {
                porta_st_tensor *t = &f->t[f->n];
                st = st_parse_tensor(f, key, val, data_size, t, &r[f->n].begin, &r[f->n].end);
                if (st == PORTA_OK) {
                    t->name = st_strndup(key, strlen(key));
                    if (!t->name)
                        st = porta_fail(PORTA_ERR_NOMEM, "%s: out of memory reading the header", f->path);
                }
                if (st == PORTA_OK) {
                    r[f->n].index = f->n;
                    t->data = f->image + 8 + hlen + r[f->n].begin;
                    f->n++;
                }
            }
            if (st != PORTA_OK)
                break;
        }
    }
    if (st == PORTA_OK)
        st = st_check_tiling(f, r, f->n, data_size);
    free(r);
    json_object_put(root);
    return st;
}

static porta_status st_validate(porta_st_file *f)
{
    if (f->size < 8)
        return porta_fail(PORTA_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length", f->path,
                          f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->image[i];
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > f->size - 8)
        return porta_fail(PORTA_ERR_FORMAT, "%s: header length %llu out of range (file %zu bytes, limit %llu)",
                          f->path, (unsigned long long)hlen, f->size, (unsigned long long)ST_MAX_HEADER);
    const char *h = (const char *)f->image + 8;
    /* json-c stops at a NUL byte; a NUL in the header is malformed anyway. */
    if (memchr(h, '\0', (size_t)hlen))
        return porta_fail(PORTA_ERR_FORMAT, "%s: header contains a NUL byte", f->path);
    return st_parse_json(f, h, (size_t)hlen, f->size - 8 - hlen);
}

static porta_status st_new(const char *path, porta_st_file **out)
{
    porta_st_file *f = calloc(1, sizeof *f);
    if (f)
        f->path = st_strndup(path, strlen(path));
    if (!f || !f->path) {
        free(f);
        return porta_fail(PORTA_ERR_NOMEM, "%s: out of memory", path);
    }
    *out = f;
    return PORTA_OK;
}

porta_status porta_st_parse(const void *data, size_t size, porta_st_file **out)
{
    if (!out || (!data && size))
        return porta_fail(PORTA_ERR_ARG, "porta_st_parse: null argument");
    *out = NULL;
    porta_st_file *f = NULL;
    porta_status st = st_new("<memory>", &f);
    if (st != PORTA_OK)
        return st;
    f->image = data;
    f->size = size;
    st = st_validate(f);
    if (st != PORTA_OK) {
        st_free(f);
        return st;
    }
    *out = f;
    return PORTA_OK;
}

porta_status porta_st_open(const char *path, porta_st_file **out)
{
    if (!path || !out)
        return porta_fail(PORTA_ERR_ARG, "porta_st_open: null argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return porta_fail(PORTA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return porta_fail(PORTA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return porta_fail(PORTA_ERR_IO, "%s: not a regular file", path);
    }
    porta_st_file *f = NULL;
    porta_status st = st_new(path, &f);
    if (st != PORTA_OK) {
        close(fd);
        return st;
    }
    f->size = (size_t)sb.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            st_free(f);
            return porta_fail(PORTA_ERR_IO, "%s: cannot map %lld bytes: %s", path, (long long)sb.st_size,
                              strerror(e));
        }
        f->image = m;
        f->mapped = 1;
    }
    close(fd);
    st = st_validate(f);
    if (st != PORTA_OK) {
        st_free(f);
        return st;
    }
    *out = f;
    return PORTA_OK;
}

void porta_st_close(porta_st_file *f)
{
    st_free(f);
}

int porta_st_count(const porta_st_file *f)
{
    return f ? f->n : 0;
}

const porta_st_tensor *porta_st_at(const porta_st_file *f, int i)
{
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const porta_st_tensor *porta_st_find(const porta_st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

const char *porta_st_metadata(const porta_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

int64_t porta_st_numel(const porta_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; t && i < t->ndim; i++)
        n *= t->shape[i];
    return t ? n : 0;
}
