// Workgroup-wide sum and max, for workgroups of up to 256 threads: over each
// subgroup, then across subgroups through shared memory (the host requires
// subgroups of 4 lanes or more, so at most 64 of them). Every thread of the
// workgroup calls them, in uniform control flow, and gets the result.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
shared float red[64];

float wg_sum(float v)
{
    v = subgroupAdd(v);
    barrier(); // the previous call's readers are done with red
    if (subgroupElect()) red[gl_SubgroupID] = v;
    barrier();
    float r = red[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++) r += red[i];
    return r;
}

float wg_max(float v)
{
    v = subgroupMax(v);
    barrier();
    if (subgroupElect()) red[gl_SubgroupID] = v;
    barrier();
    float r = red[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++) r = max(r, red[i]);
    return r;
}
