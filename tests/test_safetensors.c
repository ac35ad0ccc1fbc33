/* Safetensors reader: a valid file written here reads back with the right
 * names, shapes and values; every malformed image in the list is refused with
 * PORTA_ERR_FORMAT and a message; the committed fuzz corpus (directory given
 * as argv[1]) parses or is refused cleanly; the Toto fixtures (tests/data,
 * argv[2]) read with the expected names and shapes. Conversions are compared bit for
 * bit: f16/bf16/f32 widening is exact, and f64 narrowing is the C cast (round
 * to nearest even) except where it overflows. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "porta/safetensors.h"

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* ---- building images ------------------------------------------------------- */

typedef struct image {
    unsigned char *p;
    size_t n;
} image;

/* 8-byte length + hl bytes of header + data; hlen_override replaces the length
 * field when it is not ~0. */
static image make_image(const char *header, size_t hl, const void *data, size_t ndata, uint64_t hlen_override)
{
    uint64_t field = hlen_override != ~(uint64_t)0 ? hlen_override : hl;
    image im = {malloc(8 + hl + ndata + 1), 8 + hl + ndata};
    for (int i = 0; i < 8; i++)
        im.p[i] = (unsigned char)(field >> (8 * i));
    memcpy(im.p + 8, header, hl);
    if (ndata)
        memcpy(im.p + 8 + hl, data, ndata);
    return im;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* ---- the valid file --------------------------------------------------------- */

static const uint32_t f32_in[6] = {0x3fc00000u /* 1.5 */, 0xc0100000u /* -2.25 */, 0x00000001u /* min subnormal */,
                                   0x7f7fffffu /* FLT_MAX */, 0xff800000u /* -inf */, 0x7fc00001u /* nan payload */};

static const uint16_t f16_in[9] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x7e01, 0x8000};
static const uint32_t f16_want[9] = {
    0x3f800000u, /* 1.0 */
    0xc0000000u, /* -2.0 */
    0x33800000u, /* 2^-24, smallest f16 subnormal */
    0x387fc000u, /* 1023 * 2^-24, largest f16 subnormal */
    0x477fe000u, /* 65504 */
    0x7f800000u, 0xff800000u,
    0x7fc02000u, /* quiet NaN, payload kept */
    0x80000000u, /* -0 */
};

static const uint16_t bf16_in[6] = {0x3f80, 0xc040, 0x0001, 0x7f80, 0x7fc1, 0x4049};

static const double f64_in[6] = {0.1, 1e300, -1e-300, 3.4028235e38, -0x1p128, 65504.0};
static const uint32_t f64_want[6] = {
    0x3dcccccdu, /* 0.1f */
    0x7f800000u, /* overflow: +inf */
    0x80000000u, /* underflow: -0 */
    0x7f7fffffu, /* just above FLT_MAX, below the rounding midpoint: FLT_MAX */
    0xff800000u, /* -2^128: -inf */
    0x477fe000u,
};

static image valid_image(void)
{
    unsigned char data[24 + 18 + 12 + 48 + 8 + 4];
    size_t at = 0;
    for (int i = 0; i < 6; i++, at += 4)
        put_le(data + at, f32_in[i], 4);
    for (int i = 0; i < 9; i++, at += 2)
        put_le(data + at, f16_in[i], 2);
    for (int i = 0; i < 6; i++, at += 2)
        put_le(data + at, bf16_in[i], 2);
    for (int i = 0; i < 6; i++, at += 8) {
        uint64_t b;
        memcpy(&b, &f64_in[i], 8);
        put_le(data + at, b, 8);
    }
    put_le(data + at, 7, 4);
    put_le(data + at + 4, (uint32_t)-3, 4);
    at += 8;
    put_le(data + at, 0x40490fdbu, 4); /* pi */
    at += 4;
    /* Entries out of offset order and an escaped name: neither may matter. */
    const char *header =
        "{\"__metadata__\":{\"format\":\"pt\",\"horizon\":\"3\"},"
        "\"b.f16\":{\"dtype\":\"F16\",\"shape\":[9],\"data_offsets\":[24,42]},"
        "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"c.bf16\":{\"dtype\":\"BF16\",\"shape\":[3,1,2],\"data_offsets\":[42,54]},"
        "\"d.f64\":{\"dtype\":\"F64\",\"shape\":[6],\"data_offsets\":[54,102]},"
        "\"e.i32\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[102,110]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[110,110]},"
        "\"scal\\u0061r\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[110,114]}}    ";
    return make_image(header, strlen(header), data, at, ~(uint64_t)0);
}

