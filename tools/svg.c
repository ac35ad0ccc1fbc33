/* SVG output of porta-forecast: plain polylines, no dependencies. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "svg.h"

#define PANEL_W 800
#define PANEL_H 220
#define MARGIN 40

typedef struct frame {
    int shown, total; /* history points shown, points on the x axis */
    double lo, hi;    /* y range */
    int top;          /* panel offset */
} frame;

static double fx(const frame *f, int i) { return MARGIN + (PANEL_W - 2.0 * MARGIN) * i / (f->total - 1 > 0 ? f->total - 1 : 1); }
static double fy(const frame *f, double v) { return f->top + PANEL_H - MARGIN - (PANEL_H - 2.0 * MARGIN) * (v - f->lo) / (f->hi - f->lo); }

static void range(const float *v, int n, double *lo, double *hi)
{
    for (int i = 0; v && i < n; i++) {
        if (v[i] < *lo) *lo = v[i];
        if (v[i] > *hi) *hi = v[i];
    }
}

/* Variate names come from the CSV header: escape what XML reserves. */
static void text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

static void polyline(FILE *f, const frame *fr, const float *v, int n, int x0, const char *style)
{
    fprintf(f, "<polyline fill=\"none\" %s points=\"", style);
    for (int i = 0; i < n; i++) fprintf(f, "%.1f,%.1f ", fx(fr, x0 + i), fy(fr, v[i]));
    fprintf(f, "\"/>\n");
}

static void panel(FILE *f, const svg_plot *p, int v)
{
    /* At most four horizons of history keep the forecast readable. */
    int shown = p->history < 4 * p->horizon ? p->history : 4 * p->horizon;
    const float *hist = p->series + (size_t)v * p->history + (p->history - shown);
    const float *mean = p->mean + (size_t)v * p->horizon;
    frame fr = {shown, shown + p->horizon, INFINITY, -INFINITY, v * PANEL_H};
    range(hist, shown, &fr.lo, &fr.hi);
    range(mean, p->horizon, &fr.lo, &fr.hi);
    if (p->lo) {
        range(p->lo + (size_t)v * p->horizon, p->horizon, &fr.lo, &fr.hi);
        range(p->hi + (size_t)v * p->horizon, p->horizon, &fr.lo, &fr.hi);
    }
    if (!(fr.hi > fr.lo)) {
        fr.lo -= 1;
        fr.hi += 1;
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-family=\"sans-serif\" font-size=\"13\">", MARGIN, fr.top + 20);
    text(f, p->names[v]);
    fprintf(f, "</text>\n");
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#bbb\" stroke-dasharray=\"4\"/>\n",
            fx(&fr, shown), fr.top + MARGIN, fx(&fr, shown), fr.top + PANEL_H - MARGIN);
    if (p->lo) {
        const float *lo = p->lo + (size_t)v * p->horizon, *hi = p->hi + (size_t)v * p->horizon;
        fprintf(f, "<polygon fill=\"#1f77b4\" fill-opacity=\"0.25\" points=\"");
        for (int i = 0; i < p->horizon; i++) fprintf(f, "%.1f,%.1f ", fx(&fr, shown + i), fy(&fr, hi[i]));
        for (int i = p->horizon - 1; i >= 0; i--) fprintf(f, "%.1f,%.1f ", fx(&fr, shown + i), fy(&fr, lo[i]));
        fprintf(f, "\"/>\n");
    }
    polyline(f, &fr, hist, shown, 0, "stroke=\"#333\" stroke-width=\"1.2\"");
    polyline(f, &fr, mean, p->horizon, shown, "stroke=\"#1f77b4\" stroke-width=\"1.6\"");
}

int svg_write(const svg_plot *p)
{
    FILE *f = fopen(p->path, "w");
    if (!f) {
        fprintf(stderr, "porta-forecast: cannot write %s: %s\n", p->path, strerror(errno));
        return 0;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">\n", PANEL_W,
            PANEL_H * p->variates);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    for (int v = 0; v < p->variates; v++) panel(f, p, v);
    fprintf(f, "</svg>\n");
    int ok = !ferror(f);
    ok = (fclose(f) == 0) && ok;
    if (!ok) fprintf(stderr, "porta-forecast: writing %s failed\n", p->path);
    return ok;
}
