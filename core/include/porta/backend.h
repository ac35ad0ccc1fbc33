/* Backends and device buffers.
 *
 * Threads: a backend and everything made on it (buffers, caches, programs)
 * are used by one thread at a time; a caller that drives them from several
 * threads orders its calls itself (a mutex, or handing them over through a
 * join or a queue). Any thread may take over: nothing is tied to the thread
 * that opened or compiled it, and replays enqueued on one thread may be
 * waited for on another. Separate backends share no state, also when they
 * open the same device, and may be used from different threads at the same
 * time. A graph, likewise, is built by one thread at a time. Error messages
 * (porta_last_error) are per thread. tests/test_threads.c checks all three
 * on every backend. */
#ifndef PORTA_BACKEND_H
#define PORTA_BACKEND_H

#include <stdint.h>
#include "porta/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum porta_dtype { PORTA_F32 = 0, PORTA_F16 = 1, PORTA_BF16 = 2 } porta_dtype;

typedef struct porta_backend porta_backend;
typedef struct porta_buffer porta_buffer;

/* Opens a backend by name: "ref" (float64 oracle), "cpu", "cuda", "cuda:N",
 * "vulkan", "vulkan:N", or "auto" (cuda, then a discrete Vulkan GPU, then cpu).
 * A backend whose module, driver or device is absent returns
 * PORTA_ERR_UNAVAILABLE with a message saying what is missing. */
porta_status porta_backend_open(const char *name, porta_backend **out);
void porta_backend_close(porta_backend *be);

/* The kind ("ref", "cpu", "cuda", "vulkan") and a human-readable device name. */
const char *porta_backend_kind(const porta_backend *be);
const char *porta_backend_device(const porta_backend *be);
/* Nonzero when the backend runs porta_mixture_sample (ref, cpu and cuda do;
 * vulkan on devices with double precision). */
int porta_backend_can_sample(const porta_backend *be);

/* Buffers hold n elements of dtype in the backend's memory. Host data always
 * travels as float32 and is converted to the buffer's storage type. */
porta_status porta_buffer_new(porta_backend *be, porta_dtype dtype, int64_t n, porta_buffer **out);
void porta_buffer_free(porta_buffer *buf);
int64_t porta_buffer_size(const porta_buffer *buf);
porta_status porta_buffer_write(porta_buffer *buf, int64_t offset, int64_t n, const float *src);
porta_status porta_buffer_read(porta_buffer *buf, int64_t offset, int64_t n, float *dst);
/* Copies n elements between buffers of one backend and dtype, on the device,
 * ordered after the work already submitted to that backend. */
porta_status porta_buffer_copy(porta_buffer *dst, int64_t dst_offset, porta_buffer *src, int64_t src_offset, int64_t n);
/* Waits until every piece of work submitted to the backend has finished. */
porta_status porta_backend_sync(porta_backend *be);

#ifdef __cplusplus
}
#endif
#endif
