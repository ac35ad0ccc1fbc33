/* TotoForecaster on porta: prefill the context once, then decode one patch
 * per step, feeding back the mixture mean (mean path) or one draw per sample
 * path. Sample paths share their series' prefill through
 * porta_kvcache_share_rows instead of repeating the context per sample. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "toto_internal.h"

struct porta_toto_forecaster {
    porta_toto_model *m;
    porta_toto_forecast_desc d;
    int P, K, V, B;
    int S;        /* paths per series: samples, or 1 for the mean path */
    int R;        /* decode rows = S * B, sample-major as toto-ts */
    int Lp, Tc;   /* padded context length and its patches */
    int steps;    /* patches to forecast */
    int N;        /* series length at the end: Lp + steps * P */
    porta_kvcache *kv;
    porta_program *prefill, *decode;
    int dev;      /* draws made by the programs (porta_mixture_sample), else on the host */
    /* host state, one entry per (row, variate) */
    double *x, *w;      /* [R * V][N] values and observation weights */
    int32_t *id;        /* [R][V][Tc + steps] group id per patch */
    toto_scaler_state *scaler; /* [R * V] running scaler sums */
    double *ploc, *pscale; /* [N / P] scaler statistics of one series */
    double *sloc, *sscale; /* [R * V] statistics of the patch fed this step */
    float *in_x, *in_mask;
    float *out[TOTO_HEAD_COUNT];
    float *draws;       /* [R * V * P] this step's draws (sample paths) */
    double *dist[TOTO_HEAD_COUNT]; /* parameters for on_step only */
    double *probs;      /* [K] unnormalised mixture weights of one value */
    double *draw;       /* [P] one row's forecast patch before scaling */
    int32_t *row_new;   /* prefill counts per cache row: the first sample's rows only */
};

void porta_toto_forecaster_free(porta_toto_forecaster *f)
{
    if (!f) return;
    porta_program_free(f->prefill);
    porta_program_free(f->decode);
    porta_kvcache_free(f->kv);
    free(f->x);
    free(f->w);
    free(f->id);
    free(f->scaler);
    free(f->ploc);
    free(f->pscale);
    free(f->sloc);
    free(f->sscale);
    free(f->in_x);
    free(f->in_mask);
    for (int k = 0; k < TOTO_HEAD_COUNT; k++) {
        free(f->out[k]);
        free(f->dist[k]);
    }
    free(f->probs);
    free(f->draw);
    free(f->draws);
    free(f->row_new);
    free(f);
}

static porta_status check_desc(const porta_toto_forecast_desc *d)
{
    if (d->series < 1 || d->variates < 1 || d->context_len < 1 || d->horizon < 1 || d->samples < 0)
        return toto_fail(PORTA_ERR_ARG,
                         "porta_toto_forecaster_new: series %d, variates %d, context_len %d, horizon %d must be "
                         ">= 1 and samples %d >= 0",
                         d->series, d->variates, d->context_len, d->horizon, d->samples);
    return PORTA_OK;
}

static porta_status alloc_host(porta_toto_forecaster *f)
{
    size_t RV = (size_t)f->R * f->V, P = (size_t)f->P, K = (size_t)f->K;
    size_t in_rows = (size_t)f->B * f->Tc > (size_t)f->R ? (size_t)f->B * f->Tc : (size_t)f->R;
    /* Zeroed: a sample row's context part is never written (share_prefill). */
    f->x = calloc(RV * f->N, sizeof(double));
    f->w = calloc(RV * f->N, sizeof(double));
    f->id = malloc(RV * (size_t)(f->Tc + f->steps) * sizeof(int32_t));
    f->scaler = malloc(RV * sizeof *f->scaler);
    f->ploc = malloc((size_t)(f->N / f->P) * sizeof(double));
    f->pscale = malloc((size_t)(f->N / f->P) * sizeof(double));
    f->sloc = malloc(RV * sizeof(double));
    f->sscale = malloc(RV * sizeof(double));
    f->in_x = malloc(in_rows * f->V * P * sizeof(float));
    f->in_mask = malloc(in_rows * f->V * f->V * sizeof(float));
    f->probs = malloc(K * sizeof(double));
    f->draw = malloc(P * sizeof(double));
    f->row_new = malloc(RV * sizeof(int32_t));
    f->draws = f->d.samples > 0 ? malloc(RV * P * sizeof(float)) : NULL;
    int ok = f->x && f->w && f->id && f->scaler && f->ploc && f->pscale && f->sloc && f->sscale && f->in_x &&
             f->in_mask && f->probs && f->draw && f->row_new && (f->draws || f->d.samples == 0);
    for (size_t r = 0; ok && r < RV; r++) f->row_new[r] = r < (size_t)f->B * f->V ? f->Tc : 0;
    for (int k = 0; k < TOTO_HEAD_COUNT; k++) {
        f->out[k] = malloc(RV * P * K * sizeof(float));
        f->dist[k] = malloc(RV * P * K * sizeof(double));
        ok = ok && f->out[k] && f->dist[k];
    }
    return ok ? PORTA_OK : toto_fail(PORTA_ERR_NOMEM, "porta_toto_forecaster_new: no host memory");
}

