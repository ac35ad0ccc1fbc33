/* Loading Vulkan at run time, instance and device selection, validation.
 *
 * The module dlopens libvulkan.so.1 itself instead of linking it: the core's
 * dlopen of this module then succeeds on any machine, and a missing loader or
 * driver is reported as PORTA_ERR_UNAVAILABLE with a message that names what is
 * missing, rather than as a dynamic-linker error about an unresolved library. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vk.h"

static const char validation_layer[] = "VK_LAYER_KHRONOS_validation";

porta_status vk_result(vk_be *be, VkResult r, const char *what)
{
    porta_status s = PORTA_ERR_DEVICE;
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY ||
        r == VK_ERROR_TOO_MANY_OBJECTS || r == VK_ERROR_OUT_OF_POOL_MEMORY)
        s = PORTA_ERR_NOMEM;
    else if (r == VK_ERROR_FEATURE_NOT_PRESENT || r == VK_ERROR_EXTENSION_NOT_PRESENT ||
             r == VK_ERROR_LAYER_NOT_PRESENT || r == VK_ERROR_FORMAT_NOT_SUPPORTED)
        s = PORTA_ERR_UNSUPPORTED;
    else if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED)
        s = PORTA_ERR_UNAVAILABLE;
    return be->host->fail(s, "vulkan: %s failed (VkResult %d)", what, (int)r);
}

porta_status vk_validation_status(vk_be *be)
{
    if (be->val.errors == 0) return PORTA_OK;
    int n = be->val.errors;
    be->val.errors = 0;
    return be->host->fail(PORTA_ERR_DEVICE, "vulkan: %d validation error(s), first: %s", n, be->val.first);
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                 VkDebugUtilsMessageTypeFlagsEXT type,
                                                 const VkDebugUtilsMessengerCallbackDataEXT *data,
                                                 void *user)
{
    (void)type;
    vk_validation *v = user;
    if ((sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) && v->errors++ == 0)
        snprintf(v->first, sizeof v->first, "%s", data && data->pMessage ? data->pMessage : "(no text)");
    return VK_FALSE;
}

static int has_layer(vk_be *be, const char *name)
{
    uint32_t n = 0;
    if (be->f.vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return 0;
    VkLayerProperties *lp = calloc(n, sizeof *lp);
    if (!lp) return 0;
    int found = 0;
    if (be->f.vkEnumerateInstanceLayerProperties(&n, lp) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(lp[i].layerName, name) == 0;
    free(lp);
    return found;
}

porta_status vk_instance_open(vk_be *be)
{
    be->lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!be->lib)
        return be->host->fail(PORTA_ERR_UNAVAILABLE,
                              "vulkan: the Vulkan loader libvulkan.so.1 is not installed (%s)", dlerror());
    /* POSIX guarantees that a data pointer from dlsym converts to a function pointer. */
    void *sym = dlsym(be->lib, "vkGetInstanceProcAddr");
    if (!sym)
        return be->host->fail(PORTA_ERR_UNAVAILABLE, "vulkan: libvulkan.so.1 lacks vkGetInstanceProcAddr");
    memcpy(&be->f.vkGetInstanceProcAddr, &sym, sizeof sym);

