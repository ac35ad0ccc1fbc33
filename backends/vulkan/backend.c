/* Vulkan backend: vtable, device buffers, programs.
 *
 * A program is one command buffer recorded at compile time with every dispatch
 * and barrier; each node has its own descriptor set and a 256-byte parameter
 * block written once. Replays go through a ring of slots: a slot holds a
 * host-visible staging area (step block + inputs), a readback area (outputs),
 * two small command buffers that move them, and a fence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vk.h"
#include "half.h"

#define VK_RING 8
#define VK_PARAM_BYTES (VK_PARAM_WORDS * 4)
#define VK_BINDINGS 8    /* out, in0..in4 (in3 or scratch), step block, params */
#define VK_PARAM_BINDING 7 /* the one uniform buffer (the others are storage buffers) */
#define VK_IN_BINDINGS 5
#define VK_STAGING_BYTES ((VkDeviceSize)16 << 20)

static VkDescriptorType binding_type(int j)
{
    return j == VK_PARAM_BINDING ? VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
}

enum { MEM_DEVICE, MEM_UPLOAD, MEM_READBACK };

/* ---- memory ---------------------------------------------------------- */

static int find_memory(vk_be *be, uint32_t bits, VkMemoryPropertyFlags want, uint32_t *type)
{
    for (uint32_t i = 0; i < be->memp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (be->memp.memoryTypes[i].propertyFlags & want) == want) {
            *type = i;
            return 1;
        }
    return 0;
}

static void buf_destroy(vk_be *be, vk_buf *b)
{
    if (b->map) be->f.vkUnmapMemory(be->dev, b->mem);
    if (b->buf) be->f.vkDestroyBuffer(be->dev, b->buf, NULL);
    if (b->mem) be->f.vkFreeMemory(be->dev, b->mem, NULL);
    memset(b, 0, sizeof *b);
}

static porta_status buf_create(vk_be *be, VkDeviceSize bytes, int kind, vk_buf *b)
{
    memset(b, 0, sizeof *b);
    if (bytes < 16) bytes = 16;
    b->bytes = bytes;
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = bytes,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT |
                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult cr = be->f.vkCreateBuffer(be->dev, &bci, NULL, &b->buf);
    if (cr == VK_ERROR_OUT_OF_HOST_MEMORY || cr == VK_ERROR_OUT_OF_DEVICE_MEMORY)
        return be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of memory creating a buffer of %llu bytes",
                              (unsigned long long)bytes);
    VK_TRY(be, cr, "vkCreateBuffer");
    VkMemoryRequirements req;
    be->f.vkGetBufferMemoryRequirements(be->dev, b->buf, &req);
    const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t type = 0;
    int ok;
    if (kind == MEM_DEVICE)
        ok = find_memory(be, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &type) ||
             find_memory(be, req.memoryTypeBits, 0, &type);
    else if (kind == MEM_READBACK)
        ok = find_memory(be, req.memoryTypeBits, host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, &type) ||
             find_memory(be, req.memoryTypeBits, host, &type);
    else
        ok = find_memory(be, req.memoryTypeBits, host, &type);
    if (!ok) {
        buf_destroy(be, b);
        return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: no suitable memory type for a buffer");
    }
    const VkDeviceSize heap = be->memp.memoryHeaps[be->memp.memoryTypes[type].heapIndex].size;
    if (req.size > heap) {
        buf_destroy(be, b);
        return be->host->fail(PORTA_ERR_NOMEM, "vulkan: a buffer of %llu bytes exceeds its memory heap (%llu bytes)",
                              (unsigned long long)bytes, (unsigned long long)heap);
    }
    VkMemoryAllocateInfo mai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = type,
    };
    VkResult r = be->f.vkAllocateMemory(be->dev, &mai, NULL, &b->mem);
    if (r == VK_SUCCESS) r = be->f.vkBindBufferMemory(be->dev, b->buf, b->mem, 0);
    if (r == VK_SUCCESS && kind != MEM_DEVICE) r = be->f.vkMapMemory(be->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map);
    if (r != VK_SUCCESS) {
        buf_destroy(be, b);
        /* maxMemoryAllocationSize is a soft limit (NVIDIA allocates far
         * beyond its advertised 4 GiB), so larger buffers are tried and
         * only a refusal names it. */
        if (bytes > be->max_alloc)
            return be->host->fail(PORTA_ERR_NOMEM,
                                  "vulkan: the driver refused a buffer of %llu bytes, above the device's advertised "
                                  "largest allocation (%llu bytes)",
                                  (unsigned long long)bytes, (unsigned long long)be->max_alloc);
        if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
            return be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of %s memory allocating %llu bytes",
                                  r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? "device" : "host",
                                  (unsigned long long)bytes);
        return vk_result(be, r, "allocating buffer memory");
    }
    return PORTA_OK;
}

/* Makes everything written before it (shaders, transfers, host) visible to
 * everything after it, in this command buffer and in later submissions. */
static void full_barrier(vk_be *be, VkCommandBuffer cb)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                         VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_READ_BIT,
    };
    const VkPipelineStageFlags st = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                                    VK_PIPELINE_STAGE_HOST_BIT;
    be->f.vkCmdPipelineBarrier(cb, st, st, 0, 1, &mb, 0, NULL, 0, NULL);
}

/* A pool for max descriptor sets of the shared layout, with the first count
 * of them allocated into sets. */
static porta_status sets_create(vk_be *be, uint32_t max, uint32_t count, VkDescriptorPool *pool,
                                VkDescriptorSet *sets)
{
    VkDescriptorPoolSize ps[2] = {
        { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, max * (VK_BINDINGS - 1) },
        { VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER, max },
    };
    VkDescriptorPoolCreateInfo dpi = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = max,
        .poolSizeCount = 2,
        .pPoolSizes = ps,
    };
    VK_TRY(be, be->f.vkCreateDescriptorPool(be->dev, &dpi, NULL, pool), "vkCreateDescriptorPool");
    for (uint32_t i = 0; i < count; i++) {
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = *pool,
            .descriptorSetCount = 1,
            .pSetLayouts = &be->dsl,
        };
        VK_TRY(be, be->f.vkAllocateDescriptorSets(be->dev, &ai, &sets[i]), "vkAllocateDescriptorSets");
    }
    return PORTA_OK;
}

/* Points every binding of set at its buffer range in info[VK_BINDINGS]. */
static void set_write(vk_be *be, VkDescriptorSet set, const VkDescriptorBufferInfo *info)
{
    VkWriteDescriptorSet w[VK_BINDINGS];
    for (int j = 0; j < VK_BINDINGS; j++)
        w[j] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = (uint32_t)j,
            .descriptorCount = 1,
            .descriptorType = binding_type(j),
            .pBufferInfo = &info[j],
        };
    be->f.vkUpdateDescriptorSets(be->dev, VK_BINDINGS, w, 0, NULL);
}

static void compute_barrier(vk_be *be, VkCommandBuffer cb)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
    };
    be->f.vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                               &mb, 0, NULL, 0, NULL);
}

/* ---- synchronous transfers -------------------------------------------- */

static porta_status xfer_begin(vk_be *be)
{
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    VK_TRY(be, be->f.vkBeginCommandBuffer(be->xfer_cb, &bi), "vkBeginCommandBuffer");
    full_barrier(be, be->xfer_cb);
    return PORTA_OK;
}