static void check_valid(const porta_st_file *f)
{
    CHECK(porta_st_count(f) == 7, "count %d", porta_st_count(f));
    CHECK(porta_st_metadata(f, "format") && strcmp(porta_st_metadata(f, "format"), "pt") == 0, "metadata format");
    CHECK(porta_st_metadata(f, "horizon") && strcmp(porta_st_metadata(f, "horizon"), "3") == 0, "metadata horizon");
    CHECK(porta_st_metadata(f, "absent") == NULL, "absent metadata");
    CHECK(porta_st_find(f, "absent") == NULL, "absent tensor");
    CHECK(porta_st_find(f, "__metadata__") == NULL, "metadata is not a tensor");

    float out[9];
    const porta_st_tensor *t = porta_st_find(f, "a.f32");
    CHECK(t && t->dtype == PORTA_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->nbytes == 24,
          "a.f32 descriptor");
    if (t) {
        CHECK(porta_st_to_f32(t, out, 6) == PORTA_OK, "a.f32 convert");
        for (int i = 0; i < 6; i++)
            CHECK(f32_bits(out[i]) == f32_in[i], "a.f32[%d] %08x", i, f32_bits(out[i]));
        CHECK(porta_st_to_f32(t, out, 5) == PORTA_ERR_ARG, "wrong count refused");
    }
    t = porta_st_find(f, "b.f16");
    CHECK(t && t->dtype == PORTA_ST_F16 && t->ndim == 1 && t->shape[0] == 9, "b.f16 descriptor");
    if (t) {
        CHECK(porta_st_to_f32(t, out, 9) == PORTA_OK, "b.f16 convert");
        for (int i = 0; i < 9; i++)
            CHECK(f32_bits(out[i]) == f16_want[i], "b.f16[%d] %08x want %08x", i, f32_bits(out[i]), f16_want[i]);
    }
    t = porta_st_find(f, "c.bf16");
    CHECK(t && t->dtype == PORTA_ST_BF16 && t->ndim == 3 && t->shape[2] == 2 && porta_st_numel(t) == 6,
          "c.bf16 descriptor");
    if (t) {
        CHECK(porta_st_to_f32(t, out, 6) == PORTA_OK, "c.bf16 convert");
        for (int i = 0; i < 6; i++)
            CHECK(f32_bits(out[i]) == (uint32_t)bf16_in[i] << 16, "c.bf16[%d] %08x", i, f32_bits(out[i]));
        CHECK(out[0] == 1.0f && out[1] == -3.0f && out[5] == 3.140625f && isinf(out[3]) && isnan(out[4]),
              "c.bf16 values");
    }
    t = porta_st_find(f, "d.f64");
    CHECK(t && t->dtype == PORTA_ST_F64 && t->nbytes == 48, "d.f64 descriptor");
    if (t) {
        CHECK(porta_st_to_f32(t, out, 6) == PORTA_OK, "d.f64 convert");
        for (int i = 0; i < 6; i++)
            CHECK(f32_bits(out[i]) == f64_want[i], "d.f64[%d] %08x want %08x", i, f32_bits(out[i]), f64_want[i]);
    }
    t = porta_st_find(f, "e.i32");
    CHECK(t && t->dtype == PORTA_ST_I32, "e.i32 descriptor");
    if (t) {
        const unsigned char *p = t->data;
        CHECK(p[0] == 7 && p[4] == 0xfd, "e.i32 bytes");
        CHECK(porta_st_to_f32(t, out, 2) == PORTA_ERR_UNSUPPORTED && porta_last_error()[0],
              "integer conversion refused");
    }
    t = porta_st_find(f, "empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->nbytes == 0 && porta_st_numel(t) == 0, "empty");
    if (t)
        CHECK(porta_st_to_f32(t, out, 0) == PORTA_OK, "empty convert");
    t = porta_st_find(f, "scalar");
    CHECK(t && t->ndim == 0 && porta_st_numel(t) == 1, "escaped name, scalar");
    if (t) {
        CHECK(porta_st_to_f32(t, out, 1) == PORTA_OK && out[0] == 3.14159274f, "scalar value");
    }
    for (int i = 0; i < porta_st_count(f); i++)
        CHECK(porta_st_at(f, i) && porta_st_find(f, porta_st_at(f, i)->name) == porta_st_at(f, i), "at/find %d", i);
    CHECK(porta_st_at(f, porta_st_count(f)) == NULL && porta_st_at(f, -1) == NULL, "at out of range");
}

static void test_arguments(void)
{
    porta_st_file *f = NULL;
    float x;
    CHECK(porta_st_parse(NULL, 8, &f) == PORTA_ERR_ARG && porta_last_error()[0], "parse(NULL)");
    CHECK(porta_st_parse("", 0, NULL) == PORTA_ERR_ARG, "parse(out NULL)");
    CHECK(porta_st_open(NULL, &f) == PORTA_ERR_ARG, "open(NULL)");
    CHECK(porta_st_to_f32(NULL, &x, 1) == PORTA_ERR_ARG, "to_f32(NULL)");
    CHECK(porta_st_count(NULL) == 0 && porta_st_at(NULL, 0) == NULL && porta_st_find(NULL, "a") == NULL &&
          porta_st_metadata(NULL, "a") == NULL, "NULL file");
    porta_st_close(NULL);
}

static void test_valid(void)
{
    image im = valid_image();
    porta_st_file *f = NULL;
    porta_status st = porta_st_parse(im.p, im.n, &f);
    CHECK(st == PORTA_OK, "valid image refused: %s", porta_last_error());
    if (f)
        check_valid(f);
    porta_st_close(f);

    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/porta_st_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) {
        free(im.p);
        return;
    }
    CHECK(write(fd, im.p, im.n) == (ssize_t)im.n, "write");
    close(fd);
    f = NULL;
    st = porta_st_open(path, &f);
    CHECK(st == PORTA_OK, "valid file refused: %s", porta_last_error());
    if (f)
        check_valid(f);
    porta_st_close(f);

    /* A file cut short: the message names the file. */
    CHECK(truncate(path, (off_t)(im.n - 1)) == 0, "truncate");
    st = porta_st_open(path, &f);
    CHECK(st == PORTA_ERR_FORMAT && strstr(porta_last_error(), path), "truncated file: %s", porta_last_error());
    unlink(path);
    st = porta_st_open(path, &f);
    CHECK(st == PORTA_ERR_IO && strstr(porta_last_error(), path), "missing file: %s", porta_last_error());
    st = porta_st_open(dir && *dir ? dir : "/tmp", &f);
    CHECK(st == PORTA_ERR_IO && f == NULL, "directory: %s", porta_last_error());
    free(im.p);
}

