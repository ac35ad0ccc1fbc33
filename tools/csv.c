/* A small CSV reader for numeric series (no quoting: series files need none). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "csv.h"

typedef struct line_list {
    char **v;
    int n, cap;
} line_list;

static int push(line_list *l, char *s)
{
    if (l->n == l->cap) {
        char **v = realloc(l->v, (size_t)(l->cap = l->cap * 2 + 16) * sizeof *v);
        if (!v) return 0;
        l->v = v;
    }
    l->v[l->n++] = s;
    return 1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = '\0';
    return s;
}

/* Splits s in place at commas. */
static int split(char *s, line_list *out)
{
    out->n = 0;
    for (;;) {
        char *c = strchr(s, ',');
        if (c) *c = '\0';
        if (!push(out, trim(s))) return 0;
        if (!c) return 1;
        s = c + 1;
    }
}

/* 1: a number (NaN included: it is reported as a missing value later). */
static int number(const char *s, double *v)
{
    if (!*s) return 0;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *end == '\0' && errno != ERANGE;
}

static int read_lines(FILE *f, line_list *lines)
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int c;
    for (;;) {
        c = fgetc(f);
        if (len + 1 >= cap) {
            char *b = realloc(buf, cap = cap * 2 + 256);
            if (!b) {
                free(buf);
                return 0;
            }
            buf = b;
        }
        if (c == '\n' || c == EOF) {
            buf[len] = '\0';
            if (len || c != EOF) {
                char *copy = malloc(len + 1);
                if (!copy || !push(lines, copy)) {
                    free(copy);
                    free(buf);
                    return 0;
                }
                memcpy(copy, buf, len + 1);
            }
            len = 0;
            if (c == EOF) break;
        } else {
            buf[len++] = (char)c;
        }
    }
    free(buf);
    return 1;
}

void csv_free(csv_table *t)
{
    for (int i = 0; t->names && i < t->cols; i++) free(t->names[i]);
    for (int i = 0; t->stamps && i < t->rows; i++) free(t->stamps[i]);
    free(t->names);
    free(t->stamps);
    free(t->data);
    memset(t, 0, sizeof *t);
}

static char *dup(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

static porta_status parse(line_list *lines, csv_table *t, char *err, int errlen)
{
    line_list f = {0};
    int first = 0;
    while (first < lines->n && !*trim(lines->v[first])) first++;
    if (first == lines->n) {
        snprintf(err, (size_t)errlen, "no data");
        return PORTA_ERR_FORMAT;
    }
    /* The header is a first line none of whose variate fields is a number;
     * the timestamp column is a first column that is not a number in the
     * first data line. */
    char *probe = dup(lines->v[first]);
    if (!probe || !split(probe, &f)) {
        free(probe);
        free(f.v);
        return PORTA_ERR_NOMEM;
    }
    double v;
    int header = 1;
    for (int i = 1; i < f.n; i++) header &= !number(f.v[i], &v);
    if (f.n == 1) header = !number(f.v[0], &v);
    int data0 = first + header;
    int ncols = f.n;
    porta_status s = PORTA_OK;
    if (data0 >= lines->n) {
        snprintf(err, (size_t)errlen, "a header but no data lines");
        s = PORTA_ERR_FORMAT;
    }
    int stamped = 0;
    if (s == PORTA_OK) {
        char *d = dup(lines->v[data0]);
        line_list g = {0};
        if (!d || !split(d, &g)) s = PORTA_ERR_NOMEM;
        else stamped = g.n > 1 && !number(g.v[0], &v);
        free(d);
        free(g.v);
    }
    t->cols = ncols - stamped;
    if (s == PORTA_OK && t->cols < 1) {
        snprintf(err, (size_t)errlen, "line %d: no numeric column", data0 + 1);
        s = PORTA_ERR_FORMAT;
    }
    if (s == PORTA_OK) {
        t->names = calloc((size_t)t->cols, sizeof *t->names);
        if (!t->names) s = PORTA_ERR_NOMEM;
        for (int c = 0; s == PORTA_OK && c < t->cols; c++) {
            char name[32];
            snprintf(name, sizeof name, "v%d", c);
            t->names[c] = dup(header ? f.v[c + stamped] : name);
            if (!t->names[c]) s = PORTA_ERR_NOMEM;
        }
    }
    free(probe);
    int nrows = 0;
    for (int i = data0; i < lines->n; i++) nrows += *trim(lines->v[i]) != '\0';
    if (s == PORTA_OK) {
        t->data = malloc((size_t)nrows * t->cols * sizeof(float));
        if (stamped) t->stamps = calloc((size_t)nrows, sizeof *t->stamps);
        if (!t->data || (stamped && !t->stamps)) s = PORTA_ERR_NOMEM;
    }
    for (int i = data0; s == PORTA_OK && i < lines->n; i++) {
        if (!*trim(lines->v[i])) continue;
        if (!split(lines->v[i], &f)) {
            s = PORTA_ERR_NOMEM;
            break;
        }
        if (f.n != ncols) {
            snprintf(err, (size_t)errlen, "line %d: %d fields, expected %d", i + 1, f.n, ncols);
            s = PORTA_ERR_FORMAT;
            break;
        }
        if (stamped && !(t->stamps[t->rows] = dup(f.v[0]))) {
            s = PORTA_ERR_NOMEM;
            break;
        }
        for (int c = 0; c < t->cols; c++) {
            const char *fld = f.v[c + stamped];
            if (!number(fld, &v)) {
                snprintf(err, (size_t)errlen, "line %d, column %d: \"%s\" is not a number", i + 1, c + stamped + 1,
                         fld);
                s = PORTA_ERR_FORMAT;
                break;
            }
            t->data[(size_t)t->rows * t->cols + c] = (float)v;
        }
        t->rows++;
    }
    free(f.v);
    if (s == PORTA_ERR_NOMEM) snprintf(err, (size_t)errlen, "out of memory");
    return s;
}

porta_status csv_read(const char *path, csv_table *t, char *err, int errlen)
{
    memset(t, 0, sizeof *t);
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) {
        snprintf(err, (size_t)errlen, "cannot open %s: %s", path, strerror(errno));
        return PORTA_ERR_IO;
    }
    line_list lines = {0};
    int ok = read_lines(f, &lines);
    if (f != stdin) fclose(f);
    porta_status s = ok ? parse(&lines, t, err, errlen) : PORTA_ERR_NOMEM;
    if (!ok) snprintf(err, (size_t)errlen, "out of memory");
    for (int i = 0; i < lines.n; i++) free(lines.v[i]);
    free(lines.v);
    if (s != PORTA_OK) csv_free(t);
    return s;
}
