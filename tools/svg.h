/* The forecast tool's plot: one panel per variate with the history, the mean
 * forecast and a quantile band. */
#ifndef PORTA_TOOLS_SVG_H
#define PORTA_TOOLS_SVG_H

typedef struct svg_plot {
    const char *path;
    int variates, history, horizon;
    const float *series;      /* [variates, history] */
    const float *mean;        /* [variates, horizon] */
    const float *lo, *hi;     /* [variates, horizon] band, or NULL */
    char *const *names;       /* variates names */
} svg_plot;

/* 1 on success; prints the failure on stderr otherwise. */
int svg_write(const svg_plot *p);

#endif
