/* libFuzzer target: any byte string given to porta_st_parse is either refused
 * with PORTA_ERR_FORMAT and a message, or accepted with every tensor readable
 * inside the image. ASan/UBSan turn any stray access into a finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "porta/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    porta_st_file *f = NULL;
    porta_status st = porta_st_parse(data, size, &f);
    if (st != PORTA_OK) {
        if (st != PORTA_ERR_FORMAT || f != NULL || porta_last_error()[0] == '\0')
            abort();
        return 0;
    }
    for (int i = 0; i < porta_st_count(f); i++) {
        const porta_st_tensor *t = porta_st_at(f, i);
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size || porta_st_find(f, t->name) == NULL)
            abort();
        int64_t n = porta_st_numel(t);
        if (t->dtype <= PORTA_ST_BF16 && n <= 1 << 16) {
            float *out = malloc(sizeof(float) * (size_t)(n ? n : 1));
            if (out && porta_st_to_f32(t, out, n) != PORTA_OK)
                abort();
            free(out);
        }
    }
    (void)porta_st_metadata(f, "format");
    porta_st_close(f);
    return 0;
}