porta_status porta_toto_forecaster_new(porta_toto_model *m, const porta_toto_forecast_desc *d,
                                       porta_toto_forecaster **out)
{
    if (!m || !d || !out) return toto_fail(PORTA_ERR_ARG, "porta_toto_forecaster_new: null argument");
    *out = NULL;
    porta_status s = check_desc(d);
    if (s != PORTA_OK) return s;
    porta_toto_forecaster *f = calloc(1, sizeof *f);
    if (!f) return toto_fail(PORTA_ERR_NOMEM, "porta_toto_forecaster_new: no host memory");
    const porta_toto_config *c = &m->cfg;
    f->m = m;
    f->d = *d;
    f->P = c->patch_size;
    f->K = c->k_components;
    f->V = d->variates;
    f->B = d->series;
    f->S = d->samples > 0 ? d->samples : 1;
    f->R = f->S * f->B;
    f->Tc = (d->context_len + f->P - 1) / f->P;
    f->Lp = f->Tc * f->P;
    f->steps = (d->horizon + f->P - 1) / f->P;
    f->N = f->Lp + f->steps * f->P;
    f->dev = d->samples > 0 && !d->host_sampler && porta_backend_can_sample(m->be);
    s = alloc_host(f);
    porta_kvcache_desc kd = {
        .layers = m->n_time_layers,
        .rows = f->R * f->V,
        .heads = c->num_heads,
        .max_len = f->Tc + f->steps,
        .head_dim = c->embed_dim / c->num_heads,
        .dtype = PORTA_F32,
    };
    if (s == PORTA_OK) s = porta_kvcache_new(m->be, &kd, &f->kv);
    /* The prefill covers each series once: cache rows [0, B * V), which are
     * the first sample's rows in the sample-major layout. */
    /* With draws on the backend, the prefill draws every sample's first
     * patch from its series' mixtures: [S, B, V, P], sample-major as the
     * decode rows. */
    if (s == PORTA_OK) s = toto_build(m, f->kv, f->B, f->V, f->Tc, 0, f->dev ? f->S : 0, &f->prefill);
    if (s == PORTA_OK && f->steps > 1) s = toto_build(m, f->kv, f->R, f->V, 1, 0, f->dev, &f->decode);
    if (s != PORTA_OK) {
        porta_toto_forecaster_free(f);
        return s;
    }
    *out = f;
    return PORTA_OK;
}

porta_status porta_toto_forecaster_stats(const porta_toto_forecaster *f, porta_program_stats *prefill,
                                         porta_program_stats *decode)
{
    if (!f) return toto_fail(PORTA_ERR_ARG, "porta_toto_forecaster_stats: null forecaster");
    porta_status s = PORTA_OK;
    if (prefill) s = porta_program_stats_get(f->prefill, prefill);
    if (decode) {
        memset(decode, 0, sizeof *decode);
        if (s == PORTA_OK && f->decode) s = porta_program_stats_get(f->decode, decode);
    }
    return s;
}

/* Left-pads every series to whole patches as toto-ts's pad_array and
 * pad_id_mask do, and refuses non-finite observations. */
