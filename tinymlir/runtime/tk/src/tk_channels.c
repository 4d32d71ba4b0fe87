/* Channel gather / merge (see tk_channels.h). */
#include "tk_channels.h"

#include <string.h>

void tk_gather_channels(const void *x, int32_t rows, int32_t c, const int32_t *channels, int32_t n,
                        int32_t elem_bytes, void *out)
{
    const uint8_t *src = (const uint8_t *)x;
    uint8_t *dst = (uint8_t *)out;
    for (int32_t r = 0; r < rows; r++) {
        const uint8_t *row = src + (size_t)r * (size_t)c * (size_t)elem_bytes;
        for (int32_t j = 0; j < n; j++) {
            memcpy(dst, row + (size_t)channels[j] * (size_t)elem_bytes, (size_t)elem_bytes);
            dst += elem_bytes;
        }
    }
}

void tk_merge_channels(const void *a, const void *b, int32_t rows, int32_t na, int32_t nb,
                       const int32_t *channels, int32_t elem_bytes, void *out)
{
    const uint8_t *pa = (const uint8_t *)a;
    const uint8_t *pb = (const uint8_t *)b;
    uint8_t *dst = (uint8_t *)out;
    const int32_t c = na + nb;
    for (int32_t r = 0; r < rows; r++) {
        int32_t j = 0;
        for (int32_t ch = 0; ch < c; ch++) {
            if (j < na && channels[j] == ch) {
                memcpy(dst, pa, (size_t)elem_bytes);
                pa += elem_bytes;
                j++;
            } else {
                memcpy(dst, pb, (size_t)elem_bytes);
                pb += elem_bytes;
            }
            dst += elem_bytes;
        }
    }
}
