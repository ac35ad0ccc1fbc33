/* porta-validate's comparisons and reports: per-output tables, the trace's
 * first diverging node, and the same as JSON. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "validate.h"

static const char *const out_name[OUT_COUNT] = {"df", "loc", "scale", "logits", "mean"};
static const char *const out_what[OUT_COUNT] = {
    "Student-T degrees of freedom (2 + softplus)", "component locations (scaled units)",
    "component scales (softplus, scaled units)", "mixture logits", "mean forecast (data units)"};

int output_shape(const validation *v, int o, int64_t *shape)
{
    shape[0] = v->series;
    shape[1] = v->variates;
    shape[2] = v->patch;
    shape[3] = v->k;
    return o == OUT_MEAN ? 3 : 4;
}

int64_t output_numel(const validation *v, int o)
{
    int64_t shape[4], n = 1;
    for (int i = 0, nd = output_shape(v, o, shape); i < nd; i++) n *= shape[i];
    return n;
}

errstat err_compare(const double *x, const double *ref, int64_t n)
{
    errstat e = {0, 0, 0, 0, 0};
    double sum = 0, ref_sum = 0;
    int64_t counted = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(ref[i])) {
            /* The same infinity on both sides is agreement (a masked score). */
            if (isnan(x[i]) || x[i] != ref[i]) e.nonfinite++;
            continue;
        }
        double d = fabs(x[i] - ref[i]);
        sum += d;
        ref_sum += fabs(ref[i]);
        if (counted++ == 0 || d > e.max_abs) {
            e.max_abs = d;
            e.worst = i;
        }
    }
    if (counted) {
        e.mae = sum / (double)counted;
        e.rel = ref_sum > 0 ? sum / ref_sum : (sum > 0 ? INFINITY : 0);
    }
    return e;
}

int err_pass(const errstat *e, double tol) { return e->nonfinite == 0 && e->rel <= tol; }

static void unravel(int64_t flat, int nd, const int64_t *shape, int64_t *idx)
{
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
}