static porta_status load_context(porta_toto_forecaster *f, const porta_toto_inputs *in)
{
    int L = f->d.context_len, pad = f->Lp - L, NP = f->Tc + f->steps;
    for (int b = 0; b < f->B; b++)
        for (int v = 0; v < f->V; v++) {
            size_t r = (size_t)b * f->V + v, src = r * (size_t)L;
            double *x = f->x + r * f->N, *w = f->w + r * f->N;
            int32_t *id = f->id + r * NP;
            for (int t = 0; t < pad; t++) x[t] = w[t] = 0;
            for (int t = 0; t < L; t++) {
                double obs = in->padding_mask ? in->padding_mask[src + t] != 0 : 1;
                double val = in->series[src + t];
                if (obs && !isfinite(val))
                    return toto_fail(PORTA_ERR_FORMAT, "series %d, variate %d: value %d is not finite (%g)", b, v,
                                     t, val);
                /* Unobserved steps carry no weight; toto-ts's zero padding. */
                x[pad + t] = obs ? val : 0;
                w[pad + t] = obs;
            }
            for (int p = 0; p < f->Tc; p++) {
                int first = p * f->P - pad, last = first + f->P - 1;
                int32_t lo = in->id_mask ? in->id_mask[src + (first < 0 ? 0 : first)] : 0;
                for (int t = first < 0 ? 0 : first; in->id_mask && t <= last; t++)
                    if (in->id_mask[src + t] != lo)
                        return toto_fail(PORTA_ERR_FORMAT,
                                         "series %d, variate %d: id_mask changes inside patch %d (steps %d..%d)", b,
                                         v, p, first, last);
                id[p] = lo;
            }
        }
    return PORTA_OK;
}

/* Scaled patches [rows, V, T, P] ending at patch `end` (exclusive) and the
 * scaler statistics of patch end - 1 for each row. The prefill starts each
 * row's running sums; a decode step extends them by the patch appended last. */
static void scale_inputs(porta_toto_forecaster *f, int rows, int T, int end)
{
    int P = f->P, first = end - T;
    for (size_t r = 0; r < (size_t)rows * f->V; r++) {
        const double *x = f->x + r * f->N, *w = f->w + r * f->N;
        if (end == f->Tc) toto_scaler_start(&f->m->cfg, x, w, f->Lp, &f->scaler[r]);
        toto_scaler_extend(&f->m->cfg, &f->scaler[r], x + (size_t)first * P, w + (size_t)first * P, T * P,
                           f->ploc + first, f->pscale + first);
        float *dst = f->in_x + r * (size_t)T * P;
        for (int p = end - T; p < end; p++)
            for (int i = 0; i < P; i++)
                *dst++ = (float)((x[p * P + i] - f->ploc[p]) / f->pscale[p]);
        f->sloc[r] = f->ploc[end - 1];
        f->sscale[r] = f->pscale[end - 1];
    }
}

/* Additive space-wise mask [rows * T, V, V]: 0 within a group, -inf across. */
static void space_mask(porta_toto_forecaster *f, int rows, int T, int end)
{
    int V = f->V, NP = f->Tc + f->steps;
    float *dst = f->in_mask;
    for (int b = 0; b < rows; b++)
        for (int p = end - T; p < end; p++)
            for (int i = 0; i < V; i++)
                for (int j = 0; j < V; j++)
                    *dst++ = f->id[((size_t)b * V + i) * NP + p] == f->id[((size_t)b * V + j) * NP + p] ? 0.0f
                                                                                                     : -INFINITY;
}

/* Every value's mixture parameters, for on_step. */
static void to_dist(porta_toto_forecaster *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        f->dist[TOTO_HEAD_DF][i] = toto_student_df(f->out[TOTO_HEAD_DF][i]);
        f->dist[TOTO_HEAD_LOC][i] = f->out[TOTO_HEAD_LOC][i];
        f->dist[TOTO_HEAD_SCALE][i] = toto_mixture_scale(f->out[TOTO_HEAD_SCALE][i]);
        f->dist[TOTO_HEAD_LOGITS][i] = f->out[TOTO_HEAD_LOGITS][i];
    }
}

/* porta_mixture_sample's key for a step: the seed in 24, 24 and 16 bits,
 * the stream. */
static void sample_key(const porta_toto_forecaster *f, int64_t stream, float key[4])
{
    uint64_t seed = f->d.seed;
    key[0] = (float)(seed & 0xFFFFFF);
    key[1] = (float)(seed >> 24 & 0xFFFFFF);
    key[2] = (float)(seed >> 48);
    key[3] = (float)stream;
}

/* Without the op on the backend: the op's draws on the host, the same values
 * (mixture_sample.h): `draws` draws from each of the rows x P mixtures in
 * f->out, numbered as the op numbers them. */
static void host_draws(porta_toto_forecaster *f, int rows, int draws, int step)
{
    float key[4];
    sample_key(f, step, key);
    int64_t M = (int64_t)rows * f->V * f->P, K = f->K;
    for (int64_t j = 0; j < M * draws; j++) {
        int64_t o = j % M * K;
        pmx_rng r = pmx_rng_init(key[0], key[1], key[2], key[3], (uint32_t)j);
        f->draws[j] = (float)pmx_draw(&r, f->out[TOTO_HEAD_DF] + o, f->out[TOTO_HEAD_LOC] + o,
                                      f->out[TOTO_HEAD_SCALE] + o, f->out[TOTO_HEAD_LOGITS] + o, f->K);
    }
}

