/* Widening of checkpoint floats to float32. Bytes are assembled explicitly
 * (little-endian, as the format stores them), so tensor data needs no
 * alignment. f16 and bf16 widen exactly: every value, subnormals, infinities
 * and NaN payloads included, has an f32 of the same value. */
#include "porta/safetensors.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core.h"

static uint64_t st_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static float st_bits_f32(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* Round to nearest even like a hardware conversion, without the undefined
 * behaviour C gives an out-of-range double-to-float cast. */
static float st_f64(double d)
{
    if (d > FLT_MAX || d < -FLT_MAX) {
        float big = d >= 0x1.ffffffp127 || d <= -0x1.ffffffp127 ? INFINITY : FLT_MAX;
        return d < 0 ? -big : big;
    }
    return (float)d;
}

static float st_f16(uint32_t h)
{
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        /* mant * 2^-24 is exact in f32 (mant < 2^10). */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31)
        return st_bits_f32(sign | 0x7f800000u | mant << 13);
    return st_bits_f32(sign | (exp + 112u) << 23 | mant << 13);
}

porta_status porta_st_to_f32(const porta_st_tensor *t, float *dst, int64_t n)
{
    if (!t || (!dst && n))
        return porta_fail(PORTA_ERR_ARG, "porta_st_to_f32: null argument");
    if (n != porta_st_numel(t))
        return porta_fail(PORTA_ERR_ARG, "porta_st_to_f32: tensor \"%s\" has %lld elements, %lld requested", t->name,
                          (long long)porta_st_numel(t), (long long)n);
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case PORTA_ST_F64:
        for (int64_t i = 0; i < n; i++) {
            uint64_t b = st_le(p + 8 * i, 8);
            double d;
            memcpy(&d, &b, sizeof d);
            dst[i] = st_f64(d);
        }
        return PORTA_OK;
    case PORTA_ST_F32:
        for (int64_t i = 0; i < n; i++)
            dst[i] = st_bits_f32((uint32_t)st_le(p + 4 * i, 4));
        return PORTA_OK;
    case PORTA_ST_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = st_f16((uint32_t)st_le(p + 2 * i, 2));
        return PORTA_OK;
    case PORTA_ST_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = st_bits_f32((uint32_t)st_le(p + 2 * i, 2) << 16);
        return PORTA_OK;
    default:
        return porta_fail(PORTA_ERR_UNSUPPORTED, "porta_st_to_f32: tensor \"%s\" has dtype %s, not a float type",
                          t->name, porta_st_dtype_name(t->dtype));
    }
}