static porta_status xfer_copy_submit(vk_be *be, VkBuffer src, VkDeviceSize soff, VkBuffer dst, VkDeviceSize doff,
                                     VkDeviceSize bytes)
{
    porta_status s = xfer_begin(be);
    if (s) return s;
    VkBufferCopy c = { .srcOffset = soff, .dstOffset = doff, .size = bytes };
    be->f.vkCmdCopyBuffer(be->xfer_cb, src, dst, 1, &c);
    full_barrier(be, be->xfer_cb);
    VK_TRY(be, be->f.vkEndCommandBuffer(be->xfer_cb), "vkEndCommandBuffer");
    VK_TRY(be, be->f.vkResetFences(be->dev, 1, &be->xfer_fence), "vkResetFences");
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &be->xfer_cb,
    };
    VK_TRY(be, be->f.vkQueueSubmit(be->queue, 1, &si, be->xfer_fence), "vkQueueSubmit");
    VK_TRY(be, be->f.vkWaitForFences(be->dev, 1, &be->xfer_fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
    return vk_validation_status(be);
}

/* Host memory -> device buffer through the staging buffer, in chunks (bytes
 * as stored). */
static porta_status upload(vk_be *be, vk_buf *dst, VkDeviceSize off, const void *src, VkDeviceSize bytes)
{
    while (bytes > 0) {
        VkDeviceSize n = bytes < be->staging.bytes ? bytes : be->staging.bytes;
        memcpy(be->staging.map, src, n);
        porta_status s = xfer_copy_submit(be, be->staging.buf, 0, dst->buf, off, n);
        if (s) return s;
        src = (const char *)src + n;
        off += n;
        bytes -= n;
    }
    return PORTA_OK;
}

static porta_status download(vk_be *be, vk_buf *src, VkDeviceSize off, void *dst, VkDeviceSize bytes)
{
    while (bytes > 0) {
        VkDeviceSize n = bytes < be->staging.bytes ? bytes : be->staging.bytes;
        porta_status s = xfer_copy_submit(be, src->buf, off, be->staging.buf, 0, n);
        if (s) return s;
        memcpy(dst, be->staging.map, n);
        dst = (char *)dst + n;
        off += n;
        bytes -= n;
    }
    return PORTA_OK;
}

/* ---- backend and buffers ---------------------------------------------- */

static const char *vkb_device_name(void *b)
{
    return ((vk_be *)b)->name;
}

static porta_status check_range(vk_be *be, vk_buf *b, int64_t off, int64_t n, const char *what)
{
    if (off < 0 || n < 0 || (uint64_t)(off + n) * vk_esize(b->dtype) > b->bytes)
        return be->host->fail(PORTA_ERR_ARG, "vulkan: %s of elements [%lld, %lld) outside a buffer of %llu",
                              what, (long long)off, (long long)(off + n),
                              (unsigned long long)(b->bytes / vk_esize(b->dtype)));
    return PORTA_OK;
}

static porta_status vkb_buf_new(void *b, porta_dtype dt, int64_t n, void **out)
{
    vk_be *be = b;
    if (dt != PORTA_F32 && dt != PORTA_F16 && dt != PORTA_BF16)
        return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: buffers of dtype %d are not supported", (int)dt);
    if (n < 0) return be->host->fail(PORTA_ERR_ARG, "vulkan: negative buffer size %lld", (long long)n);
    vk_buf *vb = calloc(1, sizeof *vb);
    if (!vb) return be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
    /* Shaders read 32-bit words: round 16-bit storage up to whole words. */
    porta_status s = buf_create(be, ((VkDeviceSize)n * vk_esize(dt) + 3) & ~(VkDeviceSize)3, MEM_DEVICE, vb);
    if (s) {
        free(vb);
        return s;
    }
    vb->dtype = dt;
    *out = vb;
    return PORTA_OK;
}

/* Waits for the copies in flight (before a buffer they may touch is freed). */
static porta_status copies_wait(vk_be *be)
{
    for (int k = 0; k < VK_COPY_RING; k++) {
        if (!be->copy_busy[k]) continue;
        be->copy_busy[k] = 0;
        VK_TRY(be, be->f.vkWaitForFences(be->dev, 1, &be->copy_fence[k], VK_TRUE, UINT64_MAX), "vkWaitForFences");
    }
    return PORTA_OK;
}

static void vkb_buf_free(void *b, void *buf)
{
    if (!buf) return;
    (void)copies_wait(b); /* failing only on a lost device, when nothing runs any more */
    buf_destroy(b, buf);
    free(buf);
}

/* Elements per chunk when f16 / bf16 data is converted on the host. */
#define VK_CONVERT_CHUNK 4096

static porta_status vkb_buf_write(void *b, void *buf, int64_t off, int64_t n, const float *src)
{
    vk_be *be = b;
    vk_buf *vb = buf;
    porta_status s = check_range(be, vb, off, n, "write");
    if (s || vb->dtype == PORTA_F32) return s ? s : upload(be, vb, (VkDeviceSize)off * 4, src, (VkDeviceSize)n * 4);
    uint16_t tmp[VK_CONVERT_CHUNK];
    for (int64_t i = 0; i < n && !s; i += VK_CONVERT_CHUNK) {
        int64_t m = n - i < VK_CONVERT_CHUNK ? n - i : VK_CONVERT_CHUNK;
        for (int64_t j = 0; j < m; j++)
            tmp[j] = vb->dtype == PORTA_F16 ? porta_f32_to_f16(src[i + j]) : porta_f32_to_bf16(src[i + j]);
        s = upload(be, vb, (VkDeviceSize)(off + i) * 2, tmp, (VkDeviceSize)m * 2);
    }
    return s;
}

static porta_status vkb_buf_read(void *b, void *buf, int64_t off, int64_t n, float *dst)
{
    vk_be *be = b;
    vk_buf *vb = buf;
    porta_status s = check_range(be, vb, off, n, "read");
    if (s || vb->dtype == PORTA_F32) return s ? s : download(be, vb, (VkDeviceSize)off * 4, dst, (VkDeviceSize)n * 4);
    uint16_t tmp[VK_CONVERT_CHUNK];
    for (int64_t i = 0; i < n && !s; i += VK_CONVERT_CHUNK) {
        int64_t m = n - i < VK_CONVERT_CHUNK ? n - i : VK_CONVERT_CHUNK;
        s = download(be, vb, (VkDeviceSize)(off + i) * 2, tmp, (VkDeviceSize)m * 2);
        for (int64_t j = 0; j < m && !s; j++)
            dst[i + j] = vb->dtype == PORTA_F16 ? porta_f16_to_f32(tmp[j]) : porta_bf16_to_f32(tmp[j]);
    }
    return s;
}

/* The aligned window of a buffer that holds bytes [off, off + bytes), and
 * the first byte's word offset inside it; 0 when the device cannot bind it. */
static int copy_window(const vk_be *be, VkBuffer buf, VkDeviceSize off, VkDeviceSize bytes,
                       VkDescriptorBufferInfo *info, uint32_t *word)
{
    const VkDeviceSize align = be->props.limits.minStorageBufferOffsetAlignment;
    VkDeviceSize start = off / align * align, range = off + bytes - start;
    if (off % 4 || bytes % 4 || range > be->props.limits.maxStorageBufferRange || range / 4 > UINT32_MAX) return 0;
    *info = (VkDescriptorBufferInfo){ buf, start, range };
    *word = (uint32_t)((off - start) / 4);
    return 1;
}

/* Records slot k's word copy: its descriptor set and parameters are
 * rewritten here, which is safe once its fence has passed. 0 when the
 * ranges cannot be bound (the caller then uses vkCmdCopyBuffer). */
static int copy_words(vk_be *be, int k, VkCommandBuffer cb, VkBuffer src, VkDeviceSize soff, VkBuffer dst,
                      VkDeviceSize doff, VkDeviceSize bytes)
{
    VkDescriptorBufferInfo info[VK_BINDINGS];
    uint32_t *p = (uint32_t *)((unsigned char *)be->copy_params.map + (size_t)k * VK_PARAM_BYTES);
    uint32_t dw, sw;
    if (!be->copy_set[k] || !copy_window(be, dst, doff, bytes, &info[0], &dw) ||
        !copy_window(be, src, soff, bytes, &info[1], &sw))
        return 0;
    /* The shader reads bindings 0, 1 and 7; the others only need a buffer. */
    for (int j = 2; j < 7; j++) info[j] = info[1];
    info[7] = (VkDescriptorBufferInfo){ be->copy_params.buf, (VkDeviceSize)k * VK_PARAM_BYTES, VK_PARAM_BYTES };
    set_write(be, be->copy_set[k], info);
    memset(p, 0, 9 * sizeof *p);
    p[0] = dw;
    p[1] = sw;
    p[VK_P_OP] = (uint32_t)(bytes / 4);
    be->f.vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, be->pipe[VK_PIPE_COPY_WORDS]);
    be->f.vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, be->layout, 0, 1, &be->copy_set[k], 0, NULL);
    /* Eight words a thread at most per pass; the shader loops over the rest. */
    be->f.vkCmdDispatch(cb, vk_groups((int64_t)(bytes / 4 + 7) / 8, 256), 1, 1);
    return 1;
}

/* One copy between full barriers, queued behind earlier work without
 * waiting for it: the queue orders it like a replay. Whole 32-bit words go
 * through a compute shader (vkCmdCopyBuffer moved about a fifth of the
 * memory bandwidth on an H200), anything else through vkCmdCopyBuffer. */
static porta_status copy_submit(vk_be *be, VkBuffer src, VkDeviceSize soff, VkBuffer dst, VkDeviceSize doff,
                                VkDeviceSize bytes)
{
    const int k = be->copy_next;
    VkCommandBuffer cb = be->copy_cb[k];
    if (be->copy_busy[k]) {
        be->copy_busy[k] = 0;
        VK_TRY(be, be->f.vkWaitForFences(be->dev, 1, &be->copy_fence[k], VK_TRUE, UINT64_MAX), "vkWaitForFences");
    }
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    VK_TRY(be, be->f.vkBeginCommandBuffer(cb, &bi), "vkBeginCommandBuffer");
    full_barrier(be, cb);
    if (!copy_words(be, k, cb, src, soff, dst, doff, bytes)) {
        VkBufferCopy c = { .srcOffset = soff, .dstOffset = doff, .size = bytes };
        be->f.vkCmdCopyBuffer(cb, src, dst, 1, &c);
    }
    full_barrier(be, cb);
    VK_TRY(be, be->f.vkEndCommandBuffer(cb), "vkEndCommandBuffer");
    VK_TRY(be, be->f.vkResetFences(be->dev, 1, &be->copy_fence[k]), "vkResetFences");
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &cb,
    };
    VK_TRY(be, be->f.vkQueueSubmit(be->queue, 1, &si, be->copy_fence[k]), "vkQueueSubmit");
    be->copy_busy[k] = 1;
    be->copy_next = (k + 1) % VK_COPY_RING;
    return vk_validation_status(be);
}

