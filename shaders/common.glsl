// Bindings shared by every porta compute shader: out, in0..in3 (f32), the
// step block (int32 pos[rows] then n[rows]) and this node's parameter block.
// p[0..4]: element offsets of out, in0..in3; p[5]: step rows (0: no step block).
#extension GL_GOOGLE_include_directive : enable

layout(std430, binding = 0) buffer Out { float o[]; };
layout(std430, binding = 1) readonly buffer In0 { float a[]; };
layout(std430, binding = 2) readonly buffer In1 { float b[]; };
layout(std430, binding = 3) readonly buffer In2 { float c[]; };
layout(std430, binding = 4) readonly buffer In3 { float d[]; };
layout(std430, binding = 5) readonly buffer Step { int step[]; };
layout(std430, binding = 6) readonly buffer Params { uint p[]; };

#define O_OFF p[0]
#define A_OFF p[1]
#define B_OFF p[2]
#define C_OFF p[3]
#define D_OFF p[4]
#define STEP_ROWS p[5]
#define P(i) p[8 + (i)]
#define PF(i) uintBitsToFloat(p[8 + (i)])

// Threads of the whole dispatch, for grid-stride loops (dispatch sizes are
// capped; shaders loop over what remains).
#define GRID_THREADS (gl_NumWorkGroups.x * gl_WorkGroupSize.x)
