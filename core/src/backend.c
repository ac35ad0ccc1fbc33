/* Backend selection, run-time modules and buffers.
 *
 * ref and cpu are built in. cuda and vulkan live in modules
 * (libporta_cuda.so, libporta_vulkan.so) opened with dlopen, so a binary built
 * with every backend starts on a machine with no GPU library: the module's
 * dlopen fails and the backend reports itself unavailable. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"

#ifndef PORTA_MODULE_BUILD_DIR
#define PORTA_MODULE_BUILD_DIR ""
#endif
#ifndef PORTA_MODULE_INSTALL_DIR
#define PORTA_MODULE_INSTALL_DIR ""
#endif

static porta_status try_module_dir(const char *dir, const char *kind, void **handle, char *why, size_t whylen)
{
    char path[4400];
    if (!dir || !dir[0]) return PORTA_ERR_UNAVAILABLE;
    int len = snprintf(path, sizeof path, "%s/libporta_%s.so", dir, kind);
    if (len < 0 || (size_t)len >= sizeof path) return PORTA_ERR_UNAVAILABLE;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h) {
        *handle = h;
        return PORTA_OK;
    }
    const char *e = dlerror();
    /* Keep the first reason that is not plain absence of the file. */
    if (e && (why[0] == '\0' || strstr(why, "No such file"))) snprintf(why, whylen, "%s", e);
    return PORTA_ERR_UNAVAILABLE;
}

/* Looks for the module next to the core library, then in the build and install
 * folders, or only in $PORTA_MODULE_PATH when it is set. */
static porta_status open_module(const char *kind, void **handle)
{
    char why[1024] = "";
    const char *env = getenv("PORTA_MODULE_PATH");
    if (env && env[0]) {
        if (try_module_dir(env, kind, handle, why, sizeof why) == PORTA_OK) return PORTA_OK;
    } else {
        Dl_info info;
        if (dladdr((void *)&open_module, &info) && info.dli_fname) {
            char dir[4096];
            int len = snprintf(dir, sizeof dir, "%s", info.dli_fname);
            char *slash = (len > 0 && (size_t)len < sizeof dir) ? strrchr(dir, '/') : NULL;
            if (slash) {
                *slash = '\0';
                if (try_module_dir(dir, kind, handle, why, sizeof why) == PORTA_OK) return PORTA_OK;
                char sub[4200];
                len = snprintf(sub, sizeof sub, "%s/porta", dir);
                if (len > 0 && (size_t)len < sizeof sub && try_module_dir(sub, kind, handle, why, sizeof why) == PORTA_OK) return PORTA_OK;
            }
        }
        if (try_module_dir(PORTA_MODULE_BUILD_DIR, kind, handle, why, sizeof why) == PORTA_OK) return PORTA_OK;
        if (try_module_dir(PORTA_MODULE_INSTALL_DIR, kind, handle, why, sizeof why) == PORTA_OK) return PORTA_OK;
    }
    return porta_fail(PORTA_ERR_UNAVAILABLE, "backend %s unavailable: module libporta_%s.so could not be loaded (%s)",
                      kind, kind, why[0] ? why : "not built");
}

static porta_status open_one(const char *kind, const char *spec, porta_backend *be)
{
    porta_status s;
    if (!strcmp(kind, "ref")) {
        s = porta_ref_open(&porta_core_host, spec, &be->vt, &be->impl);
    } else if (!strcmp(kind, "cpu")) {
#ifdef PORTA_HAVE_CPU
        s = porta_cpu_open(&porta_core_host, spec, &be->vt, &be->impl);
#else
        s = porta_fail(PORTA_ERR_UNAVAILABLE, "backend cpu unavailable: this build has PORTA_CPU off");
#endif
    } else if (!strcmp(kind, "cuda") || !strcmp(kind, "vulkan")) {
        s = open_module(kind, &be->module);
        if (s != PORTA_OK) return s;
        porta_module_open_fn fn = (porta_module_open_fn)dlsym(be->module, "porta_module_open");
        if (!fn) {
            dlclose(be->module);
            be->module = NULL;
            return porta_fail(PORTA_ERR_UNAVAILABLE, "backend %s: module lacks porta_module_open", kind);
        }
        s = fn(&porta_core_host, spec, &be->vt, &be->impl);
        if (s == PORTA_OK && be->vt->abi != PORTA_MODULE_ABI) {
            be->vt->close(be->impl);
            s = porta_fail(PORTA_ERR_UNAVAILABLE, "backend %s: module ABI %d, core expects %d", kind, be->vt->abi,
                           PORTA_MODULE_ABI);
        }
        if (s != PORTA_OK) {
            dlclose(be->module);
            be->module = NULL;
        }
    } else {
        return porta_fail(PORTA_ERR_ARG, "unknown backend '%s' (ref, cpu, cuda[:N], vulkan[:N], auto)", kind);
    }
    if (s == PORTA_OK) snprintf(be->name, sizeof be->name, "%s", kind);
    return s;
}

