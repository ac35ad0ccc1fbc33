// Bindings shared by every porta compute shader: out (f32), in0..in4 (f32,
// f16 or bf16 storage, read through in0()..in4()), the step block (int32
// pos[rows] then n[rows]) and this node's parameter block.
// p[0..4]: element offsets of out, in0..in3; p[5]: step rows (0: no step
// block); p[6]: storage type of in j in bits 2j..2j+1 (0 f32, 1 f16, 2 bf16);
// p[7]: element offset of in4.
#extension GL_GOOGLE_include_directive : enable

layout(std430, binding = 0) buffer Out { float o[]; };
layout(std430, binding = 1) readonly buffer In0 { uint a[]; };
layout(std430, binding = 2) readonly buffer In1 { uint b[]; };
layout(std430, binding = 3) readonly buffer In2 { uint c[]; };
// Shaders that use binding 4 as scratch (no fourth input) write it.
#ifdef IN3_WRITABLE
layout(std430, binding = 4) buffer In3 { uint d[]; };
#else
layout(std430, binding = 4) readonly buffer In3 { uint d[]; };
#endif
layout(std430, binding = 5) readonly buffer In4 { uint in4w[]; };
layout(std430, binding = 6) readonly buffer Step { int step[]; };
// The parameter block is a uniform buffer, which drivers read through their
// constant path (on an H200 the 256-row decoder step ran 4% faster than with
// storage-buffer loads of the same words).
layout(std140, binding = 7) uniform Params { uvec4 pv[64]; };
#define PW(i) pv[(i) >> 2][(i) & 3]

#define O_OFF PW(0)
#define A_OFF PW(1)
#define B_OFF PW(2)
#define C_OFF PW(3)
#define D_OFF PW(4)
#define STEP_ROWS PW(5)
#define DTYPES PW(6)
#define E_OFF PW(7)
#define P(i) PW(8 + (i))
#define PF(i) uintBitsToFloat(PW(8 + (i)))

// Threads of the whole dispatch, for grid-stride loops (dispatch sizes are
// capped; shaders loop over what remains).
#define GRID_THREADS (gl_NumWorkGroups.x * gl_WorkGroupSize.x)

// Element i of a buffer of 32-bit words holding the storage type dt.
#define LOAD(buf, dt, i)                                                            \
    ((dt) == 0u ? uintBitsToFloat(buf[i])                                           \
     : (dt) == 1u ? unpackHalf2x16(buf[(i) >> 1])[(i) & 1u]                         \
     : uintBitsToFloat(((i) & 1u) != 0u ? (buf[(i) >> 1] & 0xffff0000u) : (buf[(i) >> 1] << 16)))

float in0(uint i) { return LOAD(a, DTYPES & 3u, i); }
float in1(uint i) { return LOAD(b, (DTYPES >> 2) & 3u, i); }
float in2(uint i) { return LOAD(c, (DTYPES >> 4) & 3u, i); }
float in3(uint i) { return LOAD(d, (DTYPES >> 6) & 3u, i); }
float in4(uint i) { return LOAD(in4w, (DTYPES >> 8) & 3u, i); }
