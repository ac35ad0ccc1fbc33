#version 450
// L2 prefetch of weights: reads up to 5 ranges of 16-byte words (bindings
// 1..5) so that the linears recorded after this dispatch find them in the
// device's L2 cache. It runs beside latency-bound dispatches (rope, cache
// appends, attention) while the memory bus would otherwise idle; nothing
// reads what it writes, and results never depend on it.
// pv[0], pv[1].x: word offset of range j in its binding; pv[2], pv[3].x: words.
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Out { uint o[]; };
layout(std430, binding = 1) readonly buffer W0 { uvec4 w0[]; };
layout(std430, binding = 2) readonly buffer W1 { uvec4 w1[]; };
layout(std430, binding = 3) readonly buffer W2 { uvec4 w2[]; };
layout(std430, binding = 4) readonly buffer W3 { uvec4 w3[]; };
layout(std430, binding = 5) readonly buffer W4 { uvec4 w4[]; };
layout(std140, binding = 7) uniform Params { uvec4 pv[64]; };

uvec4 load(uint j, uint i)
{
    switch (j) {
    case 0u: return w0[i];
    case 1u: return w1[i];
    case 2u: return w2[i];
    case 3u: return w3[i];
    default: return w4[i];
    }
}

void main()
{
    const uint t = gl_GlobalInvocationID.x, nt = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uvec4 acc = uvec4(0u);
    for (uint j = 0u; j < 5u; j++) {
        uint off = j < 4u ? pv[0][j] : pv[1].x, n = j < 4u ? pv[2][j] : pv[3].x;
        // Four loads in flight per thread and turn.
        for (uint i = t; i < n; i += 4u * nt) {
            uvec4 a = load(j, off + i);
            uvec4 b = i + nt < n ? load(j, off + i + nt) : uvec4(0u);
            uvec4 c = i + 2u * nt < n ? load(j, off + i + 2u * nt) : uvec4(0u);
            uvec4 d = i + 3u * nt < n ? load(j, off + i + 3u * nt) : uvec4(0u);
            acc ^= a ^ b ^ c ^ d;
        }
    }
    // One word per workgroup, so that the loads cannot be dropped.
    uint r = subgroupXor(acc.x ^ acc.y ^ acc.z ^ acc.w);
    if (subgroupElect()) o[gl_WorkGroupID.x] = r;
}
