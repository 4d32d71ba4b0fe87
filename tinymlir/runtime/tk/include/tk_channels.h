/* tinymlir training kernels: moving channels (channels-last tensors), used where a
 * sparsely updated layer is split into its trained and its frozen output channels.
 * Pure data movement: every element is copied bit for bit. */
#ifndef TK_CHANNELS_H
#define TK_CHANNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[r, j] = x[r, channels[j]] for r < rows, j < n; x has c channels per row; elements
 * of elem_bytes bytes. */
void tk_gather_channels(const void *x, int32_t rows, int32_t c, const int32_t *channels, int32_t n,
                        int32_t elem_bytes, void *out);

/* The inverse of gathering `channels` into a and the other channels into b:
 * out[r, channels[j]] = a[r, j] (j < na), the remaining channels of out, in order, are
 * b[r, 0..nb-1]. out has na + nb channels per row; channels is increasing. */
void tk_merge_channels(const void *a, const void *b, int32_t rows, int32_t na, int32_t nb,
                       const int32_t *channels, int32_t elem_bytes, void *out);

#ifdef __cplusplus
}
#endif

#endif
