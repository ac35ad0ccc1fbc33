// Bindings shared by every porta compute shader: out (f32), in0..in4 (f32,
// f16 or bf16 storage, read through in0()..in4()), the step block (int32
// pos[rows] then n[rows]) and this node's parameter block.
// p[0..4]: element offsets of out, in0..in3; p[5]: step rows (0: no step
// block); p[6]: storage type of in j in bits 2j..2j+1 (0 f32, 1 f16, 2 bf16);
// p[7]: element offset of in4.
#extension GL_GOOGLE_include_directive : enable

// CHAIN builds (a GEMV recorded without the barrier before it, see
// chain_wait) read the activations, in0 and in3, through coherent bindings:
// an earlier dispatch of the replay may have left stale lines of them in a
// multiprocessor's non-coherent cache, which no barrier has cleared.
#ifdef CHAIN
#define ACT coherent
#else
#define ACT
#endif

layout(std430, binding = 0) buffer Out { float o[]; };
layout(std430, binding = 1) ACT readonly buffer In0 { uint a[]; };
layout(std430, binding = 2) readonly buffer In1 { uint b[]; };
layout(std430, binding = 3) readonly buffer In2 { uint c[]; };
// Shaders that use binding 4 as scratch (no fourth input) write it.
#ifdef IN3_WRITABLE
layout(std430, binding = 4) buffer In3 { uint d[]; };
#else
layout(std430, binding = 4) ACT readonly buffer In3 { uint d[]; };
#endif
layout(std430, binding = 5) readonly buffer In4 { uint in4w[]; };
layout(std430, binding = 6) readonly buffer Step { int step[]; };
// The parameter block is a uniform buffer, which drivers read through their
// constant path (on an H200 the 256-row decoder step ran 4% faster than with
// storage-buffer loads of the same words).
layout(std140, binding = 7) uniform Params { uvec4 pv[64]; };
#define PW(i) pv[(i) >> 2][(i) & 3]

// Chained dispatches (PORTA_VK_CHAIN; backends/vulkan/backend.c, plan_chain).
// Words past the step block in binding 6 are counters the slot's upload
// zeroes before every replay. A node with PW(255) = c + 1 adds one to counter
// c per workgroup when the workgroup is done (after its stores are made
// visible); a GEMV with PW(254) = c + 1 waits, after loading its first
// weights, until counter c reaches PW(253), the workgroups of every dispatch
// since the last barrier. A wait that gives up after CHAIN_SPINS polls (about
// a second on a GPU), or a count above the target, sets bit 1 or 2 of word
// PW(252), which the host reads back with the outputs and reports.
layout(std430, binding = 6) coherent volatile buffer Sync { uint sync_w[]; };
#define CHAIN_SIGNAL PW(255)
#define CHAIN_WAIT PW(254)
#define CHAIN_TARGET PW(253)
#define CHAIN_ERR PW(252)
#define CHAIN_SPINS (1u << 20)

void porta_main();
void main()
{
    porta_main();
    if (CHAIN_SIGNAL != 0u) {
        memoryBarrierBuffer();
        barrier();
        if (gl_LocalInvocationIndex == 0u) atomicAdd(sync_w[CHAIN_SIGNAL - 1u], 1u);
    }
}
// Every shader's main() is porta_main(), so that workgroups which return
// early signal too.
#define main porta_main

#ifdef CHAIN
void chain_wait()
{
    if (CHAIN_WAIT == 0u) return;
    if (gl_LocalInvocationIndex == 0u) {
        // Two nested loops: llvmpipe ends any loop after 65535 turns, so the
        // count is checked after them, however they ended. Once a wait of
        // the replay has failed, the others give up at once (a replay whose
        // waits all timed out would take minutes).
        uint c = sync_w[CHAIN_WAIT - 1u];
        for (uint i = 0u; i < CHAIN_SPINS / 4096u && c < CHAIN_TARGET && sync_w[CHAIN_ERR] == 0u; i++)
            for (uint j = 0u; j < 4096u && c < CHAIN_TARGET; j++) c = sync_w[CHAIN_WAIT - 1u];
        if (c != CHAIN_TARGET) atomicOr(sync_w[CHAIN_ERR], c < CHAIN_TARGET ? 1u : 2u);
    }
    barrier();
    memoryBarrierBuffer();
}
#endif

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