static void format_index(char *buf, size_t len, int64_t flat, int nd, const int64_t *shape)
{
    int64_t idx[4];
    unravel(flat, nd, shape, idx);
    size_t at = 0;
    for (int d = 0; d < nd && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, "%s%lld", d ? "," : "[", (long long)idx[d]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

static errstat step_error(const validation *v, int r, int o, int step)
{
    int64_t n = output_numel(v, o);
    return err_compare(v->runs[r].out[o] + step * n, v->runs[v->ref].out[o] + step * n, n);
}

/* ---- trace -------------------------------------------------------------- */

typedef struct trace_result {
    int g;          /* graph */
    int n;
    errstat *e;     /* per node */
    int first;      /* first node over the threshold, -1: none */
    int worst;      /* node of the largest relative error */
    int *path;      /* from a leaf's consumer to `first`, following the worst input */
    int path_len;
} trace_result;

const char *const graph_name[GRAPH_COUNT] = {"prefill", "decode"};

static const trace_node *node_info(const validation *v, int g, int i) { return &v->runs[v->ref].nodes[g][i]; }

static int trace_analyse(const validation *v, int r, int g, trace_result *t)
{
    const backend_run *a = &v->runs[r], *ref = &v->runs[v->ref];
    memset(t, 0, sizeof *t);
    t->g = g;
    t->first = -1;
    t->n = ref->n_nodes[g];
    t->e = calloc((size_t)(t->n ? t->n : 1), sizeof *t->e);
    t->path = malloc((size_t)(t->n ? t->n : 1) * sizeof *t->path);
    if (!t->e || !t->path) return 0;
    for (int i = 0; i < t->n; i++) {
        const trace_node *ni = node_info(v, g, i);
        int64_t len = 1;
        for (int d = 0; d < ni->ndim; d++) len *= ni->shape[d];
        t->e[i] = err_compare(a->nodes[g][i].value, ref->nodes[g][i].value, len);
        if (t->first < 0 && !err_pass(&t->e[i], v->tol)) t->first = i;
        if (t->e[i].rel > t->e[t->worst].rel) t->worst = i;
    }
    for (int i = t->first; i >= 0;) {
        t->path[t->path_len++] = i;
        const trace_node *ni = node_info(v, g, i);
        int next = -1;
        for (int j = 0; j < ni->n_inputs; j++)
            if (ni->inputs[j] >= 0 && (next < 0 || t->e[ni->inputs[j]].rel > t->e[next].rel)) next = ni->inputs[j];
        i = next;
    }
    return 1;
}

static void trace_free(trace_result *t)
{
    free(t->e);
    free(t->path);
}

static void format_shape(char *buf, size_t len, const trace_node *ni)
{
    size_t at = 0;
    for (int d = 0; d < ni->ndim && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, "%s%lld", d ? ", " : "[", (long long)ni->shape[d]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

static void trace_text(const validation *v, int r, const trace_result *t, FILE *f)
{
    const char *name = v->runs[r].name, *refname = v->runs[v->ref].name;
    if (t->first < 0) {
        const trace_node *w = node_info(v, t->g, t->worst);
        fprintf(f, "trace %s %s vs %s: all %d nodes within %.1e (largest: %s (%s), relative MAE %.2e)\n\n",
                graph_name[t->g], name, refname, t->n, v->tol, w->name, w->op, t->e[t->worst].rel);
        return;
    }
    const trace_node *ni = node_info(v, t->g, t->first);
    char shape[96];
    format_shape(shape, sizeof shape, ni);
    const errstat *e = &t->e[t->first];
    fprintf(f, "trace %s %s vs %s: first node over %.1e, in topological order: node %d of %d\n", graph_name[t->g],
            name, refname, v->tol, t->first, t->n);
    fprintf(f, "  %s (op %s, shape %s): relative MAE %.3e, MAE %.3e, max |err| %.3e", ni->name, ni->op, shape, e->rel,
            e->mae, e->max_abs);
    if (e->nonfinite) fprintf(f, ", %lld non-finite", (long long)e->nonfinite);
    fputc('\n', f);
    for (int j = 0; j < ni->n_inputs; j++) {
        if (ni->inputs[j] < 0) {
            fprintf(f, "  input %d: a leaf (model input or weight), identical on both\n", j);
            continue;
        }
        const trace_node *in = node_info(v, t->g, ni->inputs[j]);
        fprintf(f, "  input %d: %s (op %s): relative MAE %.3e\n", j, in->name, in->op, t->e[ni->inputs[j]].rel);
    }
    fprintf(f, "  error growth from the inputs (through each node's worst input):\n");
    fprintf(f, "    %-32s %-17s %10s %8s\n", "node", "op", "rel MAE", "growth");
    double prev = 0;
    for (int k = t->path_len - 1; k >= 0; k--) {
        int i = t->path[k];
        const trace_node *pi = node_info(v, t->g, i);
        fprintf(f, "    %-32s %-17s %10.3e", pi->name, pi->op, t->e[i].rel);
        if (prev > 0) fprintf(f, " %8.3g", t->e[i].rel / prev);
        fputc('\n', f);
        prev = t->e[i].rel;
    }
    fputc('\n', f);
}

/* ---- text --------------------------------------------------------------- */

static int output_table(const validation *v, int o, FILE *f)
{
    int64_t shape[4];
    int nd = output_shape(v, o, shape), failed = 0;
    static const char *const dims[4] = {"series", "variates", "patch", "k"};
    fprintf(f, "%s: %s, per step [", out_name[o], out_what[o]);
    for (int d = 0; d < nd; d++) fprintf(f, "%s%s %lld", d ? ", " : "", dims[d], (long long)shape[d]);
    fprintf(f, "]\n");
    fprintf(f, "  %4s  %-10s %11s %11s %11s  %-16s %s\n", "step", "backend", "MAE", "rel MAE", "max |err|",
            "worst at", "result");
    for (int s = 0; s < v->steps; s++)
        for (int r = 0; r < v->n_runs; r++) {
            if (r == v->ref || v->runs[r].failed) continue;
            errstat e = step_error(v, r, o, s);
            char at[64];
            format_index(at, sizeof at, e.worst, nd, shape);
            int pass = err_pass(&e, v->tol);
            failed |= !pass;
            fprintf(f, "  %4d  %-10s %11.3e %11.3e %11.3e  %-16s %s", s, v->runs[r].name, e.mae, e.rel, e.max_abs,
                    at, pass ? "PASS" : "FAIL");
            if (e.nonfinite) fprintf(f, " (%lld non-finite)", (long long)e.nonfinite);
            fputc('\n', f);
        }
    fputc('\n', f);
    return failed;
}

/* The largest relative MAE of every step, over all outputs: growth with the
 * cache position at a glance. */
static void step_table(const validation *v, FILE *f)
{
    fprintf(f, "by step: largest relative MAE over the outputs\n");
    fprintf(f, "  %4s  %-10s %11s  %-8s %s\n", "step", "backend", "rel MAE", "output", "result");
    for (int s = 0; s < v->steps; s++)
        for (int r = 0; r < v->n_runs; r++) {
            if (r == v->ref || v->runs[r].failed) continue;
            int worst = 0, pass = 1;
            double rel = -1;
            for (int o = 0; o < OUT_COUNT; o++) {
                errstat e = step_error(v, r, o, s);
                pass &= err_pass(&e, v->tol);
                if (e.rel > rel) {
                    rel = e.rel;
                    worst = o;
                }
            }
            fprintf(f, "  %4d  %-10s %11.3e  %-8s %s\n", s, v->runs[r].name, rel, out_name[worst],
                    pass ? "PASS" : "FAIL");
        }
    fputc('\n', f);
}

int report_text(const validation *v, FILE *f)
{
    const backend_run *ref = &v->runs[v->ref];
    fprintf(f, "porta-validate: %s, input %s\n", v->model, v->input);
    fprintf(f, "reference %s (%s); %d forecast steps (step 0: prefill, then decode); threshold: relative MAE <= "
               "%.1e (%s)\n",
            ref->name, ref->device, v->steps, v->tol, v->dtype);
    for (int r = 0; r < v->n_runs; r++)
        if (r != v->ref) fprintf(f, "  %-10s %s\n", v->runs[r].name, v->runs[r].device);
    fputc('\n', f);
    int failed = 0;
    for (int r = 0; r < v->n_runs; r++)
        if (v->runs[r].failed) {
            fprintf(f, "%s: FAIL: %s\n\n", v->runs[r].name, v->runs[r].error);
            failed = 1;
        }
    int compared = 0;
    for (int r = 0; r < v->n_runs; r++) compared += r != v->ref && !v->runs[r].failed;
    if (ref->failed || !compared) {
        fprintf(f, "FAIL\n");
        return 1;
    }
    for (int o = 0; o < OUT_COUNT; o++) failed |= output_table(v, o, f);
    step_table(v, f);
    for (int r = 0; v->trace && r < v->n_runs; r++) {
        if (r == v->ref || v->runs[r].failed) continue;
        for (int g = 0; g < v->graphs; g++) {
            trace_result t;
            if (!trace_analyse(v, r, g, &t)) {
                fprintf(f, "trace %s %s: out of memory\n", graph_name[g], v->runs[r].name);
                failed = 1;
            } else {
                trace_text(v, r, &t, f);
                failed |= t.first >= 0;
            }
            trace_free(&t);
        }
    }
    fprintf(f, "%s\n", failed ? "FAIL" : "PASS");
    return failed;
}

/* ---- JSON --------------------------------------------------------------- */

static void json_num(FILE *f, double x)
{
    if (isfinite(x)) fprintf(f, "%.6e", x);
    else fprintf(f, "null");
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static void json_err(FILE *f, const errstat *e)
{
    fprintf(f, "\"mae\": ");
    json_num(f, e->mae);
    fprintf(f, ", \"rel_mae\": ");
    json_num(f, e->rel);
    fprintf(f, ", \"max_abs\": ");
    json_num(f, e->max_abs);
    fprintf(f, ", \"nonfinite\": %lld", (long long)e->nonfinite);
}

static void json_node(FILE *f, const validation *v, const trace_result *t, int i)
{
    const trace_node *ni = node_info(v, t->g, i);
    fprintf(f, "{\"index\": %d, \"name\": ", i);
    json_str(f, ni->name);
    fprintf(f, ", \"op\": ");
    json_str(f, ni->op);
    fprintf(f, ", \"shape\": [");
    for (int d = 0; d < ni->ndim; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)ni->shape[d]);
    fprintf(f, "], ");
    json_err(f, &t->e[i]);
    fprintf(f, "}");
}

static int json_trace(const validation *v, int r, int g, FILE *f)
{
    trace_result t;
    if (!trace_analyse(v, r, g, &t)) {
        trace_free(&t);
        fprintf(f, "null");
        return 1;
    }
    fprintf(f, "{\"nodes\": %d, \"first_over\": ", t.n);
    if (t.first < 0) {
        fprintf(f, "null");
    } else {
        json_node(f, v, &t, t.first);
        fprintf(f, ", \"inputs\": [");
        const trace_node *ni = node_info(v, t.g, t.first);
        for (int j = 0, k = 0; j < ni->n_inputs; j++) {
            if (ni->inputs[j] < 0) continue;
            fprintf(f, "%s", k++ ? ", " : "");
            json_node(f, v, &t, ni->inputs[j]);
        }
        fprintf(f, "], \"path\": [");
        for (int k = t.path_len - 1; k >= 0; k--) {
            json_node(f, v, &t, t.path[k]);
            fprintf(f, "%s", k ? ", " : "");
        }
        fprintf(f, "]");
    }
    fprintf(f, ", \"worst\": ");
    json_node(f, v, &t, t.worst);
    fprintf(f, "}");
    int failed = t.first >= 0;
    trace_free(&t);
    return failed;
}

static int json_run(const validation *v, int r, FILE *f)
{
    const backend_run *b = &v->runs[r];
    int failed = b->failed;
    fprintf(f, "    {\"backend\": ");
    json_str(f, b->name);
    fprintf(f, ", \"device\": ");
    json_str(f, b->device);
    if (b->failed) {
        fprintf(f, ", \"error\": ");
        json_str(f, b->error);
    }
    fprintf(f, ", \"reference\": %s", r == v->ref ? "true" : "false");
    if (r != v->ref && !b->failed && !v->runs[v->ref].failed) {
        fprintf(f, ",\n     \"steps\": [");
        for (int s = 0; s < v->steps; s++) {
            fprintf(f, "%s\n      {\"step\": %d", s ? "," : "", s);
            for (int o = 0; o < OUT_COUNT; o++) {
                int64_t shape[4];
                int nd = output_shape(v, o, shape);
                errstat e = step_error(v, r, o, s);
                int pass = err_pass(&e, v->tol);
                failed |= !pass;
                fprintf(f, ", \"%s\": {", out_name[o]);
                json_err(f, &e);
                fprintf(f, ", \"worst\": [");
                int64_t idx[4];
                unravel(e.worst, nd, shape, idx);
                for (int d = 0; d < nd; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)idx[d]);
                fprintf(f, "], \"pass\": %s}", pass ? "true" : "false");
            }
            fprintf(f, "}");
        }
        fprintf(f, "]");
        if (v->trace) {
            fprintf(f, ",\n     \"trace\": {");
            for (int g = 0; g < v->graphs; g++) {
                fprintf(f, "%s\"%s\": ", g ? ",\n               " : "", graph_name[g]);
                failed |= json_trace(v, r, g, f);
            }
            fprintf(f, "}");
        }
    }
    fprintf(f, ",\n     \"pass\": %s}", failed ? "false" : "true");
    return failed;
}

int report_json(const validation *v, FILE *f)
{
    int failed = v->runs[v->ref].failed;
    fprintf(f, "{\"model\": ");
    json_str(f, v->model);
    fprintf(f, ", \"input\": ");
    json_str(f, v->input);
    fprintf(f, ", \"reference\": ");
    json_str(f, v->runs[v->ref].name);
    fprintf(f, ", \"dtype\": ");
    json_str(f, v->dtype);
    fprintf(f, ", \"tolerance\": ");
    json_num(f, v->tol);
    fprintf(f, ", \"steps\": %d,\n  \"backends\": [\n", v->steps);
    for (int r = 0; r < v->n_runs; r++) {
        failed |= json_run(v, r, f);
        fprintf(f, "%s\n", r + 1 < v->n_runs ? "," : "");
    }
    fprintf(f, "  ],\n  \"pass\": %s}\n", failed ? "false" : "true");
    return failed;
}
