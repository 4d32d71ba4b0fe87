/*
 * tinymlir portable CMSIS-NN subset -- s8 depthwise convolution:
 * arm_depthwise_conv_wrapper_s8, arm_depthwise_conv_s8 and the buffer-size
 * queries.
 *
 * Output channel oc reads input channel oc / ch_mult and filter channel oc
 * (filter layout [1, KH, KW, C_IN * ch_mult]). For each output pixel the
 * accumulators of a block of output channels live on the stack; the kernel
 * positions inside the input are visited once each, and for ch_mult == 1 the
 * innermost loop runs over contiguous channels so that it vectorizes. No
 * scratch memory is used.
 */
#include <stddef.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"

#define TMNN_DW_BLOCK 64

static int tmnn_dw_dims_ok(const cmsis_nn_dims *d)
{
    return d != NULL && d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

int32_t arm_depthwise_conv_wrapper_s8_get_buffer_size(const cmsis_nn_dw_conv_params *dw_conv_params,
                                                      const cmsis_nn_dims *input_dims,
                                                      const cmsis_nn_dims *filter_dims,
                                                      const cmsis_nn_dims *output_dims)
{
    (void)dw_conv_params;
    (void)input_dims;
    (void)filter_dims;
    (void)output_dims;
    return 0;
}

int32_t arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp(const cmsis_nn_dw_conv_params *dw_conv_params,
                                                          const cmsis_nn_dims *input_dims,
                                                          const cmsis_nn_dims *filter_dims,
                                                          const cmsis_nn_dims *output_dims)
{
    /* CMSIS-NN's DSP build needs an int16 im2col row for its optimized
     * ch_mult == 1 kernel, except for the dedicated 3x3 kernel (padding <= 1). */
    if (input_dims->c == output_dims->c && input_dims->n == 1 && dw_conv_params->dilation.w == 1 &&
        dw_conv_params->dilation.h == 1)
    {
        if (filter_dims->w == 3 && filter_dims->h == 3 && dw_conv_params->padding.h <= 1 &&
            dw_conv_params->padding.w <= 1)
        {
            return 0;
        }
        return input_dims->c * filter_dims->w * filter_dims->h * (int32_t)sizeof(int16_t);
    }
    return 0;
}

arm_cmsis_nn_status arm_depthwise_conv_s8(const cmsis_nn_context *ctx,
                                          const cmsis_nn_dw_conv_params *dw_conv_params,
                                          const cmsis_nn_per_channel_quant_params *quant_params,
                                          const cmsis_nn_dims *input_dims,
                                          const int8_t *input_data,
                                          const cmsis_nn_dims *filter_dims,
                                          const int8_t *filter_data,
                                          const cmsis_nn_dims *bias_dims,
                                          const int32_t *bias_data,
                                          const cmsis_nn_dims *output_dims,
                                          int8_t *output_data)
{
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, ker_h, ker_w, ch_mult;
    int32_t stride_y, stride_x, pad_y, pad_x, dil_y, dil_x, in_off;
    int32_t batch;

    (void)ctx;
    (void)bias_dims;
    if (dw_conv_params == NULL || quant_params == NULL || quant_params->multiplier == NULL ||
        quant_params->shift == NULL || input_data == NULL || filter_data == NULL || output_data == NULL ||
        !tmnn_dw_dims_ok(input_dims) || !tmnn_dw_dims_ok(filter_dims) || !tmnn_dw_dims_ok(output_dims))
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    ch_mult = dw_conv_params->ch_mult;
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    out_h = output_dims->h;
    out_w = output_dims->w;
    out_c = output_dims->c;
    ker_h = filter_dims->h;
    ker_w = filter_dims->w;
    stride_y = dw_conv_params->stride.h;
    stride_x = dw_conv_params->stride.w;
    pad_y = dw_conv_params->padding.h;
    pad_x = dw_conv_params->padding.w;
    dil_y = dw_conv_params->dilation.h;
    dil_x = dw_conv_params->dilation.w;
    in_off = dw_conv_params->input_offset;
    if (ch_mult <= 0 || out_c != in_c * ch_mult || filter_dims->c != out_c || output_dims->n != input_dims->n ||
        stride_y <= 0 || stride_x <= 0 || dil_y <= 0 || dil_x <= 0 || pad_y < 0 || pad_x < 0 ||
        in_off < -127 || in_off > 128)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }

    for (batch = 0; batch < input_dims->n; batch++)
    {
        const int8_t *batch_input = input_data + (int64_t)batch * in_h * in_w * in_c;
        int8_t *out = output_data + (int64_t)batch * out_h * out_w * out_c;
        int32_t oy, ox;
        for (oy = 0; oy < out_h; oy++)
        {
            const int32_t base_y = oy * stride_y - pad_y;
            for (ox = 0; ox < out_w; ox++)
            {
                const int32_t base_x = ox * stride_x - pad_x;
                int32_t oc0;
                for (oc0 = 0; oc0 < out_c; oc0 += TMNN_DW_BLOCK)
                {
                    const int32_t n_oc = MIN(TMNN_DW_BLOCK, out_c - oc0);
                    int32_t acc[TMNN_DW_BLOCK];
                    int32_t i, ky;
                    for (i = 0; i < n_oc; i++)
                    {
                        acc[i] = 0;
                    }
                    for (ky = 0; ky < ker_h; ky++)
                    {
                        const int32_t iy = base_y + ky * dil_y;
                        int32_t kx;
                        if (iy < 0 || iy >= in_h)
                        {
                            continue;
                        }
                        for (kx = 0; kx < ker_w; kx++)
                        {
                            const int32_t ix = base_x + kx * dil_x;
                            const int8_t *x;
                            const int8_t *w;
                            if (ix < 0 || ix >= in_w)
                            {
                                continue;
                            }
                            x = batch_input + ((int64_t)iy * in_w + ix) * in_c;
                            w = filter_data + ((int64_t)ky * ker_w + kx) * out_c + oc0;
                            if (ch_mult == 1)
                            {
                                const int8_t *xb = x + oc0;
                                /* |(x + in_off) * w| <= 2^15, so the window sum stays
                                 * inside int32 for any kernel of up to 2^16 taps. */
                                for (i = 0; i < n_oc; i++)
                                {
                                    acc[i] += (xb[i] + in_off) * w[i];
                                }
                            }
                            else
                            {
                                int32_t ic = oc0 / ch_mult;
                                int32_t m = oc0 % ch_mult;
                                for (i = 0; i < n_oc; i++)
                                {
                                    acc[i] += (x[ic] + in_off) * w[i];
                                    if (++m == ch_mult)
                                    {
                                        m = 0;
                                        ic++;
                                    }
                                }
                            }
                        }
                    }
                    for (i = 0; i < n_oc; i++)
                    {
                        const int32_t oc = oc0 + i;
                        const int32_t total =
                            bias_data ? tmnn_add_wrap_s32(bias_data[oc], acc[i]) : acc[i];
                        out[oc] = tmnn_requantize_to_s8(total,
                                                        quant_params->multiplier[oc],
                                                        quant_params->shift[oc],
                                                        dw_conv_params->output_offset,
                                                        dw_conv_params->activation.min,
                                                        dw_conv_params->activation.max);
                    }
                }
                out += out_c;
            }
        }
    }
    return ARM_CMSIS_NN_SUCCESS;
}

arm_cmsis_nn_status arm_depthwise_conv_wrapper_s8(const cmsis_nn_context *ctx,
                                                  const cmsis_nn_dw_conv_params *dw_conv_params,
                                                  const cmsis_nn_per_channel_quant_params *quant_params,
                                                  const cmsis_nn_dims *input_dims,
                                                  const int8_t *input_data,
                                                  const cmsis_nn_dims *filter_dims,
                                                  const int8_t *filter_data,
                                                  const cmsis_nn_dims *bias_dims,
                                                  const int32_t *bias_data,
                                                  const cmsis_nn_dims *output_dims,
                                                  int8_t *output_data)
{
    return arm_depthwise_conv_s8(ctx,
                                 dw_conv_params,
                                 quant_params,
                                 input_dims,
                                 input_data,
                                 filter_dims,
                                 filter_data,
                                 bias_dims,
                                 bias_data,
                                 output_dims,
                                 output_data);
}
