/* Vulkan backend internals: the loader's function table, the backend and
 * program objects, and the per-op encoders that turn a plan node into a
 * pipeline, its parameters and its dispatch size. */
#ifndef PORTA_VK_H
#define PORTA_VK_H

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>
#include "plan.h"

/* Entry points resolved through vkGetInstanceProcAddr / vkGetDeviceProcAddr,
 * so that the module loads on machines without libvulkan.so.1. */
#define VK_GLOBAL_FNS(X) \
    X(vkCreateInstance) X(vkEnumerateInstanceLayerProperties) X(vkEnumerateInstanceExtensionProperties)

#define VK_INSTANCE_FNS(X) \
    X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties) \
    X(vkGetPhysicalDeviceQueueFamilyProperties) X(vkGetPhysicalDeviceMemoryProperties) X(vkGetPhysicalDeviceProperties2) \
    X(vkCreateDevice) X(vkGetDeviceProcAddr) X(vkEnumerateDeviceExtensionProperties) X(vkGetPhysicalDeviceFeatures)

#define VK_DEVICE_FNS(X) \
    X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkDeviceWaitIdle) \
    X(vkCreateBuffer) X(vkDestroyBuffer) X(vkGetBufferMemoryRequirements) \
    X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory) \
    X(vkCreateCommandPool) X(vkDestroyCommandPool) X(vkAllocateCommandBuffers) \
    X(vkBeginCommandBuffer) X(vkEndCommandBuffer) X(vkCmdCopyBuffer) X(vkCmdPipelineBarrier) \
    X(vkCmdBindPipeline) X(vkCmdBindDescriptorSets) X(vkCmdDispatch) \
    X(vkQueueSubmit) X(vkQueueWaitIdle) X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences) \
    X(vkCreateShaderModule) X(vkDestroyShaderModule) X(vkCreateComputePipelines) X(vkDestroyPipeline) \
    X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout) \
    X(vkCreateDescriptorSetLayout) X(vkDestroyDescriptorSetLayout) \
    X(vkCreateDescriptorPool) X(vkDestroyDescriptorPool) X(vkAllocateDescriptorSets) \
    X(vkUpdateDescriptorSets) \
    X(vkCreateQueryPool) X(vkDestroyQueryPool) X(vkCmdResetQueryPool) X(vkCmdWriteTimestamp) X(vkGetQueryPoolResults)

#define VK_DECLARE_FN(name) PFN_##name name;
typedef struct vk_fns {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
    VK_GLOBAL_FNS(VK_DECLARE_FN)
    VK_INSTANCE_FNS(VK_DECLARE_FN)
    VK_DEVICE_FNS(VK_DECLARE_FN)
    PFN_vkCreateDebugUtilsMessengerEXT vkCreateDebugUtilsMessengerEXT;
    PFN_vkDestroyDebugUtilsMessengerEXT vkDestroyDebugUtilsMessengerEXT;
} vk_fns;
#undef VK_DECLARE_FN

/* Compute pipelines, one per shader variant (order of vk_shaders[]). */
typedef enum vk_pipe {
    VK_PIPE_COPY = 0,
    VK_PIPE_ELTWISE,
    VK_PIPE_NORM,
    VK_PIPE_SOFTMAX,
    VK_PIPE_ROPE,
    VK_PIPE_KV_UPDATE,
    VK_PIPE_ATTENTION,
    VK_PIPE_MATMUL,
    VK_PIPE_MATMUL_BIG,
    VK_PIPE_MATMUL_GEMV,
    VK_PIPE_ATTN_SPLIT,
    VK_PIPE_ATTN_COMBINE,
    VK_PIPE_MATMUL_SMALL,
    VK_PIPE_MATMUL_FUSED,
    VK_PIPE_MATMUL_BIG_FUSED,
    VK_PIPE_MATMUL_SMALL_FUSED,
    VK_PIPE_MATMUL_GEMV1, /* GEMV for 1, 2, 4 rows; MATMUL_GEMV for 8 */
    VK_PIPE_MATMUL_GEMV2,
    VK_PIPE_MATMUL_GEMV4,
    VK_PIPE_GEMM,        /* f32 operands contiguous along k: 64 x 64 tiles, */
    VK_PIPE_GEMM_REDUCE, /* and the sum over K splits */
    VK_PIPE_COPY_WORDS,  /* porta_buffer_copy of 32-bit words */
    VK_PIPE_SAMPLE, /* made only on devices with shaderFloat64 */
    VK_PIPE_ATTN_ROWS, /* cached attention that does not split */
    VK_PIPE_PREFETCH,  /* reads weights into L2 ahead of the linears */
    VK_PIPE_MATMUL_GEMV_CHAIN, /* the GEMVs built to wait in-shader (PORTA_VK_CHAIN), */
    VK_PIPE_MATMUL_GEMV1_CHAIN, /* in the order of the four above */
    VK_PIPE_MATMUL_GEMV2_CHAIN,
    VK_PIPE_MATMUL_GEMV4_CHAIN,
    VK_PIPE_ROPE_CHAIN,      /* rope and rotated cache append, waiting in-shader */
    VK_PIPE_KV_UPDATE_CHAIN, /* cache append, waiting in-shader */
    VK_PIPE_COUNT
} vk_pipe;