/* ---- malformed images ------------------------------------------------------- */

typedef struct bad {
    const char *what;
    const char *header;
    size_t ndata;            /* zero bytes of data after the header */
    uint64_t hlen;           /* the length field; NOLEN: the header's length */
    long cut;                /* >= 0: keep only this many bytes of the image */
    const char *expect;      /* a substring the message must contain */
    size_t header_bytes;     /* 0: strlen(header); set for embedded NULs */
} bad;

#define T(name, dtype, shape, b, e) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"
#define NOLEN (~(uint64_t)0)

static const bad bads[] = {
    {"truncated header length", "{}", 0, NOLEN, 5, "too short", 0},
    {"empty file", "{}", 0, NOLEN, 0, "too short", 0},
    {"header length > file", "{}", 0, 100, -1, "out of range", 0},
    {"header length huge", "{}", 0, (uint64_t)1 << 62, -1, "out of range", 0},
    {"header length < 2", "{}", 0, 1, -1, "out of range", 0},
    {"bad JSON", "{\"a\":}", 0, NOLEN, -1, "not valid JSON", 0},
    {"bad JSON: truncated", "{\"a\":{\"dtype\":\"F32\"", 0, NOLEN, -1, "not valid JSON", 0},
    {"bad JSON: single quotes", "{'a':1}", 0, NOLEN, -1, "not valid JSON", 0},
    {"bad JSON: trailing comma", "{" T("a", "F32", "[1]", 0, 4) ",}", 4, NOLEN, -1, "not valid JSON", 0},
    {"NUL in header", "{}\0  ", 0, NOLEN, -1, "NUL", 5},
    {"non-object: array", "[1,2]", 0, NOLEN, -1, "not a JSON object", 0},
    {"non-object: string", "\"abc\"", 0, NOLEN, -1, "not a JSON object", 0},
    {"non-object: number", "42", 0, NOLEN, -1, "not a JSON object", 0},
    {"entry not an object", "{\"a\":[1]}", 0, NOLEN, -1, "\"a\"", 0},
    {"bad dtype", "{" T("w", "F8", "[1]", 0, 1) "}", 1, NOLEN, -1, "dtype", 0},
    {"bad dtype: lower case", "{" T("w", "f32", "[1]", 0, 4) "}", 4, NOLEN, -1, "dtype", 0},
    {"dtype not a string", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, NOLEN, -1, "dtype", 0},
    {"shape/bytes mismatch", "{" T("w", "F32", "[2]", 0, 4) "}", 4, NOLEN, -1, "\"w\"", 0},
    {"shape/bytes mismatch f16", "{" T("w", "F16", "[3]", 0, 4) "}", 4, NOLEN, -1, "bytes", 0},
    {"offsets out of range", "{" T("w", "F32", "[4]", 0, 16) "}", 8, NOLEN, -1, "outside", 0},
    {"offsets reversed", "{" T("w", "F32", "[0]", 4, 0) "}", 4, NOLEN, -1, "outside", 0},
    {"offsets negative", "{" T("w", "F32", "[1]", -4, 0) "}", 4, NOLEN, -1, "data_offsets", 0},
    {"offsets three", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4, NOLEN, -1,
     "data_offsets", 0},
    {"offsets float", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, NOLEN, -1,
     "data_offsets", 0},
    {"overlapping ranges", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12, NOLEN, -1,
     "overlap", 0},
    {"same range twice", "{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 0, 4) "}", 4, NOLEN, -1, "overlap", 0},
    {"hole between tensors", "{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12, NOLEN, -1,
     "unreferenced", 0},
    {"trailing data bytes", "{" T("a", "F32", "[1]", 0, 4) "}", 8, NOLEN, -1, "trailing", 0},
    {"negative dim", "{" T("w", "F32", "[-1]", 0, 0) "}", 0, NOLEN, -1, "shape[0]", 0},
    {"float dim", "{" T("w", "F32", "[2.0]", 0, 8) "}", 8, NOLEN, -1, "shape[0]", 0},
    {"string dim", "{" T("w", "F32", "[\"2\"]", 0, 8) "}", 8, NOLEN, -1, "shape[0]", 0},
    {"shape not an array", "{" T("w", "F32", "4", 0, 16) "}", 16, NOLEN, -1, "shape", 0},
    {"too many dims", "{" T("w", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 1, NOLEN, -1, "dims", 0},
    {"huge dims overflow int64", "{" T("w", "F32", "[4294967296,4294967296,4]", 0, 4) "}", 4, NOLEN, -1,
     "overflow", 0},
    {"dims times dtype overflow", "{" T("w", "F64", "[2305843009213693952]", 0, 8) "}", 8, NOLEN, -1, "overflow", 0},
    {"dim saturating int64", "{" T("w", "F32", "[99999999999999999999]", 0, 4) "}", 4, NOLEN, -1, "shape[0]", 0},
    {"dim INT64_MAX", "{" T("w", "U8", "[9223372036854775807]", 0, 1) "}", 1, NOLEN, -1, "shape[0]", 0},
    {"duplicate names", "{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8, NOLEN, -1,
     "duplicate key \"a\"", 0},
    {"duplicate names, escaped", "{" T("a", "F32", "[1]", 0, 4) "," T("\\u0061", "F32", "[1]", 4, 8) "}", 8, NOLEN,
     -1, "duplicate", 0},
    {"duplicate field", "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     NOLEN, -1, "duplicate key \"dtype\"", 0},
    {"NUL in a name", "{" T("a\\u0000b", "F32", "[1]", 0, 4) "}", 4, NOLEN, -1, "NUL", 0},
    {"trailing garbage in header", "{} xyz", 0, NOLEN, -1, "trailing", 0},
    {"second JSON value", "{}{}", 0, NOLEN, -1, "trailing", 0},
    {"unknown field", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, NOLEN, -1,
     "unknown field \"extra\"", 0},
    {"missing field", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, NOLEN, -1, "data_offsets", 0},
    {"metadata not an object", "{\"__metadata__\":[1]}", 0, NOLEN, -1, "__metadata__", 0},
    {"metadata value not a string", "{\"__metadata__\":{\"k\":1}}", 0, NOLEN, -1, "\"k\"", 0},
    {"nested too deeply", "{\"__metadata__\":{\"k\":[[[[1]]]]}}", 0, NOLEN, -1, "JSON", 0},
};

static void test_malformed(void)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const bad *b = &bads[i];
        size_t hl = b->header_bytes ? b->header_bytes : strlen(b->header);
        unsigned char zeros[64] = {0};
        image im = make_image(b->header, hl, zeros, b->ndata, b->hlen);
        if (b->cut >= 0)
            im.n = (size_t)b->cut;
        porta_st_file *f = (porta_st_file *)&im; /* must be reset to NULL */
        porta_clear_error();
        porta_status st = porta_st_parse(im.p, im.n, &f);
        const char *msg = porta_last_error();
        CHECK(st == PORTA_ERR_FORMAT, "%s: status %s", b->what, porta_status_name(st));
        CHECK(f == NULL, "%s: output not cleared", b->what);
        CHECK(msg[0] && strstr(msg, "<memory>") && strstr(msg, b->expect), "%s: message \"%s\" lacks \"%s\"", b->what,
              msg, b->expect);
        if (st == PORTA_OK)
            porta_st_close(f);
        free(im.p);
    }
}