static porta_status vkb_buf_copy(void *b, void *dst, int64_t doff, void *src, int64_t soff, int64_t n)
{
    vk_be *be = b;
    vk_buf *d = dst, *sb = src;
    if (d->dtype != sb->dtype)
        return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: copy between buffers of different dtypes");
    porta_status s = check_range(be, d, doff, n, "copy destination");
    if (!s) s = check_range(be, sb, soff, n, "copy source");
    if (s || n == 0) return s;
    VkDeviceSize es = vk_esize(d->dtype);
    return copy_submit(be, sb->buf, (VkDeviceSize)soff * es, d->buf, (VkDeviceSize)doff * es, (VkDeviceSize)n * es);
}

/* Buffer writes and reads already wait; this waits for copies and replays
 * in flight (replays' outputs still reach the caller at prog_wait). */
static porta_status vkb_sync(void *b)
{
    vk_be *be = b;
    VK_TRY(be, be->f.vkQueueWaitIdle(be->queue), "vkQueueWaitIdle");
    for (int k = 0; k < VK_COPY_RING; k++) be->copy_busy[k] = 0;
    return vk_validation_status(be);
}

static void vkb_close(void *b)
{
    vk_be *be = b;
    if (!be) return;
    if (be->dev) {
        be->f.vkDeviceWaitIdle(be->dev);
        for (int i = 0; i < VK_PIPE_COUNT; i++)
            if (be->pipe[i]) be->f.vkDestroyPipeline(be->dev, be->pipe[i], NULL);
        if (be->layout) be->f.vkDestroyPipelineLayout(be->dev, be->layout, NULL);
        if (be->dsl) be->f.vkDestroyDescriptorSetLayout(be->dev, be->dsl, NULL);
        buf_destroy(be, &be->staging);
        buf_destroy(be, &be->none);
        buf_destroy(be, &be->copy_params);
        if (be->copy_dpool) be->f.vkDestroyDescriptorPool(be->dev, be->copy_dpool, NULL);
        if (be->xfer_fence) be->f.vkDestroyFence(be->dev, be->xfer_fence, NULL);
        for (int k = 0; k < VK_COPY_RING; k++)
            if (be->copy_fence[k]) be->f.vkDestroyFence(be->dev, be->copy_fence[k], NULL);
        if (be->pool) be->f.vkDestroyCommandPool(be->dev, be->pool, NULL);
    }
    vk_instance_close(be);
    free(be);
}

static porta_status create_pipelines(vk_be *be)
{
    VkDescriptorSetLayoutBinding bind[VK_BINDINGS];
    for (int i = 0; i < VK_BINDINGS; i++)
        bind[i] = (VkDescriptorSetLayoutBinding){
            .binding = (uint32_t)i,
            .descriptorType = binding_type(i),
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = VK_BINDINGS,
        .pBindings = bind,
    };
    VK_TRY(be, be->f.vkCreateDescriptorSetLayout(be->dev, &dci, NULL, &be->dsl), "vkCreateDescriptorSetLayout");
    VkPipelineLayoutCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &be->dsl,
    };
    VK_TRY(be, be->f.vkCreatePipelineLayout(be->dev, &pci, NULL, &be->layout), "vkCreatePipelineLayout");
    for (int i = 0; i < VK_PIPE_COUNT; i++) {
        if (i == VK_PIPE_SAMPLE && !be->fp64) continue;
        VkShaderModuleCreateInfo mci = {
            .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
            .codeSize = vk_shaders[i].size,
            .pCode = (const uint32_t *)(const void *)vk_shaders[i].code,
        };
        VkShaderModule mod;
        VK_TRY(be, be->f.vkCreateShaderModule(be->dev, &mci, NULL, &mod), vk_shaders[i].name);
        VkComputePipelineCreateInfo cci = {
            .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            .stage = {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = mod,
                .pName = "main",
            },
            .layout = be->layout,
        };
        VkResult r = be->f.vkCreateComputePipelines(be->dev, VK_NULL_HANDLE, 1, &cci, NULL, &be->pipe[i]);
        be->f.vkDestroyShaderModule(be->dev, mod, NULL);
        /* The sampler is optional: a driver that cannot build it leaves the
         * backend without the op (programs using it are refused), not
         * without a backend. */
        if (r != VK_SUCCESS && i == VK_PIPE_SAMPLE) {
            be->pipe[i] = VK_NULL_HANDLE;
            be->fp64 = 0;
            continue;
        }
        VK_TRY(be, r, vk_shaders[i].name);
    }
    return PORTA_OK;
}

/* What the shaders need beyond Vulkan's guaranteed minimums: 7 storage
 * buffers per set, 256-thread workgroups, and 21 KiB of shared memory for the
 * GEMV's partial sums (128 threads of 41, then 4 x 40; the 128x128 matmul
 * tiles take 16.5 KiB). */
#define VK_NEED_BUFFERS 7u
#define VK_NEED_THREADS 256u
#define VK_NEED_SHARED ((128u * 41u + 4u * 40u) * 4u)

static porta_status check_limits(vk_be *be)
{
    const VkPhysicalDeviceLimits *l = &be->props.limits;
    if (l->maxPerStageDescriptorStorageBuffers < VK_NEED_BUFFERS || l->maxComputeWorkGroupInvocations < VK_NEED_THREADS ||
        l->maxComputeWorkGroupSize[0] < VK_NEED_THREADS || l->maxComputeSharedMemorySize < VK_NEED_SHARED)
        return be->host->fail(PORTA_ERR_UNSUPPORTED,
                              "vulkan: %s offers %u storage buffers per stage, %u threads per workgroup and %u bytes "
                              "of shared memory; porta needs %u, %u and %u",
                              be->props.deviceName, l->maxPerStageDescriptorStorageBuffers,
                              l->maxComputeWorkGroupInvocations, l->maxComputeSharedMemorySize, VK_NEED_BUFFERS,
                              VK_NEED_THREADS, VK_NEED_SHARED);
    if (!be->subgroup_sum)
        return be->host->fail(PORTA_ERR_UNSUPPORTED,
                              "vulkan: %s has no subgroup arithmetic in compute shaders with subgroups of 4 or "
                              "more lanes, which porta's kernels use",
                              be->props.deviceName);
    return PORTA_OK;
}