/* One replay of p on patches [end - T, end) of every row, into outputs;
 * p draws (takes the sampling key) when `stream` >= 0, which numbers the
 * step's draws. */
static porta_status replay(porta_toto_forecaster *f, porta_program *p, int rows, int T, int end, int64_t stream,
                           float *const *outputs)
{
    scale_inputs(f, rows, T, end);
    const float *inputs[3] = {f->in_x};
    int n_in = 1;
    if (toto_has_spacewise(&f->m->cfg)) {
        space_mask(f, rows, T, end);
        inputs[n_in++] = f->in_mask;
    }
    float key[4];
    sample_key(f, stream, key);
    if (stream >= 0) inputs[n_in++] = key;
    porta_step st = {.n_new = T, .row_new = rows < f->R ? f->row_new : NULL, .inputs = inputs, .outputs = outputs};
    porta_status s = porta_run(p, &st);
    return s == PORTA_OK ? porta_program_wait(p) : s;
}

/* Step `step` (0: the prefill) into f->out, or the parts of it read: the
 * mixture parameters for on_step (params), for host draws or the mean path's
 * weights and locations; and for sample paths the step's draws into
 * f->draws (`draws` from each mixture, by the program or on the host). */
static porta_status run(porta_toto_forecaster *f, porta_program *p, int rows, int T, int end, int step, int params,
                        int draws)
{
    float *outputs[TOTO_HEAD_COUNT + 1];
    for (int h = 0; h < TOTO_HEAD_COUNT; h++) {
        int mean_reads = f->d.samples == 0 && (h == TOTO_HEAD_LOC || h == TOTO_HEAD_LOGITS);
        outputs[h] = params || mean_reads || (f->d.samples > 0 && !f->dev) ? f->out[h] : NULL;
    }
    outputs[TOTO_HEAD_COUNT] = f->draws;
    porta_status s = replay(f, p, rows, T, end, f->dev ? step : -1, outputs);
    if (s == PORTA_OK && f->d.samples > 0 && !f->dev) host_draws(f, rows, draws, step);
    return s;
}

/* Whether report() hands on_step the mixture parameters. */
static int wants_params(const porta_toto_inputs *in) { return in->on_step && !in->step_only; }

static void report(porta_toto_forecaster *f, const porta_toto_inputs *in, int step, int rows)
{
    if (!in->on_step) return;
    int params = !in->step_only;
    if (params) to_dist(f, (size_t)rows * f->V * f->P * f->K);
    porta_toto_dist d = {
        .step = step, .rows = rows, .variates = f->V, .patch = f->P, .k = f->K,
        .df = params ? f->dist[TOTO_HEAD_DF] : NULL, .loc = params ? f->dist[TOTO_HEAD_LOC] : NULL,
        .scale = params ? f->dist[TOTO_HEAD_SCALE] : NULL, .logits = params ? f->dist[TOTO_HEAD_LOGITS] : NULL,
        .scaler_loc = f->sloc, .scaler_scale = f->sscale,
    };
    in->on_step(in->user, &d);
}

/* exp(logit - max) of each component into e; returns their sum. The
 * normalised weights are e / sum, divided only where they are read. */
static double mixture_weights(double *e, const float *logits, int K)
{
    double mx = logits[0], sum = 0;
    for (int k = 1; k < K; k++) mx = logits[k] > mx ? logits[k] : mx;
    for (int k = 0; k < K; k++) sum += e[k] = exp(logits[k] - mx);
    return sum;
}

/* toto-ts's replace_extreme_values, on float32 values. */
static float tame(double v)
{
    float x = (float)v;
    return isfinite(x) && fabsf(x) < FLT_MAX / 2 ? x : 0.0f;
}

/* The patch forecast of row r (distribution row dr), unscaled, into y [P]:
 * the mixture means, or the step's draws. */