porta_status porta_backend_open(const char *name, porta_backend **out)
{
    if (!out) return porta_fail(PORTA_ERR_ARG, "porta_backend_open: out is NULL");
    *out = NULL;
    if (!name) return porta_fail(PORTA_ERR_ARG, "porta_backend_open: name is NULL");
    char kind[32];
    const char *colon = strchr(name, ':');
    size_t klen = colon ? (size_t)(colon - name) : strlen(name);
    if (klen == 0 || klen >= sizeof kind)
        return porta_fail(PORTA_ERR_ARG, "porta_backend_open: bad backend name '%s'", name);
    memcpy(kind, name, klen);
    kind[klen] = '\0';
    const char *spec = colon ? colon + 1 : "";

    porta_backend *be = calloc(1, sizeof *be);
    if (!be) return porta_fail(PORTA_ERR_NOMEM, "porta_backend_open: out of memory");
    porta_status s;
    if (!strcmp(kind, "auto")) {
        static const char *const order[] = { "cuda", "vulkan", "cpu", "ref" };
        s = PORTA_ERR_UNAVAILABLE;
        for (size_t i = 0; i < sizeof order / sizeof order[0] && s != PORTA_OK; i++) {
            /* A Vulkan device that is only a CPU emulation loses to the cpu backend. */
            s = open_one(order[i], !strcmp(order[i], "vulkan") ? "discrete" : spec, be);
        }
    } else {
        s = open_one(kind, spec, be);
    }
    if (s != PORTA_OK) {
        free(be);
        return s;
    }
    *out = be;
    return PORTA_OK;
}

void porta_backend_close(porta_backend *be)
{
    if (!be) return;
    be->vt->close(be->impl);
    if (be->module) dlclose(be->module);
    free(be);
}

const char *porta_backend_kind(const porta_backend *be) { return be ? be->vt->kind : ""; }
int porta_backend_can_sample(const porta_backend *be) { return be && (be->vt->caps & PORTA_CAP_MIXTURE_SAMPLE); }

const char *porta_backend_device(const porta_backend *be) { return be ? be->vt->device_name(be->impl) : ""; }

porta_status porta_buffer_new(porta_backend *be, porta_dtype dtype, int64_t n, porta_buffer **out)
{
    if (!out) return porta_fail(PORTA_ERR_ARG, "porta_buffer_new: out is NULL");
    *out = NULL;
    if (!be) return porta_fail(PORTA_ERR_ARG, "porta_buffer_new: backend is NULL");
    if (n <= 0) return porta_fail(PORTA_ERR_ARG, "porta_buffer_new: size %lld must be positive", (long long)n);
    if (dtype != PORTA_F32 && dtype != PORTA_F16 && dtype != PORTA_BF16)
        return porta_fail(PORTA_ERR_ARG, "porta_buffer_new: unknown dtype %d", (int)dtype);
    porta_buffer *b = calloc(1, sizeof *b);
    if (!b) return porta_fail(PORTA_ERR_NOMEM, "porta_buffer_new: out of memory");
    porta_status s = be->vt->buf_new(be->impl, dtype, n, &b->impl);
    if (s != PORTA_OK) {
        free(b);
        return s;
    }
    b->be = be;
    b->dtype = dtype;
    b->n = n;
    *out = b;
    return PORTA_OK;
}

void porta_buffer_free(porta_buffer *buf)
{
    if (!buf) return;
    buf->be->vt->buf_free(buf->be->impl, buf->impl);
    free(buf);
}

int64_t porta_buffer_size(const porta_buffer *buf) { return buf ? buf->n : 0; }

static porta_status check_range(const porta_buffer *buf, int64_t off, int64_t n, const void *p, const char *fn)
{
    if (!buf || !p) return porta_fail(PORTA_ERR_ARG, "%s: NULL argument", fn);
    if (off < 0 || n < 0 || off > buf->n || n > buf->n - off)
        return porta_fail(PORTA_ERR_ARG, "%s: range [%lld, %lld) outside buffer of %lld elements", fn,
                          (long long)off, (long long)(off + n), (long long)buf->n);
    return PORTA_OK;
}

porta_status porta_buffer_write(porta_buffer *buf, int64_t off, int64_t n, const float *src)
{
    porta_status s = check_range(buf, off, n, src, "porta_buffer_write");
    if (s != PORTA_OK || n == 0) return s;
    return buf->be->vt->buf_write(buf->be->impl, buf->impl, off, n, src);
}

porta_status porta_buffer_read(porta_buffer *buf, int64_t off, int64_t n, float *dst)
{
    porta_status s = check_range(buf, off, n, dst, "porta_buffer_read");
    if (s != PORTA_OK || n == 0) return s;
    return buf->be->vt->buf_read(buf->be->impl, buf->impl, off, n, dst);
}

porta_status porta_buffer_copy(porta_buffer *dst, int64_t doff, porta_buffer *src, int64_t soff, int64_t n)
{
    if (!dst || !src) return porta_fail(PORTA_ERR_ARG, "porta_buffer_copy: NULL buffer");
    if (dst->be != src->be || dst->dtype != src->dtype)
        return porta_fail(PORTA_ERR_ARG, "porta_buffer_copy: buffers of different backends or dtypes");
    porta_status s = check_range(dst, doff, n, dst, "porta_buffer_copy");
    if (s == PORTA_OK) s = check_range(src, soff, n, src, "porta_buffer_copy");
    if (s != PORTA_OK || n == 0) return s;
    return dst->be->vt->buf_copy(dst->be->impl, dst->impl, doff, src->impl, soff, n);
}

porta_status porta_backend_sync(porta_backend *be)
{
    if (!be) return porta_fail(PORTA_ERR_ARG, "porta_backend_sync: backend is NULL");
    /* Reading one element back is ordered after everything submitted. */
    return be->vt->sync ? be->vt->sync(be->impl) : PORTA_OK;
}
