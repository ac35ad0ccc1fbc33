#version 450
// MIXTURE_SAMPLE: core/src/mixture_sample.h's draw in double precision, one
// invocation per draw (grid-stride). in0..in3: df, loc, scale, logits [M, K]
// (raw outputs of Toto's head); in4: the key [4]. P(0) draws N, P(1)
// mixtures M, P(2) components K. Draw j comes from mixture j % M, with
// Philox4x32-10 counters (block, j, stream, 0) under the seed. GLSL has no
// double exp or log: exp_d and log_d are Cephes' forms, so draws equal the
// C backends' up to rounding. Needs the device's shaderFloat64.
#include "common.glsl"
layout(local_size_x = 64) in;

#define FLT_EPS 1.1920928955078125e-07lf
#define FLT_MAX_D 3.4028234663852886e+38lf

uvec4 philox(uvec4 c, uvec2 k)
{
    for (int r = 0; r < 10; r++) {
        uint hi0, lo0, hi1, lo1;
        umulExtended(0xD2511F53u, c.x, hi0, lo0);
        umulExtended(0xCD9E8D57u, c.z, hi1, lo1);
        c = uvec4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k += uvec2(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// One draw's generator.
uvec2 g_key;
uint g_draw, g_stream, g_block;
uvec4 g_out;
int g_left;

// Uniform in (0, 1): 53 bits, plus half a step.
double uniform01()
{
    if (g_left == 0) {
        g_out = philox(uvec4(g_block, g_draw, g_stream, 0u), g_key);
        g_block++;
        g_left = 2;
    }
    uint hi = g_left == 2 ? g_out.x : g_out.z, lo = g_left == 2 ? g_out.y : g_out.w;
    g_left--;
    double b = double(hi) * 2097152.0lf + double(lo >> 11); // (hi:lo) >> 11
    return (b + 0.5lf) * (1.0lf / 9007199254740992.0lf);
}

// An integer in [0, 2^24) held by a float of the key, else 0.
uint key_word(float v)
{
    if (!(v >= 0.0 && v < 16777216.0)) return 0u;
    uint w = uint(v);
    return float(w) == v ? w : 0u;
}

// exp(x) for x in [-1022 ln 2, 1023 ln 2]: Cephes exp's Pade form.
double exp_d(double x)
{
    // n = x / ln 2 rounded (not by adding 1.5 2^52: the compiler may fold that away)
    double n = roundEven(x * 1.4426950408889634lf);
    double r = x - n * 6.93145751953125e-1lf - n * 1.42860682030941723212e-6lf, rr = r * r;
    double p = r * ((1.26177193074810590878e-4lf * rr + 3.02994407707441961300e-2lf) * rr +
                    9.99999999999999999910e-1lf);
    double q = ((3.00198505138664455042e-6lf * rr + 2.52448340349684104192e-3lf) * rr +
                2.27265548208155028766e-1lf) * rr + 2.00000000000000000009e0lf;
    double s = packDouble2x32(uvec2(0u, uint(int(n) + 1023) << 20));
    return (1.0lf + 2.0lf * (p / (q - p))) * s;
}

// log(x) for a positive normal x: x = 2^k z, z in [sqrt(1/2), sqrt(2)), then
// Cephes log's rational form in z - 1.
double log_d(double x)
{
    uvec2 b = unpackDouble2x32(x);
    int k = int((b.y >> 20) & 0x7FFu) - 1023;
    double z = packDouble2x32(uvec2(b.x, (b.y & 0x800FFFFFu) | 0x3FF00000u));
    if (z > 1.4142135623730951lf) {
        z *= 0.5lf;
        k++;
    }
    double f = z - 1.0lf, ff = f * f, kd = double(k);
    double p = ((((1.01875663804580931796e-4lf * f + 4.97494994976747001425e-1lf) * f + 4.70579119878881725854e0lf) * f +
                 1.44989225341610930846e1lf) * f + 1.79368678507819816313e1lf) * f + 7.70838733755885391666e0lf;
    double q = ((((f + 1.12873587189167450590e1lf) * f + 4.52279145837532221105e1lf) * f + 8.29875266912776603211e1lf) *
                f + 7.11544750618563894466e1lf) * f + 2.31251620126765340583e1lf;
    double y = f * (ff * p / q) - kd * 2.121944400546905827679e-4lf - 0.5lf * ff;
    return f + y + kd * 0.693359375lf;
}

// softplus(x) floored at FLT_EPSILON (NaN gives the floor). log1p(e) as
// log(1 + e) e / ((1 + e) - 1), x clamped to [-20, 20] (below, the floor;
// above, x).
double softplus_floor(float x)
{
    if (isnan(x)) return FLT_EPS;
    if (x > 20.0) return double(x);
    precise double e = exp_d(double(max(x, -20.0))), w = 1.0lf + e, sp = log_d(w) * (e / (w - 1.0lf));
    return sp > FLT_EPS ? sp : FLT_EPS;
}

void normal_pair(out double z0, out double z1)
{
    for (int t = 0; t < 1000; t++) {
        double u = 2.0lf * uniform01() - 1.0lf, v = 2.0lf * uniform01() - 1.0lf, q = u * u + v * v;
        if (q > 0.0lf && q < 1.0lf) {
            double m = sqrt(-2.0lf * log_d(q) / q);
            z0 = u * m;
            z1 = v * m;
            return;
        }
    }
    z0 = 0.0lf;
    z1 = 0.0lf;
}

void main()
{
    uint N = P(0), M = P(1), K = P(2);
    uint k0 = key_word(in4(E_OFF)), k1 = key_word(in4(E_OFF + 1u)), k2 = key_word(in4(E_OFF + 2u));
    // seed bits 0-23, 24-47, 48-63 as two words
    g_key = uvec2(k0 | (k1 << 24), (k1 >> 8) | ((k2 & 0xFFFFu) << 16));
    g_stream = key_word(in4(E_OFF + 3u));
    for (uint j = gl_GlobalInvocationID.x; j < N; j += GRID_THREADS) {
        g_draw = j;
        g_block = 0u;
        g_left = 0;
        uint base = (j % M) * K;
        float mx = in3(D_OFF + base);
        for (uint k = 1u; k < K; k++) mx = max(mx, in3(D_OFF + base + k));
        double total = 0.0lf;
        for (uint k = 0u; k < K; k++) {
            float x = in3(D_OFF + base + k) - mx;
            total += exp_d(double(x > -87.0 ? x : -87.0));
        }
        double t = uniform01() * total, acc = 0.0lf;
        uint c = 0u;
        for (; c + 1u < K; c++) {
            float x = in3(D_OFF + base + c) - mx;
            acc += exp_d(double(x > -87.0 ? x : -87.0));
            if (acc >= t) break;
        }
        double df = 2.0lf + softplus_floor(in0(A_OFF + base + c)), sc = softplus_floor(in2(C_OFF + base + c));
        df = df < FLT_MAX_D ? df : FLT_MAX_D;
        double z0, z1, spare = 0.0lf, g = df / 2.0lf;
        normal_pair(z0, z1);
        double d = df / 2.0lf - 1.0lf / 3.0lf, cc = 1.0lf / sqrt(9.0lf * d), z = z0, u = uniform01();
        bool have = false;
        for (int it = 0; it < 1000; it++) {
            double v = 1.0lf + cc * z;
            if (v > 0.0lf) {
                v = v * v * v;
                double zz = z * z;
                if (u < 1.0lf - 0.0331lf * zz * zz ||
                    log_d(u) < 0.5lf * zz + d - d * v + d * log_d(max(v, 1e-300lf))) {
                    g = d * v;
                    break;
                }
            }
            if (have) z = spare;
            else normal_pair(z, spare);
            have = !have;
            u = uniform01();
        }
        o[O_OFF + j] = float(double(in1(B_OFF + base + c)) + sc * z1 * sqrt(df / (2.0lf * g)));
    }
}