static porta_status backend_init(vk_be *be, const char *spec)
{
    porta_status s = vk_instance_open(be);
    if (!s) s = vk_device_open(be, spec);
    if (!s) s = check_limits(be);
    if (s) return s;
    VkCommandPoolCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = be->qfam,
    };
    VK_TRY(be, be->f.vkCreateCommandPool(be->dev, &cpi, NULL, &be->pool), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo cai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = be->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VK_TRY(be, be->f.vkAllocateCommandBuffers(be->dev, &cai, &be->xfer_cb), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VK_TRY(be, be->f.vkCreateFence(be->dev, &fci, NULL, &be->xfer_fence), "vkCreateFence");
    cai.commandBufferCount = VK_COPY_RING;
    VK_TRY(be, be->f.vkAllocateCommandBuffers(be->dev, &cai, be->copy_cb), "vkAllocateCommandBuffers");
    for (int k = 0; k < VK_COPY_RING; k++)
        VK_TRY(be, be->f.vkCreateFence(be->dev, &fci, NULL, &be->copy_fence[k]), "vkCreateFence");
    const char *no_fuse = getenv("PORTA_NO_FUSE");
    be->barrier_each = no_fuse && strcmp(no_fuse, "1") == 0;
    const char *gemm = getenv("PORTA_VK_GEMM");
    be->gemm_off = gemm && strcmp(gemm, "0") == 0;
    /* L2 prefetch of GEMV weights (plan_prefetch): PORTA_VK_L2PF=1, 2 or 3
     * its modes, 0 off (the default until it is measured); PORTA_VK_L2PF_MB
     * the weight bytes one prefetch reaches ahead (default 24 MiB). */
    int mb = 24;
    s = porta_env_int(be->host, "vulkan", "PORTA_VK_L2PF", 0, 0, 3, &be->l2pf);
    if (!s) s = porta_env_int(be->host, "vulkan", "PORTA_VK_L2PF_MB", 24, 1, 4096, &mb);
    be->l2pf_bytes = (uint64_t)mb << 20;
    /* Chained nodes (plan_chain): PORTA_VK_CHAIN=1 GEMVs, 2 also the rope
     * group, 0 off (the default until it is measured); PORTA_VK_CHAIN_SKEW,
     * for tests, adds to every chain target so that the shaders' miscount
     * checks can be seen to fire. */
    if (!s) s = porta_env_int(be->host, "vulkan", "PORTA_VK_CHAIN", 0, 0, 2, &be->chain);
    if (!s) s = porta_env_int(be->host, "vulkan", "PORTA_VK_CHAIN_SKEW", 0, -1, 1, &be->chain_skew);
    if (s) return s;
    const char *prof = getenv("PORTA_VULKAN_PROFILE");
    if (prof && strcmp(prof, "1") == 0) {
        be->profile = be->ts_bits > 0 && be->props.limits.timestampPeriod > 0;
        if (!be->profile) fprintf(stderr, "porta vulkan: PORTA_VULKAN_PROFILE ignored: the queue has no timestamps\n");
    }
    s = buf_create(be, VK_STAGING_BYTES, MEM_UPLOAD, &be->staging);
    if (!s) s = buf_create(be, 256, MEM_DEVICE, &be->none);
    if (!s) s = create_pipelines(be);
    /* The copy ring's descriptor sets and parameter blocks (copy_words). */
    if (!s) s = sets_create(be, VK_COPY_RING, VK_COPY_RING, &be->copy_dpool, be->copy_set);
    if (!s) s = buf_create(be, (VkDeviceSize)VK_COPY_RING * VK_PARAM_BYTES, MEM_UPLOAD, &be->copy_params);
    return s ? s : vk_validation_status(be);
}

/* ---- helpers for the op encoders --------------------------------------- */

porta_status vk_need_dense(vk_be *be, const porta_node *n, const porta_ref *r, const char *what)
{
    if (porta_ref_dense(r)) return PORTA_OK;
    return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: %s must be dense", n->name, what);
}

int vk_collapse(const porta_ref *r, int nd, int64_t *count, int64_t *stride)
{
    int64_t c = 1, s = 0, next = -1;
    for (int i = nd - 1; i >= 0; i--) {
        if (r->shape[i] == 1) continue;
        if (next < 0) s = r->stride[i];
        else if (r->stride[i] != next) return 0;
        next = r->stride[i] * r->shape[i];
        c *= r->shape[i];
    }
    *count = c;
    *stride = s;
    return 1;
}

/* ---- programs ---------------------------------------------------------- */

typedef struct vk_slot {
    vk_buf stage, back;
    VkCommandBuffer up, down;
    VkFence fence;
    int busy;
    float **outs; /* the caller's output pointers of this slot's replay */
} vk_slot;

typedef struct vk_prog {
    vk_be *be;
    vk_buf arena, step, params, scratch;
    VkDescriptorPool dpool;
    VkCommandPool cpool;
    VkCommandBuffer main;
    int n_in, n_out, step_rows;
    VkDeviceSize step_bytes;
    /* Chained nodes (plan_chain): counters, one word per node, and an error
     * word at sync_off in the step buffer (sync_bytes, zeroed by each slot's
     * upload; 0 when be->chain is off); err_back: the error word's place in
     * the readback. */
    VkDeviceSize sync_off, sync_bytes, err_back;
    VkDeviceSize stage_bytes, back_bytes; /* each slot's staging and readback */
    int n_chain;
    VkDeviceSize *in_stage, *in_bytes, *out_back, *out_bytes; /* byte offsets and sizes */
    vk_slot slot[VK_RING];
    int next;
    /* Profiling (be->profile): a timestamp before the first node and after
     * each, replays made synchronous, times summed per node. */
    VkQueryPool qpool;
    /* L2 prefetch dispatches (be->l2pf): pf_node[k] is the node prefetch k
     * is recorded before, with its set and workgroup count. */
    int n_pf;
    int *pf_node;
    uint32_t *pf_groups;
    VkDescriptorSet *pf_set;
    VkDescriptorPool pf_pool;
    vk_buf pf_out, pf_params;
    porta_node *nodes;
    int n_nodes, prof_runs, prof_skip;
    double *prof_us;
    uint64_t *prof_ts; /* one replay's timestamps, read back */
} vk_prog;

static vk_buf *ref_buffer(vk_prog *p, const porta_ref *r)
{
    return r->mem == PORTA_MEM_BUFFER ? (vk_buf *)r->buf : &p->arena;
}

/* Binds the part of a buffer a ref touches, from an aligned start, and
 * returns the ref's first element relative to that start. */
static porta_status bind_ref(vk_prog *p, const porta_node *n, const porta_ref *r, VkDescriptorBufferInfo *info,
                             uint32_t *base)
{
    vk_be *be = p->be;
    vk_buf *b = ref_buffer(p, r);
    const VkDeviceSize max_range = be->props.limits.maxStorageBufferRange;
    if (r->mem == PORTA_MEM_NONE) {
        *info = (VkDescriptorBufferInfo){ be->none.buf, 0, be->none.bytes };
        *base = 0;
        return PORTA_OK;
    }
    if (r->dtype != b->dtype)
        return be->host->fail(PORTA_ERR_ARG, "vulkan: node %s: operand dtype %d in a buffer of dtype %d", n->name,
                              (int)r->dtype, (int)b->dtype);
    const VkDeviceSize es = vk_esize(r->dtype);
    int64_t lo = r->offset, hi = r->offset;
    for (int i = 0; i < r->ndim; i++) {
        int64_t span = (r->shape[i] > 0 ? r->shape[i] - 1 : 0) * r->stride[i];
        if (span < 0) lo += span;
        else hi += span;
    }
    const VkDeviceSize align = be->props.limits.minStorageBufferOffsetAlignment;
    VkDeviceSize start = (VkDeviceSize)lo * es / align * align;
    VkDeviceSize end = ((VkDeviceSize)(hi + 1) * es + 3) & ~(VkDeviceSize)3;
    if (lo < 0 || end > b->bytes)
        return be->host->fail(PORTA_ERR_ARG, "vulkan: node %s: an operand lies outside its buffer", n->name);
    if (end - start > max_range)
        return be->host->fail(PORTA_ERR_UNSUPPORTED,
                              "vulkan: node %s: an operand spans %llu bytes, the device binds at most %llu",
                              n->name, (unsigned long long)(end - start), (unsigned long long)max_range);
    *info = (VkDescriptorBufferInfo){ b->buf, start, end - start };
    *base = (uint32_t)(r->offset - (int64_t)(start / es));
    return PORTA_OK;
}

static porta_status encode(vk_be *be, const porta_plan *plan, const porta_node *n, vk_enc *e)
{
    static const vk_encode_fn enc[PORTA_OP_COUNT] = {
        [PORTA_OP_COPY] = vk_enc_copy,
        [PORTA_OP_LINEAR] = vk_enc_matmul,
        [PORTA_OP_MATMUL] = vk_enc_matmul,
        [PORTA_OP_ADD] = vk_enc_eltwise,
        [PORTA_OP_MUL] = vk_enc_eltwise,
        [PORTA_OP_RMSNORM] = vk_enc_norm,
        [PORTA_OP_LAYERNORM] = vk_enc_norm,
        [PORTA_OP_SILU] = vk_enc_eltwise,
        [PORTA_OP_SWIGLU] = vk_enc_eltwise,
        [PORTA_OP_SOFTMAX] = vk_enc_softmax,
        [PORTA_OP_MIXTURE_SAMPLE] = vk_enc_sample,
        [PORTA_OP_ROPE] = vk_enc_rope,
        [PORTA_OP_KV_APPEND] = vk_enc_kv_update,
        [PORTA_OP_ATTN_CACHED] = vk_enc_attention,
        [PORTA_OP_ATTN] = vk_enc_attention,
        [PORTA_OP_LINEAR_FUSED] = vk_enc_matmul,
        [PORTA_OP_KV_APPEND_ROPE] = vk_enc_rope,
    };
    if ((unsigned)n->op >= PORTA_OP_COUNT || !enc[n->op])
        return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: unknown op %d", n->name, (int)n->op);
    int step_rows = 0;
    if (n->op == PORTA_OP_KV_APPEND || n->op == PORTA_OP_KV_APPEND_ROPE || n->op == PORTA_OP_ATTN_CACHED ||
        (n->op == PORTA_OP_ROPE && n->p.rope.cached))
        step_rows = plan->step_rows;
    memset(e, 0, sizeof *e);
    e->p[VK_P_STEP_ROWS] = (uint32_t)step_rows;
    return enc[n->op](be, n, step_rows, e);
}

/* Whether node b, recorded after node a, must wait for it: one writes what
 * the other reads or writes, the scratch buffer included. */
static int node_depends(const porta_node *a, const vk_enc *ea, const porta_node *b, const vk_enc *eb)
{
    if (ea->scratch_bytes && eb->scratch_bytes) return 1;
    if (porta_ref_overlap(&a->out, &b->out)) return 1;
    for (int i = 0; i < b->n_in; i++)
        if (porta_ref_overlap(&a->out, &b->in[i])) return 1;
    for (int i = 0; i < a->n_in; i++)
        if (porta_ref_overlap(&b->out, &a->in[i])) return 1;
    return 0;
}

/* Whether a barrier goes before each node: a node that depends on none of
 * the nodes since the last barrier runs without one (the slots' transfers
 * begin with full barriers). A node's second pass also ends its group. */
static void plan_barriers(const vk_prog *p, const porta_plan *plan, const vk_enc *enc, char *wait)
{
    int since = 0;
    for (int i = 0; i < plan->n_nodes; i++) {
        int w = i > since && (p->be->barrier_each || i - since >= VK_OVERLAP_MAX);
        for (int k = since; k < i && !w; k++) w = node_depends(&plan->nodes[k], &enc[k], &plan->nodes[i], &enc[i]);
        wait[i] = (char)w;
        if (w) since = i;
        if (enc[i].second_pass) since = i;
    }
}

/* Whether node i begins a group of dispatches that may run together: a
 * barrier goes before it, or the node before it ended with its second pass
 * (which follows a barrier of its own). */
static int group_start(const char *wait, const vk_enc *enc, int i)
{
    return wait[i] || (i > 0 && enc[i - 1].second_pass);
}

static int is_gemv(vk_pipe pipe)
{
    return pipe == VK_PIPE_MATMUL_GEMV || pipe == VK_PIPE_MATMUL_GEMV1 || pipe == VK_PIPE_MATMUL_GEMV2 ||
           pipe == VK_PIPE_MATMUL_GEMV4 || pipe == VK_PIPE_MATMUL_GEMV_CHAIN || pipe == VK_PIPE_MATMUL_GEMV1_CHAIN ||
           pipe == VK_PIPE_MATMUL_GEMV2_CHAIN || pipe == VK_PIPE_MATMUL_GEMV4_CHAIN;
}

/* Whether any node of the plan writes what r reads. */
static int plan_writes(const porta_plan *plan, const porta_ref *r)
{
    for (int k = 0; k < plan->n_nodes; k++)
        if (porta_ref_overlap(&plan->nodes[k].out, r)) return 1;
    return 0;
}

/* Whether node i can wait in-shader for the dispatches before it (be->chain
 * 2 also takes the rope group: rope, rotated and plain cache appends), and
 * its CHAIN pipeline. A GEMV's weights, bias and norm scale, which it loads
 * before the wait, must be written by no node; so must every input of the
 * others but x, which they read after it. */
static vk_pipe chain_pipe(const vk_prog *p, const porta_plan *plan, const vk_enc *e, int i)
{
    const porta_node *n = &plan->nodes[i];
    const uint32_t *q = e->p;
    int gemv = is_gemv(e->pipe), other = e->pipe == VK_PIPE_ROPE || e->pipe == VK_PIPE_KV_UPDATE;
    if (e->second_pass || !(gemv || (other && p->be->chain >= 2))) return VK_PIPE_COUNT;
    /* A GEMV takes the vec4 path only, as matmul.comp does: unit strides and
     * A, B and the norm scale at 16-byte offsets. */
    if (gemv && (!q[VK_P_OP + VK_MM_VEC] || ((q[1] | q[2] | q[VK_P_IN4]) & 3u))) return VK_PIPE_COUNT;
    for (int k = 1; k < n->n_in; k++)
        if (!(gemv && k == 3) && n->in[k].mem != PORTA_MEM_NONE && plan_writes(plan, &n->in[k])) return VK_PIPE_COUNT;
    switch (e->pipe) {
    case VK_PIPE_MATMUL_GEMV1: return VK_PIPE_MATMUL_GEMV1_CHAIN;
    case VK_PIPE_MATMUL_GEMV2: return VK_PIPE_MATMUL_GEMV2_CHAIN;
    case VK_PIPE_MATMUL_GEMV4: return VK_PIPE_MATMUL_GEMV4_CHAIN;
    case VK_PIPE_MATMUL_GEMV: return VK_PIPE_MATMUL_GEMV_CHAIN;
    case VK_PIPE_ROPE: return VK_PIPE_ROPE_CHAIN;
    default: return VK_PIPE_KV_UPDATE_CHAIN;
    }
}

/* Chained nodes (be->chain). A pipeline barrier lets no dispatch after it
 * start before every dispatch before it has finished, so a GEMV after a
 * barrier issues its first weight loads only then: on an H200 each barrier
 * at a GEMV boundary cost about 5 us of a 12 x 768 batch-1 step (the drain
 * of one dispatch, then the ramp of the next from memory), 60% of the step.
 * Here a group of nodes that would follow a barrier (and be followed by
 * one) is recorded without it, in CHAIN builds, when every node of it can
 * be: each workgroup does what depends on nothing the program writes (a
 * GEMV loads its first weight pieces, a rope forms its angles and xPos
 * factors), then waits until every workgroup of the dispatches since the
 * barrier before (the group before) has added one to the group's counter
 * (their stores made visible first), then reads x (and a GEMV's residual)
 * through coherent bindings. It writes only after the wait, so whatever the
 * group before reads is no longer read, and the group after it waits behind
 * a barrier again. Earlier groups are complete by then (a barrier, or a
 * chained group whose workgroups all waited for theirs). Dispatches start in
 * recording order, so the group before is running or done while these
 * workgroups wait: none waits for work that cannot start. */
static void plan_chain(vk_prog *p, const porta_plan *plan, vk_enc *enc, const char *wait, char *chain)
{
    vk_be *be = p->be;
    const int nn = plan->n_nodes;
    const uint32_t sync = (uint32_t)(p->sync_off / 4);
    for (int j = 1, e; j < nn && p->sync_bytes; j = e) {
        /* The group [j, e) after the barrier before j. */
        for (e = j + 1; e < nn && !group_start(wait, enc, e); e++) {
        }
        if (!wait[j]) continue;
        int ok = 1;
        for (int i = j; i < e && ok; i++) ok = chain_pipe(p, plan, &enc[i], i) != VK_PIPE_COUNT;
        /* The group before: back to the node after the last barrier (a
         * node's second pass follows a barrier of its own). */
        int s = j - 1;
        while (s > 0 && !wait[s] && !enc[s].second_pass) s--;
        uint64_t target = 0;
        for (int k = s; k < j; k++) {
            const uint32_t *g = enc[k].groups, *g2 = enc[k].groups2;
            target += (uint64_t)g[0] * g[1] * g[2] + (enc[k].second_pass ? (uint64_t)g2[0] * g2[1] * g2[2] : 0);
        }
        if (!ok || target == 0 || target > UINT32_MAX / 2) continue;
        for (int k = s; k < j; k++) enc[k].p[VK_P_CHAIN_SIGNAL] = sync + (uint32_t)j + 1;
        for (int i = j; i < e; i++) {
            uint32_t *q = enc[i].p;
            enc[i].pipe = chain_pipe(p, plan, &enc[i], i);
            q[VK_P_CHAIN_WAIT] = sync + (uint32_t)j + 1;
            q[VK_P_CHAIN_TARGET] = (uint32_t)((int64_t)target + be->chain_skew);
            q[VK_P_CHAIN_ERR] = sync + (uint32_t)nn;
            chain[i] = 1;
            p->n_chain++;
        }
    }
}

/* The L2 prefetch plan. A GEMV's weights stream from memory while its
 * dispatch runs, and between two GEMVs sit latency-bound dispatches (rope,
 * cache appends, attention) during which the memory bus idles. So in such a
 * gap a prefetch dispatch reads the weights of the linears after it (as far
 * as be->l2pf_bytes of them from the gap on, at most 5 linears), recorded
 * before the gap's last group (mode 1) or its first (mode 2), and those
 * linears then read them from L2. Mode 3 also records one beside each linear
 * whose own weights were prefetched (that GEMV reads L2, leaving the bus to
 * the prefetch). Only weights no node of the program writes are taken; the
 * dispatch writes nothing a node reads, so it adds no barrier. */
static porta_status plan_prefetch(vk_prog *p, const porta_plan *plan, const vk_enc *enc, const char *wait)
{
    vk_be *be = p->be;
    const int nn = plan->n_nodes;
    if (!be->l2pf || nn == 0) return PORTA_OK;
    int *lin = malloc((size_t)nn * sizeof *lin), *grp = malloc((size_t)nn * sizeof *grp), m = 0;
    p->pf_node = malloc((size_t)nn * sizeof *p->pf_node);
    p->pf_groups = malloc((size_t)nn * sizeof *p->pf_groups);
    p->pf_set = calloc((size_t)nn, sizeof *p->pf_set);
    VkDescriptorBufferInfo(*info)[VK_BINDINGS] = calloc((size_t)nn, sizeof *info);
    uint32_t(*par)[VK_PARAM_WORDS] = calloc((size_t)nn, sizeof *par);
    porta_status s = PORTA_OK;
    if (!lin || !grp || !p->pf_node || !p->pf_groups || !p->pf_set || !info || !par) {
        s = be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
        goto done;
    }
    for (int i = 0, g = 0; i < nn; i++) {
        g += group_start(wait, enc, i);
        grp[i] = g;
        const porta_node *n = &plan->nodes[i];
        if ((n->op != PORTA_OP_LINEAR && n->op != PORTA_OP_LINEAR_FUSED) || !is_gemv(enc[i].pipe) || n->n_in < 2 ||
            n->in[1].mem != PORTA_MEM_BUFFER)
            continue;
        if (!plan_writes(plan, &n->in[1])) lin[m++] = i;
    }
    uint64_t max_groups = 0;
    for (int j = 0, next = 1; j + 1 < m; j++) {
        /* The gap between linear j and linear j + 1: groups strictly between theirs. */
        int g0 = grp[lin[j]], g1 = grp[lin[j + 1]], at = -1;
        for (int i = lin[j] + 1; i < lin[j + 1]; i++)
            if (grp[i] > g0 && grp[i] < g1 && grp[i] != grp[i - 1] && (at < 0 || be->l2pf != 2)) at = i;
        if (at < 0 && be->l2pf == 3 && j > 0 && j < next) at = lin[j];
        if (at < 0) continue;
        int k = p->n_pf, r = 0;
        uint64_t words = 0, bytes = 0;
        for (int t = j + 1; t < m && r < VK_IN_BINDINGS; t++) {
            const porta_ref *w = &plan->nodes[lin[t]].in[1];
            uint64_t b = (uint64_t)porta_ref_numel(w) * vk_esize(w->dtype);
            if (bytes + b > be->l2pf_bytes) break;
            bytes += b;
            if (t < next) continue; /* asked for by an earlier gap */
            uint32_t base;
            s = bind_ref(p, &plan->nodes[lin[t]], w, &info[k][1 + r], &base);
            if (s) goto done;
            uint64_t first = (uint64_t)base * vk_esize(w->dtype), avail = info[k][1 + r].range / 16;
            uint64_t n16 = (first % 16 + b + 15) / 16;
            par[k][r < 4 ? r : 4] = (uint32_t)(first / 16);
            par[k][8 + r] = (uint32_t)(n16 < avail - first / 16 ? n16 : avail - first / 16);
            words += par[k][8 + r];
            next = t + 1;
            r++;
        }
        if (r == 0 || words == 0) continue;
        for (; r < VK_IN_BINDINGS; r++) info[k][1 + r] = info[k][1];
        uint64_t groups = (words + 4 * 256 - 1) / (4 * 256), cap = 2 * (uint64_t)vk_cores(be);
        p->pf_groups[k] = (uint32_t)(groups < cap ? groups : cap);
        if (p->pf_groups[k] > max_groups) max_groups = p->pf_groups[k];
        p->pf_node[k] = at;
        p->n_pf++;
    }
    if (p->n_pf == 0) goto done;
    s = buf_create(be, max_groups * 4, MEM_DEVICE, &p->pf_out);
    if (!s) s = buf_create(be, (VkDeviceSize)p->n_pf * VK_PARAM_BYTES, MEM_DEVICE, &p->pf_params);
    if (!s) s = upload(be, &p->pf_params, 0, par, (VkDeviceSize)p->n_pf * VK_PARAM_BYTES);
    if (!s) s = sets_create(be, (uint32_t)p->n_pf, (uint32_t)p->n_pf, &p->pf_pool, p->pf_set);
    for (int k = 0; k < p->n_pf && !s; k++) {
        info[k][0] = (VkDescriptorBufferInfo){ p->pf_out.buf, 0, VK_WHOLE_SIZE };
        info[k][6] = (VkDescriptorBufferInfo){ p->step.buf, 0, VK_WHOLE_SIZE };
        info[k][7] = (VkDescriptorBufferInfo){ p->pf_params.buf, (VkDeviceSize)k * VK_PARAM_BYTES, VK_PARAM_BYTES };
        set_write(be, p->pf_set[k], info[k]);
    }
done:
    free(lin);
    free(grp);
    free(info);
    free(par);
    return s;
}

static porta_status record_main(vk_prog *p, const porta_plan *plan, const vk_enc *enc, const VkDescriptorSet *sets,
                                const char *wait, const char *chain)
{
    vk_be *be = p->be;
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_SIMULTANEOUS_USE_BIT, /* replays may overlap in the queue */
    };
    VK_TRY(be, be->f.vkBeginCommandBuffer(p->main, &bi), "vkBeginCommandBuffer");
    if (p->qpool) {
        be->f.vkCmdResetQueryPool(p->main, p->qpool, 0, (uint32_t)plan->n_nodes + 1);
        be->f.vkCmdWriteTimestamp(p->main, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, p->qpool, 0);
    }
    for (int i = 0, k = 0; i < plan->n_nodes; i++) {
        if (wait[i] && !chain[i]) compute_barrier(be, p->main);
        for (; k < p->n_pf && p->pf_node[k] == i; k++) {
            be->f.vkCmdBindPipeline(p->main, VK_PIPELINE_BIND_POINT_COMPUTE, be->pipe[VK_PIPE_PREFETCH]);
            be->f.vkCmdBindDescriptorSets(p->main, VK_PIPELINE_BIND_POINT_COMPUTE, be->layout, 0, 1, &p->pf_set[k], 0,
                                          NULL);
            be->f.vkCmdDispatch(p->main, p->pf_groups[k], 1, 1);
        }
        be->f.vkCmdBindPipeline(p->main, VK_PIPELINE_BIND_POINT_COMPUTE, be->pipe[enc[i].pipe]);
        be->f.vkCmdBindDescriptorSets(p->main, VK_PIPELINE_BIND_POINT_COMPUTE, be->layout, 0, 1, &sets[i], 0, NULL);
        be->f.vkCmdDispatch(p->main, enc[i].groups[0], enc[i].groups[1], enc[i].groups[2]);
        if (enc[i].second_pass) {
            compute_barrier(be, p->main);
            be->f.vkCmdBindPipeline(p->main, VK_PIPELINE_BIND_POINT_COMPUTE, be->pipe[enc[i].pipe2]);
            be->f.vkCmdDispatch(p->main, enc[i].groups2[0], enc[i].groups2[1], enc[i].groups2[2]);
        }
        if (p->qpool)
            be->f.vkCmdWriteTimestamp(p->main, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, p->qpool, (uint32_t)i + 1);
    }
    VK_TRY(be, be->f.vkEndCommandBuffer(p->main), "vkEndCommandBuffer");
    return PORTA_OK;
}