static void next_values(porta_toto_forecaster *f, size_t r, size_t dr, double *y)
{
    size_t o = dr * f->P * f->K;
    if (f->d.samples > 0) {
        for (int i = 0; i < f->P; i++) y[i] = f->draws[r * f->P + i];
        return;
    }
    for (int i = 0; i < f->P; i++, o += f->K) {
        const float *loc = f->out[TOTO_HEAD_LOC] + o;
        double sum = mixture_weights(f->probs, f->out[TOTO_HEAD_LOGITS] + o, f->K);
        y[i] = 0;
        for (int k = 0; k < f->K; k++) y[i] += f->probs[k] / sum * loc[k];
    }
}

/* Appends patch `p` of every row: values drawn from the rows' distributions
 * (dist_rows = rows, or the series' prefill rows when every sample shares
 * one), also into res unless NULL. */
static void append_patch(porta_toto_forecaster *f, porta_toto_result *res, int p, int dist_rows)
{
    int NP = f->Tc + f->steps, H = f->d.horizon, t0 = (p - f->Tc) * f->P;
    for (int s = 0; s < f->S; s++)
        for (int b = 0; b < f->B; b++)
            for (int v = 0; v < f->V; v++) {
                size_t r = ((size_t)s * f->B + b) * f->V + v;
                size_t dr = dist_rows == f->B ? (size_t)b * f->V + v : r;
                double *x = f->x + r * f->N + (size_t)p * f->P, *w = f->w + r * f->N + (size_t)p * f->P;
                next_values(f, r, dr, f->draw);
                for (int i = 0; i < f->P; i++) {
                    float y = tame(f->sloc[dr] + f->sscale[dr] * f->draw[i]);
                    x[i] = y;
                    w[i] = 1;
                    if (!res || t0 + i >= H) continue;
                    size_t o = ((size_t)b * f->V + v) * H + t0 + i;
                    if (f->d.samples == 0) res->mean[o] = y;
                    else res->samples[o * f->S + s] = y;
                }
                f->id[r * NP + p] = f->id[r * NP + p - 1];
            }
}

/* Sample paths start from their series' context and prefilled cache. */
static porta_status share_prefill(porta_toto_forecaster *f)
{
    size_t BV = (size_t)f->B * f->V, NP = (size_t)f->Tc + f->steps;
    for (size_t r = BV; r < (size_t)f->R * f->V; r++) {
        size_t src = r % BV;
        /* The context's values stay with the series' rows: after the prefill
         * only the scaler sums and the patches appended since are read. */
        memcpy(f->id + r * NP, f->id + src * NP, (size_t)f->Tc * sizeof(int32_t));
        f->scaler[r] = f->scaler[src];
    }
    /* Sample-major rows: sample s of the series' rows [0, BV) is the block
     * [s * BV, (s + 1) * BV). Every path reads its series' one copy of the
     * prefilled context. */
    return porta_kvcache_share_rows(f->kv, 0, (int)BV, (int)BV, f->S - 1);
}

static void sample_mean(const porta_toto_forecaster *f, porta_toto_result *res)
{
    size_t n = (size_t)f->B * f->V * f->d.horizon;
    for (size_t o = 0; o < n; o++) {
        double sum = 0;
        for (int s = 0; s < f->S; s++) sum += res->samples[o * f->S + s];
        res->mean[o] = (float)(sum / f->S);
    }
}

/* The forecast's first step: the prefill of in's context, reported, then the
 * first forecast patch appended to every row (into res unless NULL). */
static porta_status prefill_step(porta_toto_forecaster *f, const porta_toto_inputs *in, porta_toto_result *res)
{
    /* Draws depend on the seed, the step and the draw alone: each forecast
     * draws the same paths for the same seed and inputs. */
    porta_status s = porta_kvcache_reset(f->kv, -1);
    if (s == PORTA_OK) s = load_context(f, in);
    if (s == PORTA_OK) s = run(f, f->prefill, f->B, f->Tc, f->Tc, 0, wants_params(in), f->S);
    if (s != PORTA_OK) return s;
    report(f, in, 0, f->B);
    if (f->S > 1) s = share_prefill(f);
    if (s == PORTA_OK) append_patch(f, res, f->Tc, f->B);
    return s;
}

porta_status porta_toto_forecast(porta_toto_forecaster *f, const porta_toto_inputs *in, porta_toto_result *res)
{
    if (!f || !in || !in->series || !res || !res->mean || (f->d.samples > 0 && !res->samples))
        return toto_fail(PORTA_ERR_ARG, "porta_toto_forecast: null argument");
    porta_status s = prefill_step(f, in, res);
    for (int k = 1; s == PORTA_OK && k < f->steps; k++) {
        int end = f->Tc + k;
        s = run(f, f->decode, f->R, 1, end, k, wants_params(in), 1);
        if (s != PORTA_OK) break;
        report(f, in, k, f->R);
        append_patch(f, res, end, f->R);
    }
    if (s == PORTA_OK && f->d.samples > 0) sample_mean(f, res);
    return s;
}

