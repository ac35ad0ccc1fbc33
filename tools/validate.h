/* porta-validate: the results of one forecast on several backends, their
 * comparison with a reference backend, and the reports (tables or JSON). */
#ifndef PORTA_TOOLS_VALIDATE_H
#define PORTA_TOOLS_VALIDATE_H

#include <stdint.h>
#include <stdio.h>
#include "porta/toto.h"

#define MAX_BACKENDS 8

/* What is compared at every forecast step: the mixture's parameters and the
 * mean forecast's patch. */
enum { OUT_DF, OUT_LOC, OUT_SCALE, OUT_LOGITS, OUT_MEAN, OUT_COUNT };

/* The traced graphs: the prefill and the first decode step. */
enum { GRAPH_PREFILL, GRAPH_DECODE, GRAPH_COUNT };
extern const char *const graph_name[GRAPH_COUNT];

/* A node of a traced graph, as porta_program_node_info tells it. */
typedef struct trace_node {
    char name[48], op[24];
    int ndim;
    int64_t shape[PORTA_MAX_DIMS];
    int n_inputs;
    int inputs[4]; /* trace index of each input's producer, -1 for a leaf */
    double *value; /* its result on this backend */
} trace_node;

/* One backend's forecast (and traced graphs, with --trace). */
typedef struct backend_run {
    const char *name;
    char device[160];
    int failed; /* the run stopped with an error */
    char error[320];
    double *out[OUT_COUNT]; /* [steps][numel of one step] */
    int n_nodes[GRAPH_COUNT];
    trace_node *nodes[GRAPH_COUNT]; /* execution (topological) order */
} backend_run;

/* Error of a result against the reference's. */
typedef struct errstat {
    double mae, rel, max_abs; /* rel: mae / mean |reference| */
    int64_t worst;            /* flat index of the largest |error| */
    int64_t nonfinite;        /* elements finite on one side only (or NaN) */
} errstat;

typedef struct validation {
    const char *model, *input;
    int steps;                   /* forecast patches: the prefill's, then one per decode step */
    int series, variates, patch, k;
    const char *dtype;           /* compute dtype the threshold belongs to */
    double tol;                  /* relative MAE threshold */
    int trace;
    int graphs;                  /* graphs traced: the prefill, and the decode when steps > 1 */
    int n_runs, ref;             /* ref: index of the reference run */
    backend_run runs[MAX_BACKENDS];
} validation;

/* Shape of one step of output o ([series, variates, patch, k] or
 * [series, variates, patch] for the mean); returns its rank. */
int output_shape(const validation *v, int o, int64_t *shape);
int64_t output_numel(const validation *v, int o);

errstat err_compare(const double *x, const double *ref, int64_t n);
int err_pass(const errstat *e, double tol);

/* Print the comparison; each returns 1 when a threshold is exceeded or a run
 * failed, else 0. */
int report_text(const validation *v, FILE *f);
int report_json(const validation *v, FILE *f);

#endif