typedef struct vk_shader {
    const char *name;
    const unsigned char *code;
    size_t size;
} vk_shader;
extern const vk_shader vk_shaders[VK_PIPE_COUNT];

/* A buffer and its memory; map is set for host-visible memory. Elements are
 * stored as dtype (f16 and bf16 halve the traffic of weights). */
typedef struct vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize bytes;
    void *map;
    porta_dtype dtype;
} vk_buf;

static inline VkDeviceSize vk_esize(porta_dtype dt)
{
    return dt == PORTA_F32 ? 4 : 2;
}

/* Validation messages land here (the messenger's user data), and the next
 * backend call turns a recorded error into PORTA_ERR_DEVICE. */
typedef struct vk_validation {
    int errors;
    char first[2048];
} vk_validation;

#define VK_COPY_RING 8
/* Most nodes recorded between two barriers (independent nodes share one). */
#define VK_OVERLAP_MAX 16

typedef struct vk_be {
    const porta_host *host;
    void *lib;
    vk_fns f;
    VkInstance inst;
    VkDebugUtilsMessengerEXT messenger;
    vk_validation val;
    VkPhysicalDevice pd;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties memp;
    VkDeviceSize max_alloc; /* advertised largest allocation, a soft limit */
    uint32_t cores; /* multiprocessors (VK_NV_shader_sm_builtins), 0 unknown */
    int fp64;       /* shaderFloat64 enabled: mixture_sample runs */
    int subgroup_sum; /* compute subgroups of 4 or more lanes with arithmetic (required) */
    int profile;    /* PORTA_VULKAN_PROFILE=1 and the queue has timestamps: each node timed */
    int barrier_each; /* PORTA_NO_FUSE=1: a barrier after every node, dependent or not */
    int gemm_off;     /* PORTA_VK_GEMM=0: products on the general tiled kernel only */
    int l2pf;         /* GEMV weights prefetched into L2 in the gaps between linears (PORTA_VK_L2PF) */
    uint64_t l2pf_bytes; /* weight bytes one prefetch takes at most (PORTA_VK_L2PF_MB) */
    int chain;        /* nodes wait in-shader instead of behind a barrier (PORTA_VK_CHAIN):
                       * 1 GEMVs, 2 also the rope group */
    int chain_skew;   /* added to every chain target: a self-test of the miscount checks */
    porta_backend_vt vt; /* this device's vtable (caps depend on its features) */
    VkDevice dev;
    uint32_t qfam;
    uint32_t ts_bits; /* valid timestamp bits of the queue (0: no timestamps) */
    VkQueue queue;
    /* Synchronous transfers (buffer writes, reads and copies). */
    VkCommandPool pool;
    VkCommandBuffer xfer_cb;
    VkFence xfer_fence;
    /* Device-to-device copies: submitted without waiting, each slot reused
     * after its fence. */
    VkCommandBuffer copy_cb[VK_COPY_RING];
    VkFence copy_fence[VK_COPY_RING];
    int copy_busy[VK_COPY_RING], copy_next;
    /* Each slot's descriptor set and parameter block for word copies by
     * VK_PIPE_COPY_WORDS (rewritten only once the slot's fence has passed). */
    VkDescriptorPool copy_dpool;
    VkDescriptorSet copy_set[VK_COPY_RING];
    vk_buf copy_params;
    vk_buf staging;
    vk_buf none; /* what absent operands bind: no shader reads it, and no
                  * hazard checker sees a read of a buffer nodes write */
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe[VK_PIPE_COUNT];
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE + 32];
} vk_be;