/* Per slot: staging -> step block and inputs before the program, outputs ->
 * readback after it. The leading barriers order them after earlier replays. */
static porta_status record_slot(vk_prog *p, const porta_plan *plan, vk_slot *sl)
{
    vk_be *be = p->be;
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
    VK_TRY(be, be->f.vkBeginCommandBuffer(sl->up, &bi), "vkBeginCommandBuffer");
    full_barrier(be, sl->up);
    /* The step block, and the chain counters' zeros after it. */
    if (p->step_bytes || p->n_chain) {
        VkBufferCopy c = { 0, 0, p->n_chain ? p->sync_off + p->sync_bytes : p->step_bytes };
        be->f.vkCmdCopyBuffer(sl->up, sl->stage.buf, p->step.buf, 1, &c);
    }
    for (int i = 0; i < p->n_in; i++) {
        if (!p->in_bytes[i]) continue;
        const porta_ref *r = &plan->inputs[i];
        VkBufferCopy c = { p->in_stage[i], (VkDeviceSize)r->offset * 4, p->in_bytes[i] };
        be->f.vkCmdCopyBuffer(sl->up, sl->stage.buf, ref_buffer(p, r)->buf, 1, &c);
    }
    full_barrier(be, sl->up);
    VK_TRY(be, be->f.vkEndCommandBuffer(sl->up), "vkEndCommandBuffer");

    VK_TRY(be, be->f.vkBeginCommandBuffer(sl->down, &bi), "vkBeginCommandBuffer");
    full_barrier(be, sl->down);
    for (int i = 0; i < p->n_out; i++) {
        if (!p->out_bytes[i]) continue;
        const porta_ref *r = &plan->outputs[i];
        VkBufferCopy c = { (VkDeviceSize)r->offset * 4, p->out_back[i], p->out_bytes[i] };
        be->f.vkCmdCopyBuffer(sl->down, ref_buffer(p, r)->buf, sl->back.buf, 1, &c);
    }
    if (p->n_chain) {
        VkBufferCopy c = { p->sync_off + p->sync_bytes - 4, p->err_back, 4 };
        be->f.vkCmdCopyBuffer(sl->down, p->step.buf, sl->back.buf, 1, &c);
    }
    full_barrier(be, sl->down);
    VK_TRY(be, be->f.vkEndCommandBuffer(sl->down), "vkEndCommandBuffer");
    return PORTA_OK;
}

