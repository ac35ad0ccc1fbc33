/* Status codes and the thread-local error message. */
#ifndef PORTA_STATUS_H
#define PORTA_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum porta_status {
    PORTA_OK = 0,
    PORTA_ERR_ARG,         /* a null pointer, a bad name, a value out of range */
    PORTA_ERR_SHAPE,       /* shapes that do not fit the op */
    PORTA_ERR_NOMEM,       /* host or device memory exhausted */
    PORTA_ERR_OVERFLOW,    /* a step would write past the KV cache's max_len */
    PORTA_ERR_UNAVAILABLE, /* backend or device not present on this machine */
    PORTA_ERR_DEVICE,      /* a driver or runtime call failed */
    PORTA_ERR_IO,          /* a file could not be opened, mapped or read */
    PORTA_ERR_FORMAT,      /* malformed checkpoint, config or input file */
    PORTA_ERR_UNSUPPORTED, /* a feature the backend or device does not offer */
    PORTA_ERR_STATE        /* an object used in the wrong state */
} porta_status;

/* Short name of a status ("PORTA_ERR_SHAPE"). Never NULL. */
const char *porta_status_name(porta_status s);

/* The message of the last failure on the calling thread: what failed and where.
 * Empty string when nothing failed yet. Valid until the next porta call on the
 * same thread. */
const char *porta_last_error(void);

/* Clears the calling thread's message. */
void porta_clear_error(void);

/* Sets the calling thread's message (printf format) and returns s: code built
 * on porta (model builders, tools) reports its failures the same way. */
porta_status porta_fail(porta_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
