/* tinymlir training kernels: input gradients of convolutions, fully connected and
 * depthwise layers (float32, NHWC). Semantics in tk.h.
 *
 * Both kernels visit dx one pixel at a time and keep the pixel's channel vector in dx
 * itself as the accumulator; the taps are visited in (kh, kw) order and, for a regular
 * convolution, the output channels in ascending order, so every dx element sees its
 * terms in exactly the documented order while the innermost loop runs over the
 * contiguous channel axis. */
#include <stddef.h>

#include "tk.h"

/* Output coordinate that input coordinate i receives from tap k, or -1 if none. */
static int32_t tk__src(int32_t i, int32_t k, int32_t pad, int32_t dil, int32_t stride, int32_t out)
{
    int32_t t = i + pad - k * dil;
    int32_t o;
    if (t < 0 || t % stride != 0) {
        return -1;
    }
    o = t / stride;
    return o < out ? o : -1;
}

void tk_conv_input_grad_f32(const tk_conv_geometry *g, const float *dy, const int8_t *w,
                            const float *w_scale, float *dx)
{
    const int32_t in_c = g->in_c, out_c = g->out_c;
    const int32_t w_co_stride = g->k_h * g->k_w * in_c;
    int32_t b, ih, iw, kh, kw, co, ci;
    for (b = 0; b < g->n; b++) {
        for (ih = 0; ih < g->in_h; ih++) {
            for (iw = 0; iw < g->in_w; iw++) {
                float *restrict acc = dx + (((size_t)b * g->in_h + ih) * g->in_w + iw) * in_c;
                for (ci = 0; ci < in_c; ci++) {
                    acc[ci] = 0.0f;
                }
                for (kh = 0; kh < g->k_h; kh++) {
                    const int32_t oh = tk__src(ih, kh, g->pad_h, g->dil_h, g->stride_h, g->out_h);
                    if (oh < 0) {
                        continue;
                    }
                    for (kw = 0; kw < g->k_w; kw++) {
                        const int32_t ow = tk__src(iw, kw, g->pad_w, g->dil_w, g->stride_w, g->out_w);
                        const float *dyrow;
                        const int8_t *wtap;
                        if (ow < 0) {
                            continue;
                        }
                        dyrow = dy + (((size_t)b * g->out_h + oh) * g->out_w + ow) * out_c;
                        wtap = w + (size_t)(kh * g->k_w + kw) * in_c;
                        for (co = 0; co < out_c; co++) {
                            const float gs = dyrow[co] * w_scale[co];
                            const int8_t *restrict wr = wtap + (size_t)co * w_co_stride;
                            if (gs == 0.0f) {
                                continue; /* adds +-0.0f to an accumulator that is never -0.0f */
                            }
                            for (ci = 0; ci < in_c; ci++) {
                                acc[ci] = acc[ci] + gs * (float)wr[ci];
                            }
                        }
                    }
                }
            }
        }
    }
}

void tk_depthwise_conv_input_grad_f32(const tk_conv_geometry *g, const float *dy, const int8_t *w,
                                      const float *w_scale, float *dx)
{
    const int32_t c = g->in_c;
    int32_t b, ih, iw, kh, kw, ch;
    for (b = 0; b < g->n; b++) {
        for (ih = 0; ih < g->in_h; ih++) {
            for (iw = 0; iw < g->in_w; iw++) {
                float *restrict acc = dx + (((size_t)b * g->in_h + ih) * g->in_w + iw) * c;
                for (ch = 0; ch < c; ch++) {
                    acc[ch] = 0.0f;
                }
                for (kh = 0; kh < g->k_h; kh++) {
                    const int32_t oh = tk__src(ih, kh, g->pad_h, g->dil_h, g->stride_h, g->out_h);
                    if (oh < 0) {
                        continue;
                    }
                    for (kw = 0; kw < g->k_w; kw++) {
                        const int32_t ow = tk__src(iw, kw, g->pad_w, g->dil_w, g->stride_w, g->out_w);
                        const float *restrict dyrow;
                        const int8_t *restrict wtap;
                        if (ow < 0) {
                            continue;
                        }
                        dyrow = dy + (((size_t)b * g->out_h + oh) * g->out_w + ow) * c;
                        wtap = w + (size_t)(kh * g->k_w + kw) * c;
                        for (ch = 0; ch < c; ch++) {
                            acc[ch] = acc[ch] + (dyrow[ch] * w_scale[ch]) * (float)wtap[ch];
                        }
                    }
                }
            }
        }
    }
}