static porta_status slot_finish(vk_prog *p, vk_slot *sl)
{
    vk_be *be = p->be;
    if (!sl->busy) return PORTA_OK;
    sl->busy = 0;
    VK_TRY(be, be->f.vkWaitForFences(be->dev, 1, &sl->fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
    if (p->n_chain) {
        uint32_t err;
        memcpy(&err, (const char *)sl->back.map + p->err_back, sizeof err);
        if (err)
            return be->host->fail(PORTA_ERR_DEVICE,
                                  "vulkan: a chained node's wait %s; its outputs are not valid (PORTA_VK_CHAIN=0 "
                                  "records barriers instead)",
                                  err & 1 ? "timed out: the dispatches before it did not finish"
                                          : "counted more workgroups than the program planned");
    }
    for (int i = 0; i < p->n_out; i++)
        if (sl->outs[i]) memcpy(sl->outs[i], (const char *)sl->back.map + p->out_back[i], p->out_bytes[i]);
    return vk_validation_status(be);
}

static void vkb_prog_free(void *pp)
{
    vk_prog *p = pp;
    if (!p) return;
    vk_be *be = p->be;
    for (int k = 0; k < VK_RING; k++) {
        vk_slot *sl = &p->slot[k];
        if (sl->busy) be->f.vkWaitForFences(be->dev, 1, &sl->fence, VK_TRUE, UINT64_MAX);
        if (sl->fence) be->f.vkDestroyFence(be->dev, sl->fence, NULL);
        buf_destroy(be, &sl->stage);
        buf_destroy(be, &sl->back);
        free(sl->outs);
    }
    if (p->qpool) {
        porta_profile_report(stderr, "vulkan", p->nodes, p->n_nodes, p->prof_us, p->prof_runs,
                             "each node's dispatches and barriers");
        be->f.vkDestroyQueryPool(be->dev, p->qpool, NULL);
    }
    free(p->nodes);
    free(p->prof_us);
    free(p->prof_ts);
    if (p->cpool) be->f.vkDestroyCommandPool(be->dev, p->cpool, NULL);
    if (p->dpool) be->f.vkDestroyDescriptorPool(be->dev, p->dpool, NULL);
    if (p->pf_pool) be->f.vkDestroyDescriptorPool(be->dev, p->pf_pool, NULL);
    free(p->pf_node);
    free(p->pf_groups);
    free(p->pf_set);
    buf_destroy(be, &p->pf_out);
    buf_destroy(be, &p->pf_params);
    buf_destroy(be, &p->arena);
    buf_destroy(be, &p->scratch);
    buf_destroy(be, &p->step);
    buf_destroy(be, &p->params);
    free(p->in_stage);
    free(p->out_back);
    free(p);
}

/* Byte layout of the slots' staging and readback areas. */
static porta_status layout_io(vk_prog *p, const porta_plan *plan, VkDeviceSize *stage, VkDeviceSize *back)
{
    p->in_stage = calloc((size_t)plan->n_inputs * 2 + 1, sizeof *p->in_stage);
    p->out_back = calloc((size_t)plan->n_outputs * 2 + 1, sizeof *p->out_back);
    if (!p->in_stage || !p->out_back) return p->be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
    p->in_bytes = p->in_stage + plan->n_inputs;
    p->out_bytes = p->out_back + plan->n_outputs;
    VkDeviceSize off = p->sync_off + ((p->sync_bytes + 15) & ~(VkDeviceSize)15);
    for (int i = 0; i < plan->n_inputs; i++) {
        p->in_stage[i] = off;
        p->in_bytes[i] = (VkDeviceSize)porta_ref_numel(&plan->inputs[i]) * 4;
        off += (p->in_bytes[i] + 15) & ~(VkDeviceSize)15;
    }
    *stage = off;
    off = 0;
    for (int i = 0; i < plan->n_outputs; i++) {
        p->out_back[i] = off;
        p->out_bytes[i] = (VkDeviceSize)porta_ref_numel(&plan->outputs[i]) * 4;
        off += (p->out_bytes[i] + 15) & ~(VkDeviceSize)15;
    }
    p->err_back = off;
    *back = off + (p->sync_bytes ? 16 : 0);
    for (int i = 0; i < plan->n_inputs; i++)
        if (plan->inputs[i].mem == PORTA_MEM_NONE || !porta_ref_dense(&plan->inputs[i]) ||
            plan->inputs[i].dtype != PORTA_F32)
            return p->be->host->fail(PORTA_ERR_ARG, "vulkan: program input %d is not a dense f32 region", i);
    for (int i = 0; i < plan->n_outputs; i++)
        if (plan->outputs[i].mem == PORTA_MEM_NONE || !porta_ref_dense(&plan->outputs[i]) ||
            plan->outputs[i].dtype != PORTA_F32)
            return p->be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: program output %d is not a dense f32 region", i);
    return PORTA_OK;
}

static porta_status build_sets(vk_prog *p, const porta_plan *plan, VkDescriptorSet *sets, vk_enc *enc)
{
    vk_be *be = p->be;
    const uint32_t nn = (uint32_t)(plan->n_nodes > 0 ? plan->n_nodes : 1);
    porta_status st = sets_create(be, nn, (uint32_t)plan->n_nodes, &p->dpool, sets);
    if (st) return st;
    for (int i = 0; i < plan->n_nodes; i++) {
        const porta_node *n = &plan->nodes[i];
        VkDescriptorBufferInfo info[VK_BINDINGS];
        if (n->out.dtype != PORTA_F32)
            return be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: node %s: only f32 outputs are supported", n->name);
        porta_status s = bind_ref(p, n, &n->out, &info[0], &enc[i].p[0]);
        /* Bindings 1..5 hold inputs 0..4; in4's offset has its own word. */
        for (int j = 0; j < VK_IN_BINDINGS && !s; j++) {
            porta_ref none = { .mem = PORTA_MEM_NONE };
            const porta_ref *r = j < n->n_in ? &n->in[j] : &none;
            s = bind_ref(p, n, r, &info[1 + j], &enc[i].p[j < 4 ? 1 + j : VK_P_IN4]);
            if (r->mem != PORTA_MEM_NONE) enc[i].p[VK_P_DTYPES] |= (uint32_t)r->dtype << (2 * j);
        }
        if (s) return s;
        if (enc[i].scratch_bytes) {
            /* Scratch takes binding 4; a fourth input (the GEMM's residual,
             * read by its reduce dispatch) moves to binding 5 when the
             * fifth is absent. */
            if (n->n_in > 3 && n->in[3].mem != PORTA_MEM_NONE) {
                if (n->n_in > 4 && n->in[4].mem != PORTA_MEM_NONE)
                    return be->host->fail(PORTA_ERR_UNSUPPORTED,
                                          "vulkan: node %s: scratch would replace its fourth input", n->name);
                info[5] = info[4];
                enc[i].p[VK_P_IN4] = enc[i].p[4];
                enc[i].p[VK_P_DTYPES] = (enc[i].p[VK_P_DTYPES] & ~(3u << 8)) | ((enc[i].p[VK_P_DTYPES] >> 6 & 3u) << 8);
            }
            info[4] = (VkDescriptorBufferInfo){ p->scratch.buf, 0, enc[i].scratch_bytes };
            enc[i].p[4] = 0;
        }
        info[6] = (VkDescriptorBufferInfo){ p->step.buf, 0, VK_WHOLE_SIZE };
        info[7] = (VkDescriptorBufferInfo){ p->params.buf, (VkDeviceSize)i * VK_PARAM_BYTES, VK_PARAM_BYTES };
        set_write(be, sets[i], info);
    }
    return PORTA_OK;
}

static porta_status prog_record(vk_prog *p, const porta_plan *plan, vk_enc *enc, const VkDescriptorSet *sets,
                                const char *wait, const char *chain);

static porta_status prog_build(vk_prog *p, const porta_plan *plan, vk_enc *enc, VkDescriptorSet *sets)
{
    vk_be *be = p->be;
    p->n_in = plan->n_inputs;
    p->n_out = plan->n_outputs;
    p->step_rows = plan->step_rows;
    p->step_bytes = (VkDeviceSize)plan->step_rows * PORTA_STEP_FIELDS * 4;
    p->sync_off = (p->step_bytes + 15) & ~(VkDeviceSize)15;
    p->sync_bytes = be->chain ? ((VkDeviceSize)plan->n_nodes + 1) * 4 : 0;
    porta_status s = layout_io(p, plan, &p->stage_bytes, &p->back_bytes);
    if (!s) s = buf_create(be, (VkDeviceSize)plan->arena_elems * 4, MEM_DEVICE, &p->arena);
    if (!s) s = buf_create(be, p->sync_off + p->sync_bytes, MEM_DEVICE, &p->step);
    if (!s) s = buf_create(be, (VkDeviceSize)(plan->n_nodes + 1) * VK_PARAM_BYTES, MEM_DEVICE, &p->params);
    for (int i = 0; i < plan->n_nodes && !s; i++) s = encode(be, plan, &plan->nodes[i], &enc[i]);
    /* Nodes run one after another, so one scratch buffer serves them all. */
    VkDeviceSize scratch = 0;
    for (int i = 0; i < plan->n_nodes && !s; i++)
        if (enc[i].scratch_bytes > scratch) scratch = enc[i].scratch_bytes;
    if (!s && scratch) s = buf_create(be, scratch, MEM_DEVICE, &p->scratch);
    if (!s) s = build_sets(p, plan, sets, enc);
    if (s) return s;
    /* Barriers, then the GEMVs that wait in-shader instead (their pipelines
     * and chain words go into the encodings before the upload). */
    size_t nw = (size_t)(plan->n_nodes > 0 ? plan->n_nodes : 1);
    char *wait = calloc(nw, 1), *chain = calloc(nw, 1);
    if (!wait || !chain) {
        free(wait);
        free(chain);
        return be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
    }
    plan_barriers(p, plan, enc, wait);
    plan_chain(p, plan, enc, wait, chain);
    s = prog_record(p, plan, enc, sets, wait, chain);
    free(wait);
    free(chain);
    return s;
}

/* Parameter upload, the slots' command buffers and the program's. */
static porta_status prog_record(vk_prog *p, const porta_plan *plan, vk_enc *enc, const VkDescriptorSet *sets,
                                const char *wait, const char *chain)
{
    vk_be *be = p->be;
    porta_status s;
    uint32_t *params = malloc(((size_t)plan->n_nodes + 1) * VK_PARAM_BYTES);
    if (!params) return be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
    for (int i = 0; i < plan->n_nodes; i++) memcpy(params + (size_t)i * VK_PARAM_WORDS, enc[i].p, VK_PARAM_BYTES);
    s = upload(be, &p->params, 0, params, (VkDeviceSize)plan->n_nodes * VK_PARAM_BYTES);
    free(params);
    if (s) return s;

    VkCommandPoolCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .queueFamilyIndex = be->qfam,
    };
    VK_TRY(be, be->f.vkCreateCommandPool(be->dev, &cpi, NULL, &p->cpool), "vkCreateCommandPool");
    VkCommandBuffer cbs[1 + 2 * VK_RING];
    VkCommandBufferAllocateInfo cai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = p->cpool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1 + 2 * VK_RING,
    };
    VK_TRY(be, be->f.vkAllocateCommandBuffers(be->dev, &cai, cbs), "vkAllocateCommandBuffers");
    p->main = cbs[0];
    for (int k = 0; k < VK_RING && !s; k++) {
        vk_slot *sl = &p->slot[k];
        sl->up = cbs[1 + 2 * k];
        sl->down = cbs[2 + 2 * k];
        VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
        VK_TRY(be, be->f.vkCreateFence(be->dev, &fci, NULL, &sl->fence), "vkCreateFence");
        sl->outs = calloc((size_t)p->n_out + 1, sizeof *sl->outs);
        if (!sl->outs) return be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
        s = buf_create(be, p->stage_bytes, MEM_UPLOAD, &sl->stage);
        /* Zeros for the chain counters, copied before every replay. */
        if (!s && p->stage_bytes) memset(sl->stage.map, 0, (size_t)p->stage_bytes);
        if (!s) s = buf_create(be, p->back_bytes, MEM_READBACK, &sl->back);
        if (!s) s = record_slot(p, plan, sl);
    }
    if (!s && be->profile && plan->n_nodes > 0) {
        p->n_nodes = plan->n_nodes;
        p->nodes = malloc((size_t)plan->n_nodes * sizeof *p->nodes);
        p->prof_us = calloc((size_t)plan->n_nodes, sizeof *p->prof_us);
        p->prof_ts = calloc((size_t)plan->n_nodes + 1, sizeof *p->prof_ts);
        if (!p->nodes || !p->prof_us || !p->prof_ts) return be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
        memcpy(p->nodes, plan->nodes, (size_t)plan->n_nodes * sizeof *p->nodes);
        VkQueryPoolCreateInfo qi = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = (uint32_t)plan->n_nodes + 1,
        };
        VK_TRY(be, be->f.vkCreateQueryPool(be->dev, &qi, NULL, &p->qpool), "vkCreateQueryPool");
    }
    if (!s) s = plan_prefetch(p, plan, enc, wait);
    if (!s) s = record_main(p, plan, enc, sets, wait, chain);
    return s ? s : vk_validation_status(be);
}

