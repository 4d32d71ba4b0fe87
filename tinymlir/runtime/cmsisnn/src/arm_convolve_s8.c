/*
 * tinymlir portable CMSIS-NN subset -- s8 convolution family:
 * arm_convolve_wrapper_s8, arm_convolve_s8, arm_convolve_1x1_s8_fast,
 * arm_convolve_1x1_s8 and their buffer-size queries.
 *
 * Generic path: up to four output pixels at a time are expanded (im2col) into
 * ctx->buf as raw int8 columns, window elements outside the input being filled
 * with -input_offset (which contributes exactly zero once the offset is added),
 * then multiplied against the OHWI filter rows by tmnn_gemm_s8. The 1x1 paths
 * read the input pixels in place and need no scratch memory.
 */
#include <stddef.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"
#include "tmnn_internal.h"

static int tmnn_dims_ok(const cmsis_nn_dims *d)
{
    return d != NULL && d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

/* Checks shared by all convolution entry points. Returns the number of groups,
 * or 0 if the arguments are inconsistent. */
static int32_t tmnn_conv_check(const cmsis_nn_conv_params *conv_params,
                               const cmsis_nn_per_channel_quant_params *quant_params,
                               const cmsis_nn_dims *input_dims,
                               const int8_t *input_data,
                               const cmsis_nn_dims *filter_dims,
                               const int8_t *filter_data,
                               const cmsis_nn_dims *output_dims,
                               const int8_t *output_data)
{
    int32_t groups;
    if (conv_params == NULL || quant_params == NULL || quant_params->multiplier == NULL ||
        quant_params->shift == NULL || input_data == NULL || filter_data == NULL || output_data == NULL)
    {
        return 0;
    }
    if (!tmnn_dims_ok(input_dims) || !tmnn_dims_ok(filter_dims) || !tmnn_dims_ok(output_dims))
    {
        return 0;
    }
    if (conv_params->stride.w <= 0 || conv_params->stride.h <= 0 || conv_params->dilation.w <= 0 ||
        conv_params->dilation.h <= 0 || conv_params->padding.w < 0 || conv_params->padding.h < 0)
    {
        return 0;
    }
    if (input_dims->c % filter_dims->c != 0 || output_dims->n != input_dims->n)
    {
        return 0;
    }
    groups = input_dims->c / filter_dims->c;
    if (output_dims->c % groups != 0 || filter_dims->n != output_dims->c)
    {
        return 0;
    }
    return groups;
}

static int tmnn_is_1x1_unpadded(const cmsis_nn_conv_params *conv_params,
                                const cmsis_nn_dims *input_dims,
                                const cmsis_nn_dims *filter_dims)
{
    return conv_params->padding.w == 0 && conv_params->padding.h == 0 && filter_dims->w == 1 &&
        filter_dims->h == 1 && conv_params->dilation.w == 1 && conv_params->dilation.h == 1 &&
        filter_dims->c == input_dims->c;
}

static void tmnn_conv_gemm_args(tmnn_gemm_s8_args *a,
                                const cmsis_nn_conv_params *conv_params,
                                const cmsis_nn_per_channel_quant_params *quant_params,
                                const int8_t *filter_data,
                                const int32_t *bias_data,
                                const int32_t rows,
                                const int32_t depth)
{
    a->w = filter_data;
    a->rows = rows;
    a->depth = depth;
    a->bias = bias_data;
    a->mult = quant_params->multiplier;
    a->shift = quant_params->shift;
    a->per_channel = 1;
    a->in_off = conv_params->input_offset;
    a->w_off = 0;
    a->out_off = conv_params->output_offset;
    a->act_min = conv_params->activation.min;
    a->act_max = conv_params->activation.max;
}

/* ------------------------------------------------------------------------ */

int32_t arm_convolve_s8_get_buffer_size(const cmsis_nn_dims *input_dims, const cmsis_nn_dims *filter_dims)
{
    const int32_t rhs_cols = filter_dims->w * filter_dims->h * input_dims->c;
    const int32_t aligned = (rhs_cols + 3) & ~3;
    /* Same size as CMSIS-NN's pure C path: room for two int16 columns, which
     * here holds TMNN_GEMM_COLS (= 4) int8 columns. */
    return 2 * aligned * (int32_t)sizeof(int16_t);
}

int32_t arm_convolve_1x1_s8_fast_get_buffer_size(const cmsis_nn_dims *input_dims)
{
    (void)input_dims;
    return 0;
}

int32_t arm_convolve_wrapper_s8_get_buffer_size(const cmsis_nn_conv_params *conv_params,
                                                const cmsis_nn_dims *input_dims,
                                                const cmsis_nn_dims *filter_dims,
                                                const cmsis_nn_dims *output_dims)
{
    (void)output_dims;
    if (tmnn_is_1x1_unpadded(conv_params, input_dims, filter_dims))
    {
        return 0; /* arm_convolve_1x1_s8_fast / arm_convolve_1x1_s8 */
    }
    return arm_convolve_s8_get_buffer_size(input_dims, filter_dims);
}

int32_t arm_convolve_wrapper_s8_get_buffer_size_dsp(const cmsis_nn_conv_params *conv_params,
                                                    const cmsis_nn_dims *input_dims,
                                                    const cmsis_nn_dims *filter_dims,
                                                    const cmsis_nn_dims *output_dims)
{
    /* The DSP build of CMSIS-NN uses the same sizes as its pure C build. */
    return arm_convolve_wrapper_s8_get_buffer_size(conv_params, input_dims, filter_dims, output_dims);
}

/* ------------------------------------------------------------------------ */

/* Writes the im2col column of output pixel (out_y, out_x) for group g. */
static void tmnn_im2col_pixel(int8_t *dst,
                              const int8_t *batch_input,
                              const cmsis_nn_dims *input_dims,
                              const cmsis_nn_dims *filter_dims,
                              const cmsis_nn_conv_params *conv_params,
                              const int32_t groups,
                              const int32_t g,
                              const int32_t out_y,
                              const int32_t out_x,
                              const int8_t pad_value)
{
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t in_c = input_dims->c;
    const int32_t ker_h = filter_dims->h;
    const int32_t ker_w = filter_dims->w;
    const int32_t ck = filter_dims->c;
    const int32_t dil_y = conv_params->dilation.h;
    const int32_t dil_x = conv_params->dilation.w;
    const int32_t base_y = out_y * conv_params->stride.h - conv_params->padding.h;
    const int32_t base_x = out_x * conv_params->stride.w - conv_params->padding.w;
    const int32_t row_len = ker_w * ck;
    const int contiguous_rows =
        groups == 1 && dil_x == 1 && base_x >= 0 && base_x + ker_w <= in_w;
    int32_t ky;

    for (ky = 0; ky < ker_h; ky++)
    {
        const int32_t iy = base_y + ky * dil_y;
        if (iy < 0 || iy >= in_h)
        {
            memset(dst, pad_value, (size_t)row_len);
        }
        else if (contiguous_rows)
        {
            memcpy(dst, batch_input + ((int64_t)iy * in_w + base_x) * in_c, (size_t)row_len);
        }
        else
        {
            int32_t kx;
            for (kx = 0; kx < ker_w; kx++)
            {
                const int32_t ix = base_x + kx * dil_x;
                if (ix < 0 || ix >= in_w)
                {
                    memset(dst + kx * ck, pad_value, (size_t)ck);
                }
                else
                {
                    memcpy(dst + kx * ck, batch_input + ((int64_t)iy * in_w + ix) * in_c + g * ck, (size_t)ck);
                }
            }
        }
        dst += row_len;
    }
}

arm_cmsis_nn_status arm_convolve_s8(const cmsis_nn_context *ctx,
                                    const cmsis_nn_conv_params *conv_params,
                                    const cmsis_nn_per_channel_quant_params *quant_params,
                                    const cmsis_nn_dims *input_dims,
                                    const int8_t *input_data,
                                    const cmsis_nn_dims *filter_dims,
                                    const int8_t *filter_data,
                                    const cmsis_nn_dims *bias_dims,
                                    const int32_t *bias_data,
                                    const cmsis_nn_dims *upscale_dims,
                                    const cmsis_nn_dims *output_dims,
                                    int8_t *output_data)
{
    const int32_t groups = tmnn_conv_check(
        conv_params, quant_params, input_dims, input_data, filter_dims, filter_data, output_dims, output_data);
    int32_t depth, rows_per_group, out_c, n_pix, batch, g;
    int8_t *buf;
    int8_t pad_value;
    tmnn_gemm_s8_args args;

    (void)bias_dims;
    if (groups == 0)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    if (upscale_dims != NULL && (upscale_dims->h != 1 || upscale_dims->w != 1))
    {
        return ARM_CMSIS_NN_NO_IMPL_ERROR;
    }
    /* Padding is written as the raw int8 value -input_offset. */
    if (conv_params->input_offset < -127 || conv_params->input_offset > 128)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    if (ctx == NULL || ctx->buf == NULL)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    buf = (int8_t *)ctx->buf;
    pad_value = (int8_t)(-conv_params->input_offset);

    depth = filter_dims->h * filter_dims->w * filter_dims->c;
    out_c = output_dims->c;
    rows_per_group = out_c / groups;
    n_pix = output_dims->h * output_dims->w;

    for (batch = 0; batch < input_dims->n; batch++)
    {
        const int8_t *batch_input = input_data + (int64_t)batch * input_dims->h * input_dims->w * input_dims->c;
        int8_t *batch_output = output_data + (int64_t)batch * n_pix * out_c;
        int32_t p0;
        for (p0 = 0; p0 < n_pix; p0 += TMNN_GEMM_COLS)
        {
            const int32_t n_cols = MIN(TMNN_GEMM_COLS, n_pix - p0);
            for (g = 0; g < groups; g++)
            {
                const int8_t *cols[TMNN_GEMM_COLS];
                int32_t j;
                for (j = 0; j < n_cols; j++)
                {
                    const int32_t p = p0 + j;
                    cols[j] = buf + (int64_t)j * depth;
                    tmnn_im2col_pixel(buf + (int64_t)j * depth,
                                      batch_input,
                                      input_dims,
                                      filter_dims,
                                      conv_params,
                                      groups,
                                      g,
                                      p / output_dims->w,
                                      p % output_dims->w,
                                      pad_value);
                }
                tmnn_conv_gemm_args(&args,
                                    conv_params,
                                    quant_params,
                                    filter_data + (int64_t)g * rows_per_group * depth,
                                    bias_data ? bias_data + g * rows_per_group : NULL,
                                    rows_per_group,
                                    depth);
                args.mult = quant_params->multiplier + g * rows_per_group;
                args.shift = quant_params->shift + g * rows_per_group;
                tmnn_gemm_s8(&args, cols, n_cols, batch_output + (int64_t)p0 * out_c + g * rows_per_group, out_c);
            }
        }
    }
    return ARM_CMSIS_NN_SUCCESS;
}

/* 1x1 convolution without padding: every output pixel is one input pixel. */
static arm_cmsis_nn_status tmnn_convolve_1x1(const cmsis_nn_conv_params *conv_params,
                                             const cmsis_nn_per_channel_quant_params *quant_params,
                                             const cmsis_nn_dims *input_dims,
                                             const int8_t *input_data,
                                             const cmsis_nn_dims *filter_dims,
                                             const int8_t *filter_data,
                                             const int32_t *bias_data,
                                             const cmsis_nn_dims *output_dims,
                                             int8_t *output_data)
{
    const int32_t groups = tmnn_conv_check(
        conv_params, quant_params, input_dims, input_data, filter_dims, filter_data, output_dims, output_data);
    const int32_t in_c = input_dims->c;
    const int32_t out_c = output_dims->c;
    const int32_t n_pix = output_dims->h * output_dims->w;
    const int32_t stride_y = conv_params->stride.h;
    const int32_t stride_x = conv_params->stride.w;
    int32_t batch;
    tmnn_gemm_s8_args args;

    if (groups != 1 || !tmnn_is_1x1_unpadded(conv_params, input_dims, filter_dims))
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    /* Every output pixel must read a pixel inside the input. */
    if ((output_dims->h - 1) * stride_y >= input_dims->h || (output_dims->w - 1) * stride_x >= input_dims->w)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    tmnn_conv_gemm_args(&args, conv_params, quant_params, filter_data, bias_data, out_c, in_c);

    for (batch = 0; batch < input_dims->n; batch++)
    {
        const int8_t *batch_input = input_data + (int64_t)batch * input_dims->h * input_dims->w * in_c;
        int8_t *batch_output = output_data + (int64_t)batch * n_pix * out_c;
        int32_t p0;
        for (p0 = 0; p0 < n_pix; p0 += TMNN_GEMM_COLS)
        {
            const int32_t n_cols = MIN(TMNN_GEMM_COLS, n_pix - p0);
            const int8_t *cols[TMNN_GEMM_COLS];
            int32_t j;
            for (j = 0; j < n_cols; j++)
            {
                const int32_t p = p0 + j;
                const int32_t iy = (p / output_dims->w) * stride_y;
                const int32_t ix = (p % output_dims->w) * stride_x;
                cols[j] = batch_input + ((int64_t)iy * input_dims->w + ix) * in_c;
            }
            tmnn_gemm_s8(&args, cols, n_cols, batch_output + (int64_t)p0 * out_c, out_c);
        }
    }
    return ARM_CMSIS_NN_SUCCESS;
}

arm_cmsis_nn_status arm_convolve_1x1_s8_fast(const cmsis_nn_context *ctx,
                                             const cmsis_nn_conv_params *conv_params,
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
    (void)ctx;
    (void)bias_dims;
    if (conv_params == NULL || conv_params->stride.w != 1 || conv_params->stride.h != 1)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    return tmnn_convolve_1x1(conv_params,
                             quant_params,
                             input_dims,
                             input_data,
                             filter_dims,
                             filter_data,
                             bias_data,
                             output_dims,
                             output_data);
}

arm_cmsis_nn_status arm_convolve_1x1_s8(const cmsis_nn_context *ctx,
                                        const cmsis_nn_conv_params *conv_params,
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
    (void)ctx;
    (void)bias_dims;
    return tmnn_convolve_1x1(conv_params,
                             quant_params,
                             input_dims,
                             input_data,
                             filter_dims,
                             filter_data,
                             bias_data,
                             output_dims,
                             output_data);
}

arm_cmsis_nn_status arm_convolve_wrapper_s8(const cmsis_nn_context *ctx,
                                            const cmsis_nn_conv_params *conv_params,
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
    if (conv_params == NULL || input_dims == NULL || filter_dims == NULL)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    if (tmnn_is_1x1_unpadded(conv_params, input_dims, filter_dims))
    {
        if (conv_params->stride.w == 1 && conv_params->stride.h == 1)
        {
            return arm_convolve_1x1_s8_fast(ctx,
                                            conv_params,
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
        return arm_convolve_1x1_s8(ctx,
                                   conv_params,
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
    return arm_convolve_s8(ctx,
                           conv_params,
                           quant_params,
                           input_dims,
                           input_data,
                           filter_dims,
                           filter_data,
                           bias_dims,
                           bias_data,
                           NULL,
                           output_dims,
                           output_data);
}