/* Parameter block of one node (1 KiB), read by its shader from binding 7, a
 * uniform buffer (1 KiB blocks meet any uniform-buffer offset alignment).
 * p[0..4]: element offsets of out, in0..in3 inside their bound ranges;
 * p[5]: rows of the step block (pos[rows] then n[rows]), 0 when the op
 * uses no step block; p[6]: storage type of in j in bits 2j..2j+1 (porta_dtype);
 * p[7]: element offset of in4; op-specific values from p[VK_P_OP]. */
#define VK_PARAM_WORDS 256
#define VK_P_STEP_ROWS 5
#define VK_P_DTYPES 6
#define VK_P_IN4 7
#define VK_P_OP 8
/* Matmul parameter VK_P_OP + VK_MM_VEC: A, B and the norm scale are f32 with
 * unit k stride and 16-byte row steps (the GEMV's vec4 path, which the CHAIN
 * build needs; shaders/matmul.comp, P(12)). */
#define VK_MM_VEC 12
/* Chained dispatches (shaders/common.glsl): the counter this node's
 * workgroups add to (index + 1 in the step buffer's words, 0 none), the
 * counter a CHAIN GEMV waits for, its target, and the error word. */
#define VK_P_CHAIN_SIGNAL 255
#define VK_P_CHAIN_WAIT 254
#define VK_P_CHAIN_TARGET 253
#define VK_P_CHAIN_ERR 252

/* A node is one dispatch, or two (pipe, then pipe2 after a barrier, both
 * with the node's bindings) when second_pass is set; such a node gets
 * scratch_bytes of program-owned scratch bound in place of in3. */
typedef struct vk_enc {
    vk_pipe pipe, pipe2;
    int second_pass;
    VkDeviceSize scratch_bytes;
    uint32_t p[VK_PARAM_WORDS];
    uint32_t groups[3], groups2[3];
} vk_enc;

/* Multiprocessors that dispatch sizes aim to fill; devices that do not
 * report theirs are taken as an H100's 132. */
static inline int64_t vk_cores(const vk_be *be)
{
    return be->cores ? be->cores : 132;
}

/* Largest workgroup count used along x; shaders loop over the rest. */
#define VK_MAX_GROUPS 65535u

static inline uint32_t vk_groups(int64_t items, uint32_t per_group)
{
    int64_t g = (items + per_group - 1) / per_group;
    if (g < 1) g = 1;
    return g > (int64_t)VK_MAX_GROUPS ? VK_MAX_GROUPS : (uint32_t)g;
}
/* Fails unless r is dense (row-major); the ops that call it take dense operands. */
porta_status vk_need_dense(vk_be *be, const porta_node *n, const porta_ref *r, const char *what);
/* Element count and stride of r's first nd dims viewed as one dim; 0 when
 * their strides do not allow it. */
int vk_collapse(const porta_ref *r, int nd, int64_t *count, int64_t *stride);

static inline uint32_t vk_f2u(float x)
{
    union { float f; uint32_t u; } v = { .f = x };
    return v.u;
}

/* Encoders: fill e->pipe, e->p from VK_P_OP on, and e->groups; the caller
 * fills the binding offsets and step rows. step_rows: rows of the program's
 * step block for ops that read it, else 0. */
typedef porta_status (*vk_encode_fn)(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_copy(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_matmul(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_eltwise(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_norm(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_softmax(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_sample(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_rope(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_kv_update(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);
porta_status vk_enc_attention(vk_be *be, const porta_node *n, int step_rows, vk_enc *e);

/* Loader (loader.c). */
porta_status vk_instance_open(vk_be *be);
porta_status vk_device_open(vk_be *be, const char *spec);
void vk_instance_close(vk_be *be);
porta_status vk_result(vk_be *be, VkResult r, const char *what);
/* PORTA_ERR_DEVICE with the first validation message when any was recorded. */
porta_status vk_validation_status(vk_be *be);

#define VK_TRY(be, call, what)                                   \
    do {                                                         \
        VkResult vk_try_r_ = (call);                             \
        if (vk_try_r_ != VK_SUCCESS) return vk_result((be), vk_try_r_, (what)); \
    } while (0)

#endif