static porta_status vkb_prog_new(void *b, const porta_plan *plan, porta_backend_counts *counts, void **out)
{
    vk_be *be = b;
    vk_prog *p = calloc(1, sizeof *p);
    size_t nn = (size_t)(plan->n_nodes > 0 ? plan->n_nodes : 1);
    vk_enc *enc = calloc(nn, sizeof *enc);
    VkDescriptorSet *sets = calloc(nn, sizeof *sets);
    porta_status s;
    if (!p || !enc || !sets) {
        s = be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
    } else {
        p->be = be;
        s = prog_build(p, plan, enc, sets);
    }
    free(enc);
    free(sets);
    if (s) {
        vkb_prog_free(p);
        return s;
    }
    counts->records++;
    counts->prefetches = (uint64_t)p->n_pf;
    counts->chained = (uint64_t)p->n_chain;
    *out = p;
    return PORTA_OK;
}

/* A profiled replay: wait for it, then add each node's time (the first
 * replay, which warms the pipelines, is not counted). */
static porta_status prof_collect(vk_prog *p, vk_slot *sl)
{
    vk_be *be = p->be;
    porta_status s = slot_finish(p, sl);
    if (s) return s;
    uint64_t *ts = p->prof_ts;
    VkResult r = be->f.vkGetQueryPoolResults(be->dev, p->qpool, 0, (uint32_t)p->n_nodes + 1,
                                             ((size_t)p->n_nodes + 1) * sizeof *ts, ts, sizeof *ts,
                                             VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    if (r == VK_SUCCESS && p->prof_skip) {
        const double ns = be->props.limits.timestampPeriod;
        const uint64_t mask = be->ts_bits >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << be->ts_bits) - 1;
        for (int i = 0; i < p->n_nodes; i++) p->prof_us[i] += 1e-3 * ns * (double)((ts[i + 1] - ts[i]) & mask);
        p->prof_runs++;
    }
    p->prof_skip = 1;
    return r == VK_SUCCESS ? PORTA_OK : vk_result(be, r, "vkGetQueryPoolResults");
}