static void free_values(float **v, int n)
{
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

/* Compiles a traced twin of the program of `rows` rows over T patches and
 * allocates one host array per output of it. */
static porta_status build_traced(porta_toto_forecaster *f, int rows, int T, const char *who, porta_program **out,
                                 float ***values, int *n_out)
{
    porta_program *p = NULL;
    porta_status s = toto_build(f->m, f->kv, rows, f->V, T, 1, 0, &p);
    int n = s == PORTA_OK ? porta_program_n_outputs(p) : 0;
    float **v = s == PORTA_OK ? calloc((size_t)n, sizeof *v) : NULL;
    for (int i = 0; v && i < n && s == PORTA_OK; i++)
        if (!(v[i] = malloc((size_t)porta_program_output_numel(p, i) * sizeof(float))))
            s = toto_fail(PORTA_ERR_NOMEM, "%s: no host memory", who);
    if (s == PORTA_OK && !v) s = toto_fail(PORTA_ERR_NOMEM, "%s: no host memory", who);
    *out = p;
    *values = v;
    *n_out = n;
    return s;
}

porta_status porta_toto_trace_prefill(porta_toto_forecaster *f, const porta_toto_inputs *in, porta_program **traced,
                                      float ***values)
{
    if (!f || !in || !in->series || !traced || !values)
        return toto_fail(PORTA_ERR_ARG, "porta_toto_trace_prefill: null argument");
    *traced = NULL;
    *values = NULL;
    porta_program *p = NULL;
    float **v = NULL;
    int n = 0;
    porta_status s = build_traced(f, f->B, f->Tc, "porta_toto_trace_prefill", &p, &v, &n);
    if (s == PORTA_OK) s = porta_kvcache_reset(f->kv, -1);
    if (s == PORTA_OK) s = load_context(f, in);
    if (s == PORTA_OK) s = replay(f, p, f->B, f->Tc, f->Tc, -1, v);
    if (s != PORTA_OK) {
        free_values(v, n);
        porta_program_free(p);
        return s;
    }
    *traced = p;
    *values = v;
    return PORTA_OK;
}

/* Replaces the first forecast patch of every row by patch [rows * V][P]. */
static void pin_patch(porta_toto_forecaster *f, const float *patch)
{
    for (size_t r = 0; r < (size_t)f->R * f->V; r++)
        for (int i = 0; i < f->P; i++) f->x[r * f->N + f->Lp + i] = patch[r * f->P + i];
}

porta_status porta_toto_trace_decode(porta_toto_forecaster *f, const porta_toto_inputs *in, const float *first_patch,
                                     porta_program **traced, float ***values)
{
    if (!f || !in || !in->series || !traced || !values)
        return toto_fail(PORTA_ERR_ARG, "porta_toto_trace_decode: null argument");
    *traced = NULL;
    *values = NULL;
    if (f->steps < 2)
        return toto_fail(PORTA_ERR_ARG, "porta_toto_trace_decode: horizon %d is one patch: no decode step",
                         f->d.horizon);
    if (f->d.samples > 0)
        return toto_fail(PORTA_ERR_ARG, "porta_toto_trace_decode: traces the mean path only (samples %d)",
                         f->d.samples);
    porta_program *p = NULL;
    float **v = NULL;
    int n = 0;
    porta_status s = build_traced(f, f->R, 1, "porta_toto_trace_decode", &p, &v, &n);
    porta_toto_inputs quiet = *in;
    quiet.on_step = NULL;
    if (s == PORTA_OK) s = prefill_step(f, &quiet, NULL);
    if (s == PORTA_OK && first_patch) pin_patch(f, first_patch);
    if (s == PORTA_OK) s = replay(f, p, f->R, 1, f->Tc + 1, -1, v);
    if (s != PORTA_OK) {
        free_values(v, n);
        porta_program_free(p);
        return s;
    }
    *traced = p;
    *values = v;
    return PORTA_OK;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double porta_toto_quantile(float *values, int n, double q)
{
    if (n < 1) return NAN;
    qsort(values, (size_t)n, sizeof *values, cmp_float);
    double pos = q * (n - 1);
    int lo = (int)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    return values[lo] + (pos - lo) * (values[hi] - values[lo]);
}