/* The fuzzer's findings and seeds: each must parse or be refused, never crash
 * (the test runs under the sanitizers in the sanitizer build). */
static void test_corpus(const char *dirpath)
{
    DIR *d = opendir(dirpath);
    CHECK(d != NULL, "corpus %s", dirpath);
    if (!d)
        return;
    int n = 0, ok = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dirpath, e->d_name);
        FILE *fp = fopen(path, "rb");
        if (!fp)
            continue;
        unsigned char *buf = malloc(1 << 20);
        size_t len = fread(buf, 1, 1 << 20, fp);
        fclose(fp);
        porta_st_file *f = NULL;
        porta_status st = porta_st_parse(buf, len, &f);
        CHECK(st == PORTA_OK || st == PORTA_ERR_FORMAT, "%s: %s", path, porta_status_name(st));
        if (st == PORTA_OK) {
            ok++;
            for (int i = 0; i < porta_st_count(f); i++) {
                const porta_st_tensor *t = porta_st_at(f, i);
                if (t->dtype <= PORTA_ST_BF16 && porta_st_numel(t) <= 4096) {
                    float out[4096];
                    CHECK(porta_st_to_f32(t, out, porta_st_numel(t)) == PORTA_OK, "%s: convert", path);
                }
            }
        } else {
            CHECK(porta_last_error()[0], "%s: empty message", path);
        }
        porta_st_close(f);
        free(buf);
        n++;
    }
    closedir(d);
    printf("corpus: %d files, %d valid\n", n, ok);
    CHECK(n > 0, "empty corpus");
}

