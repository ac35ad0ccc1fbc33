/* Status names and the thread-local error message. The message is the only
 * state the library keeps outside the objects a caller creates, and it is
 * per thread. */
#include <stdarg.h>
#include <stdio.h>
#include "core.h"

static _Thread_local char porta_errmsg[1024];

const char *porta_status_name(porta_status s)
{
    switch (s) {
    case PORTA_OK: return "PORTA_OK";
    case PORTA_ERR_ARG: return "PORTA_ERR_ARG";
    case PORTA_ERR_SHAPE: return "PORTA_ERR_SHAPE";
    case PORTA_ERR_NOMEM: return "PORTA_ERR_NOMEM";
    case PORTA_ERR_OVERFLOW: return "PORTA_ERR_OVERFLOW";
    case PORTA_ERR_UNAVAILABLE: return "PORTA_ERR_UNAVAILABLE";
    case PORTA_ERR_DEVICE: return "PORTA_ERR_DEVICE";
    case PORTA_ERR_IO: return "PORTA_ERR_IO";
    case PORTA_ERR_FORMAT: return "PORTA_ERR_FORMAT";
    case PORTA_ERR_UNSUPPORTED: return "PORTA_ERR_UNSUPPORTED";
    case PORTA_ERR_STATE: return "PORTA_ERR_STATE";
    }
    return "PORTA_ERR_UNKNOWN";
}

const char *porta_last_error(void) { return porta_errmsg; }

void porta_clear_error(void) { porta_errmsg[0] = '\0'; }

static porta_status vfail(porta_status s, const char *fmt, va_list ap)
{
    vsnprintf(porta_errmsg, sizeof porta_errmsg, fmt, ap);
    return s;
}

porta_status porta_fail(porta_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(s, fmt, ap);
    va_end(ap);
    return s;
}

const porta_host porta_core_host = { porta_fail };
