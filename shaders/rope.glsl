// The rotary embedding with Toto's xPos scaling, shared by rope.comp and
// attention.comp's fused rope mode (include after common.glsl). The pair
// frequencies come from a host-built table in the parameter block
// (vk_rope_table): for pair j, theta^(-2j/D) as a float and the float
// remainder of its float64 value. The angle is formed in double-float
// precision and reduced to [-pi, pi] before sin and cos, which GPUs evaluate
// accurately only there.

const float TWO_PI_HI = 6.28318548202514648;     // float(2 pi)
const float TWO_PI_LO = -1.74845553146951715e-7; // 2 pi - TWO_PI_HI

// cos and sin of the angle of position pi for the pair whose table entry is
// at parameter words P(t), P(t + 1).
vec2 rope_cos_sin(int pi, uint t)
{
    float pf = float(pi);
    float f_hi = uintBitsToFloat(P(t)), f_lo = uintBitsToFloat(P(t + 1u));
    // precise: fma must stay fused and nothing may be reassociated, or
    // the low-order parts vanish.
    precise float hi = pf * f_hi;
    precise float lo = fma(pf, f_hi, -hi) + pf * f_lo;
    float k = round(hi * 0.159154943091895336);
    precise float ang = fma(-k, TWO_PI_LO, fma(-k, TWO_PI_HI, hi)) + lo;
    return vec2(cos(ang), sin(ang));
}

// The xPos centre of a chunk of n new rows from pos: the chunk's last
// position halved (Toto's max(position in chunk) // 2).
int rope_centre(int pos, int n)
{
    return (pos + n - 1) >> 1;
}

// xPos factors of pair j's two elements for the exponent e = (position -
// centre) / scale_base; a key's exponent is the query's negated.
vec2 rope_xpos(float e, uint j, uint D)
{
    uint half_d = D / 2u;
    uint k0 = (2u * j) % half_d, k1 = (2u * j + 1u) % half_d;
    float u0 = (2.0 * float(k0) + 0.4 * float(D)) / (1.4 * float(D));
    float u1 = (2.0 * float(k1) + 0.4 * float(D)) / (1.4 * float(D));
    return vec2(exp2(e * log2(u0)), exp2(e * log2(u1)));
}

// The pair x rotated by (cos, sin) cs, its elements scaled by s.
vec2 rope_rotate(vec2 x, vec2 cs, vec2 s)
{
    return vec2((x.x * cs.x - x.y * cs.y) * s.x, (x.y * cs.x + x.x * cs.y) * s.y);
}
