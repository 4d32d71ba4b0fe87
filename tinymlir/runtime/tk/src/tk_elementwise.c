/* tinymlir training kernels: elementwise gradients, masks, pooling gradient, float SGD.
 * Exact semantics in tk.h. */
#include <math.h>
#include <string.h>

#include "tk.h"

void tk_output_mask_s8(const int8_t *y, int32_t count, int32_t act_min, int32_t act_max, uint8_t *mask)
{
    int32_t full = count >> 3;
    int32_t b, k;
    for (b = 0; b < full; b++) {
        const int8_t *yb = y + 8 * b;
        uint32_t bits = 0;
        for (k = 0; k < 8; k++) {
            int32_t v = yb[k];
            bits |= (uint32_t)(act_min < v && v < act_max) << k;
        }
        mask[b] = (uint8_t)bits;
    }
    if (count & 7) {
        const int8_t *yb = y + 8 * full;
        uint32_t bits = 0;
        for (k = 0; k < (count & 7); k++) {
            int32_t v = yb[k];
            bits |= (uint32_t)(act_min < v && v < act_max) << k;
        }
        mask[full] = (uint8_t)bits;
    }
}

void tk_mask_grad_f32(const float *g, const uint8_t *mask, int32_t count, float *out)
{
    int32_t i;
    for (i = 0; i < count; i++) {
        out[i] = ((mask[i >> 3] >> (i & 7)) & 1u) ? g[i] : 0.0f;
    }
}

void tk_add_f32(const float *a, const float *b, int32_t count, float *out)
{
    int32_t i;
    for (i = 0; i < count; i++) {
        out[i] = a[i] + b[i];
    }
}

void tk_global_avgpool_grad_f32(const float *dy, int32_t n, int32_t h, int32_t w, int32_t c, float *dx)
{
    const int32_t hw = h * w;
    const float denom = (float)hw;
    int32_t b, p, ch;
    for (b = 0; b < n; b++) {
        const float *src = dy + b * c;
        float *dst = dx + b * hw * c;
        if (hw <= 0) {
            continue;
        }
        for (ch = 0; ch < c; ch++) {
            dst[ch] = src[ch] / denom;
        }
        for (p = 1; p < hw; p++) {
            memcpy(dst + p * c, dst, (size_t)c * sizeof(float));
        }
    }
}

int32_t tk_sgd_f32(float *p, const float *g, int32_t count, float lr)
{
    int32_t i, skipped = 0;
    for (i = 0; i < count; i++) {
        float t = lr * g[i];
        if (!isfinite(t)) {
            skipped++;
            continue;
        }
        p[i] = p[i] - t;
    }
    return skipped;
}