#define VK_LOAD_GLOBAL(name)                                                             \
    if (!(be->f.name = (PFN_##name)be->f.vkGetInstanceProcAddr(NULL, #name)))             \
        return be->host->fail(PORTA_ERR_UNAVAILABLE, "vulkan: loader lacks %s", #name);
    VK_GLOBAL_FNS(VK_LOAD_GLOBAL)
#undef VK_LOAD_GLOBAL

    const char *env = getenv("PORTA_VK_VALIDATE");
    int validate = env && strcmp(env, "1") == 0;
    if (validate && !has_layer(be, validation_layer))
        return be->host->fail(PORTA_ERR_UNAVAILABLE,
                              "vulkan: PORTA_VK_VALIDATE=1 but %s is not installed", validation_layer);

    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "porta",
        .pEngineName = "porta",
        .apiVersion = VK_API_VERSION_1_1,
    };
    const char *layers[] = { validation_layer };
    const char *exts[] = { VK_EXT_DEBUG_UTILS_EXTENSION_NAME };
    VkDebugUtilsMessengerCreateInfoEXT mci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_message,
        .pUserData = &be->val,
    };
    VkInstanceCreateInfo ici = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = validate ? &mci : NULL,
        .pApplicationInfo = &app,
        .enabledLayerCount = validate ? 1 : 0,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = validate ? 1 : 0,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = be->f.vkCreateInstance(&ici, NULL, &be->inst);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return be->host->fail(PORTA_ERR_UNAVAILABLE, "vulkan: no Vulkan 1.1 driver is installed");
    VK_TRY(be, r, "vkCreateInstance");

#define VK_LOAD_INSTANCE(name)                                                           \
    if (!(be->f.name = (PFN_##name)be->f.vkGetInstanceProcAddr(be->inst, #name)))         \
        return be->host->fail(PORTA_ERR_UNAVAILABLE, "vulkan: loader lacks %s", #name);
    VK_INSTANCE_FNS(VK_LOAD_INSTANCE)
    if (validate) {
        VK_LOAD_INSTANCE(vkCreateDebugUtilsMessengerEXT)
        VK_LOAD_INSTANCE(vkDestroyDebugUtilsMessengerEXT)
        VK_TRY(be, be->f.vkCreateDebugUtilsMessengerEXT(be->inst, &mci, NULL, &be->messenger),
               "vkCreateDebugUtilsMessengerEXT");
    }
#undef VK_LOAD_INSTANCE
    return PORTA_OK;
}

/* Higher is preferred: discrete GPU, then integrated, virtual, CPU. */
static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 1;
    default: return 0;
    }
}

/* The first queue family with compute, and its valid timestamp bits. */
static int compute_family(vk_be *be, VkPhysicalDevice pd, uint32_t *fam, uint32_t *ts_bits)
{
    uint32_t n = 0;
    be->f.vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties qf[32];
    if (n > 32) n = 32;
    be->f.vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, qf);
    for (uint32_t i = 0; i < n; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            *fam = i;
            *ts_bits = qf[i].timestampValidBits;
            return 1;
        }
    return 0;
}

/* Whether the device offers a device extension; offered is enough to read
 * its properties, which size dispatches (it is never enabled). */
static int has_extension(vk_be *be, VkPhysicalDevice pd, const char *name)
{
    uint32_t n = 0;
    if (be->f.vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || n == 0) return 0;
    VkExtensionProperties *e = calloc(n, sizeof *e);
    if (!e) return 0;
    int found = 0;
    VkResult r = be->f.vkEnumerateDeviceExtensionProperties(pd, NULL, &n, e);
    for (uint32_t i = 0; (r == VK_SUCCESS || r == VK_INCOMPLETE) && i < n && !found; i++)
        found = strcmp(e[i].extensionName, name) == 0;
    free(e);
    return found;
}

static porta_status pick_device(vk_be *be, const char *spec)
{
    uint32_t n = 0;
    VK_TRY(be, be->f.vkEnumeratePhysicalDevices(be->inst, &n, NULL), "vkEnumeratePhysicalDevices");
    if (n == 0) return be->host->fail(PORTA_ERR_UNAVAILABLE, "vulkan: no Vulkan device is present");
    VkPhysicalDevice *pds = calloc(n, sizeof *pds);
    if (!pds) return be->host->fail(PORTA_ERR_NOMEM, "vulkan: out of host memory");
    VkResult r = be->f.vkEnumeratePhysicalDevices(be->inst, &n, pds);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        free(pds);
        return vk_result(be, r, "vkEnumeratePhysicalDevices");
    }
    porta_status s = PORTA_OK;
    int chosen = -1;
    int discrete_only = spec && strcmp(spec, "discrete") == 0;
    if (spec && *spec && !discrete_only) {
        char *end = NULL;
        long idx = strtol(spec, &end, 10);
        if (*end != '\0' || idx < 0)
            s = be->host->fail(PORTA_ERR_ARG, "vulkan: device spec '%s' is not a device index", spec);
        else if (idx >= (long)n)
            s = be->host->fail(PORTA_ERR_UNAVAILABLE, "vulkan: device %ld not present (%u device(s))", idx, n);
        else if (!compute_family(be, pds[idx], &be->qfam, &be->ts_bits))
            s = be->host->fail(PORTA_ERR_UNSUPPORTED, "vulkan: device %ld has no compute queue", idx);
        else
            chosen = (int)idx;
    } else {
        int best = -1;
        for (uint32_t i = 0; i < n; i++) {
            VkPhysicalDeviceProperties pp;
            uint32_t fam, bits;
            be->f.vkGetPhysicalDeviceProperties(pds[i], &pp);
            if (!compute_family(be, pds[i], &fam, &bits)) continue;
            if (discrete_only && pp.deviceType != VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU) continue;
            if (type_rank(pp.deviceType) > best) {
                best = type_rank(pp.deviceType);
                chosen = (int)i;
                be->qfam = fam;
                be->ts_bits = bits;
            }
        }
        if (chosen < 0)
            s = be->host->fail(PORTA_ERR_UNAVAILABLE, "vulkan: no %s with a compute queue (%u device(s))",
                               discrete_only ? "discrete GPU" : "device", n);
    }
    if (s == PORTA_OK) {
        be->pd = pds[chosen];
        be->f.vkGetPhysicalDeviceProperties(be->pd, &be->props);
        be->f.vkGetPhysicalDeviceMemoryProperties(be->pd, &be->memp);
        VkPhysicalDeviceShaderSMBuiltinsPropertiesNV sm = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV,
        };
        VkPhysicalDeviceMaintenance3Properties m3 = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
            .pNext = has_extension(be, be->pd, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME) ? &sm : NULL,
        };
        VkPhysicalDeviceSubgroupProperties sg = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
            .pNext = &m3,
        };
        VkPhysicalDeviceProperties2 p2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg };
        be->f.vkGetPhysicalDeviceProperties2(be->pd, &p2);
        be->max_alloc = m3.maxMemoryAllocationSize;
        /* Kernels sum over subgroups, at most a quarter of a workgroup's threads many. */
        be->subgroup_sum = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                           (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
                           (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) && sg.subgroupSize >= 4;
        be->cores = sm.shaderSMCount;
        snprintf(be->name, sizeof be->name, "%s (vulkan:%d)", be->props.deviceName, chosen);
    }
    free(pds);
    return s;
}