/* Files written by the reference writer (safetensors.torch.save_file): the
 * committed Toto fixtures. */
static void test_fixtures(const char *datadir)
{
    char path[1024];
    porta_st_file *f = NULL;
    snprintf(path, sizeof path, "%s/toto-tiny/model.safetensors", datadir);
    CHECK(porta_st_open(path, &f) == PORTA_OK, "%s: %s", path, porta_last_error());
    if (f) {
        const porta_st_tensor *t = porta_st_find(f, "model.unembed.weight");
        CHECK(porta_st_count(f) == 42, "toto-tiny: %d tensors", porta_st_count(f));
        CHECK(t && t->dtype == PORTA_ST_F32 && t->ndim == 2 && t->shape[0] == 256 && t->shape[1] == 32,
              "toto-tiny: model.unembed.weight");
        porta_st_close(f);
    }
    f = NULL;
    snprintf(path, sizeof path, "%s/toto-tiny/reference.safetensors", datadir);
    CHECK(porta_st_open(path, &f) == PORTA_OK, "%s: %s", path, porta_last_error());
    if (f) {
        const porta_st_tensor *t = porta_st_find(f, "mean");
        const char *h = porta_st_metadata(f, "horizon");
        CHECK(t && t->ndim == 3 && t->shape[0] == 2 && t->shape[1] == 3 && t->shape[2] == 24, "reference: mean");
        CHECK(h && strcmp(h, "24") == 0, "reference: horizon metadata");
        porta_st_close(f);
    }
}

int main(int argc, char **argv)
{
    test_arguments();
    test_valid();
    test_malformed();
    if (argc > 1)
        test_corpus(argv[1]);
    if (argc > 2)
        test_fixtures(argv[2]);
    printf("%s: %zu malformed images, %d failures\n", failures ? "FAIL" : "ok", sizeof bads / sizeof bads[0],
           failures);
    return failures ? 1 : 0;
}