static porta_status vkb_prog_run(void *pp, const int32_t *step_block, const float *const *inputs,
                                 float *const *outputs)
{
    vk_prog *p = pp;
    vk_be *be = p->be;
    vk_slot *sl = &p->slot[p->next];
    porta_status s = slot_finish(p, sl);
    if (s) return s;
    if (p->step_bytes) memcpy(sl->stage.map, step_block, p->step_bytes);
    for (int i = 0; i < p->n_in; i++)
        if (p->in_bytes[i]) memcpy((char *)sl->stage.map + p->in_stage[i], inputs[i], p->in_bytes[i]);
    for (int i = 0; i < p->n_out; i++) sl->outs[i] = outputs ? outputs[i] : NULL;
    VK_TRY(be, be->f.vkResetFences(be->dev, 1, &sl->fence), "vkResetFences");
    VkCommandBuffer cbs[3] = { sl->up, p->main, sl->down };
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 3,
        .pCommandBuffers = cbs,
    };
    VK_TRY(be, be->f.vkQueueSubmit(be->queue, 1, &si, sl->fence), "vkQueueSubmit");
    sl->busy = 1;
    p->next = (p->next + 1) % VK_RING;
    if (p->qpool) return prof_collect(p, sl);
    return vk_validation_status(be);
}

/* Slots finish in submission order, so later replays' outputs land last. */
static porta_status vkb_prog_wait(void *pp)
{
    vk_prog *p = pp;
    for (int k = 0; k < VK_RING; k++) {
        porta_status s = slot_finish(p, &p->slot[(p->next + k) % VK_RING]);
        if (s) return s;
    }
    return PORTA_OK;
}

static const porta_backend_vt vk_vt = {
    .abi = PORTA_MODULE_ABI,
    .kind = "vulkan",
    .caps = PORTA_CAP_FUSED_LINEAR | PORTA_CAP_FUSED_ROPE_APPEND,
    /* Decode-sized linears only: with the tiled matmul's fused forms a
     * 448-row prefill measured 20.1 ms on an H100, against 15.9 ms with
     * separate dispatches. */
    .fuse_max_rows = 8,
    /* A residual add costs the GEMM one load per output (in its stores, or
     * in the reduce dispatch after a K split): at 256 rows one dispatch and
     * barrier fewer per residual. */
    .fuse_res_any_rows = 1,
    .close = vkb_close,
    .device_name = vkb_device_name,
    .buf_new = vkb_buf_new,
    .buf_free = vkb_buf_free,
    .buf_write = vkb_buf_write,
    .buf_read = vkb_buf_read,
    .buf_copy = vkb_buf_copy,
    .sync = vkb_sync,
    .prog_new = vkb_prog_new,
    .prog_run = vkb_prog_run,
    .prog_wait = vkb_prog_wait,
    .prog_free = vkb_prog_free,
};

__attribute__((visibility("default"))) porta_status porta_module_open(const porta_host *host, const char *spec,
                                                                      const porta_backend_vt **vt, void **out)
{
    vk_be *be = calloc(1, sizeof *be);
    if (!be) return host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
    be->host = host;
    porta_status s = backend_init(be, spec);
    if (s) {
        vkb_close(be);
        return s;
    }
    be->vt = vk_vt;
    if (be->fp64) be->vt.caps |= PORTA_CAP_MIXTURE_SAMPLE;
    *vt = &be->vt;
    *out = be;
    return PORTA_OK;
}