porta_status vk_device_open(vk_be *be, const char *spec)
{
    porta_status s = pick_device(be, spec);
    if (s) return s;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = be->qfam,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    /* Double precision only for mixture_sample, where the device has it. */
    VkPhysicalDeviceFeatures have, want = {0};
    be->f.vkGetPhysicalDeviceFeatures(be->pd, &have);
    want.shaderFloat64 = have.shaderFloat64;
    be->fp64 = have.shaderFloat64 == VK_TRUE;
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
        .pEnabledFeatures = &want,
    };
    VK_TRY(be, be->f.vkCreateDevice(be->pd, &dci, NULL, &be->dev), "vkCreateDevice");
#define VK_LOAD_DEVICE(name)                                                             \
    if (!(be->f.name = (PFN_##name)be->f.vkGetDeviceProcAddr(be->dev, #name)))            \
        return be->host->fail(PORTA_ERR_UNAVAILABLE, "vulkan: driver lacks %s", #name);
    VK_DEVICE_FNS(VK_LOAD_DEVICE)
#undef VK_LOAD_DEVICE
    be->f.vkGetDeviceQueue(be->dev, be->qfam, 0, &be->queue);
    return PORTA_OK;
}

void vk_instance_close(vk_be *be)
{
    if (be->dev) be->f.vkDestroyDevice(be->dev, NULL);
    if (be->messenger) be->f.vkDestroyDebugUtilsMessengerEXT(be->inst, be->messenger, NULL);
    if (be->inst) be->f.vkDestroyInstance(be->inst, NULL);
    if (be->lib) dlclose(be->lib);
}
