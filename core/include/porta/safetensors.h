/* Reading checkpoints in the safetensors format: the file is memory-mapped and
 * every header field is validated before any tensor is handed out. */
#ifndef PORTA_SAFETENSORS_H
#define PORTA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "porta/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum porta_st_dtype {
    PORTA_ST_F64, PORTA_ST_F32, PORTA_ST_F16, PORTA_ST_BF16,
    PORTA_ST_I64, PORTA_ST_I32, PORTA_ST_I16, PORTA_ST_I8, PORTA_ST_U8, PORTA_ST_BOOL
} porta_st_dtype;

#define PORTA_ST_MAX_DIMS 8

typedef struct porta_st_tensor {
    const char *name;
    porta_st_dtype dtype;
    int ndim;
    int64_t shape[PORTA_ST_MAX_DIMS];
    const void *data;   /* inside the mapping; valid until porta_st_close */
    size_t nbytes;
} porta_st_tensor;

typedef struct porta_st_file porta_st_file;

/* Maps and validates path. */
porta_status porta_st_open(const char *path, porta_st_file **out);
/* Validates an in-memory image (the fuzzer's entry; data must outlive the file). */
porta_status porta_st_parse(const void *data, size_t size, porta_st_file **out);
void porta_st_close(porta_st_file *f);

int porta_st_count(const porta_st_file *f);
const porta_st_tensor *porta_st_at(const porta_st_file *f, int i);
/* NULL when absent (no error set). */
const porta_st_tensor *porta_st_find(const porta_st_file *f, const char *name);
/* The "__metadata__" string value for key, or NULL. */
const char *porta_st_metadata(const porta_st_file *f, const char *key);

/* Converts a floating tensor (F64, F32, F16, BF16) to float32; n must equal its
 * element count. */
porta_status porta_st_to_f32(const porta_st_tensor *t, float *dst, int64_t n);
int64_t porta_st_numel(const porta_st_tensor *t);
const char *porta_st_dtype_name(porta_st_dtype dt);

#ifdef __cplusplus
}
#endif
#endif
