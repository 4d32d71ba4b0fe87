/*
 * tinymlir portable CMSIS-NN subset -- s8 pooling: arm_avgpool_s8,
 * arm_max_pool_s8 and the buffer-size queries.
 *
 * Windows are clipped to the input (padding never contributes). The average
 * is sum / count with rounding half away from zero, count being the number of
 * window elements inside the input. Both functions clamp the result to the
 * activation range and process batches one after the other. A window with no
 * element inside the input is an argument error. No scratch memory is used.
 */
#include <stddef.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"

#define TMNN_POOL_BLOCK 64

int32_t arm_avgpool_s8_get_buffer_size(const int dim_dst_width, const int ch_src)
{
    (void)dim_dst_width;
    (void)ch_src;
    return 0;
}

int32_t arm_avgpool_s8_get_buffer_size_dsp(const int dim_dst_width, const int ch_src)
{
    /* CMSIS-NN's DSP build keeps one int32 sum per channel. */
    (void)dim_dst_width;
    return ch_src * (int32_t)sizeof(int32_t);
}

static int tmnn_pool_args_ok(const cmsis_nn_pool_params *pool_params,
                             const cmsis_nn_dims *input_dims,
                             const int8_t *input_data,
                             const cmsis_nn_dims *filter_dims,
                             const cmsis_nn_dims *output_dims,
                             const int8_t *output_data)
{
    return pool_params != NULL && input_dims != NULL && input_data != NULL && filter_dims != NULL &&
        output_dims != NULL && output_data != NULL && input_dims->n > 0 && input_dims->h > 0 &&
        input_dims->w > 0 && input_dims->c > 0 && filter_dims->h > 0 && filter_dims->w > 0 &&
        output_dims->h > 0 && output_dims->w > 0 && pool_params->stride.h > 0 && pool_params->stride.w > 0 &&
        pool_params->padding.h >= 0 && pool_params->padding.w >= 0;
}

/* Clipped window [y0, y1) x [x0, x1) of output pixel (oy, ox); returns its size. */
static int32_t tmnn_pool_window(const cmsis_nn_pool_params *pool_params,
                                const cmsis_nn_dims *input_dims,
                                const cmsis_nn_dims *filter_dims,
                                const int32_t oy,
                                const int32_t ox,
                                int32_t *y0,
                                int32_t *y1,
                                int32_t *x0,
                                int32_t *x1)
{
    const int32_t base_y = oy * pool_params->stride.h - pool_params->padding.h;
    const int32_t base_x = ox * pool_params->stride.w - pool_params->padding.w;
    *y0 = MAX(base_y, 0);
    *y1 = MIN(base_y + filter_dims->h, input_dims->h);
    *x0 = MAX(base_x, 0);
    *x1 = MIN(base_x + filter_dims->w, input_dims->w);
    if (*y1 <= *y0 || *x1 <= *x0)
    {
        return 0;
    }
    return (*y1 - *y0) * (*x1 - *x0);
}

/* One output pixel: reduce the window [y0, y1) x [x0, x1) of `src` (one batch, NHWC)
 * into `dst[0..ch)`, clamped to [act_min, act_max]. `count` is the window's size. */
typedef void (*tmnn_pool_reduce)(const int8_t *src, int32_t in_w, int32_t ch, int32_t y0, int32_t y1,
                                 int32_t x0, int32_t x1, int32_t count, int32_t act_min, int32_t act_max,
                                 int8_t *dst);

static void tmnn_average_window(const int8_t *src, int32_t in_w, int32_t ch, int32_t y0, int32_t y1,
                                int32_t x0, int32_t x1, int32_t count, int32_t act_min, int32_t act_max,
                                int8_t *dst)
{
    int32_t c0;
    for (c0 = 0; c0 < ch; c0 += TMNN_POOL_BLOCK)
    {
        const int32_t n_c = MIN(TMNN_POOL_BLOCK, ch - c0);
        int32_t sum[TMNN_POOL_BLOCK];
        int32_t i, y, x;
        for (i = 0; i < n_c; i++)
        {
            sum[i] = 0;
        }
        for (y = y0; y < y1; y++)
        {
            for (x = x0; x < x1; x++)
            {
                const int8_t *p = src + ((int64_t)y * in_w + x) * ch + c0;
                for (i = 0; i < n_c; i++)
                {
                    sum[i] += p[i];
                }
            }
        }
        for (i = 0; i < n_c; i++)
        {
            const int32_t s = sum[i];
            /* C division truncates toward zero: this rounds half away from zero. */
            int32_t avg = s > 0 ? (s + count / 2) / count : (s - count / 2) / count;
            avg = MAX(avg, act_min);
            avg = MIN(avg, act_max);
            dst[c0 + i] = (int8_t)avg;
        }
    }
}

static void tmnn_max_window(const int8_t *src, int32_t in_w, int32_t ch, int32_t y0, int32_t y1,
                            int32_t x0, int32_t x1, int32_t count, int32_t act_min, int32_t act_max,
                            int8_t *dst)
{
    int32_t i, y, x;
    (void)count;
    for (i = 0; i < ch; i++)
    {
        dst[i] = src[((int64_t)y0 * in_w + x0) * ch + i];
    }
    for (y = y0; y < y1; y++)
    {
        for (x = x0; x < x1; x++)
        {
            const int8_t *p = src + ((int64_t)y * in_w + x) * ch;
            for (i = 0; i < ch; i++)
            {
                dst[i] = p[i] > dst[i] ? p[i] : dst[i];
            }
        }
    }
    for (i = 0; i < ch; i++)
    {
        int32_t v = dst[i];
        v = MAX(v, act_min);
        v = MIN(v, act_max);
        dst[i] = (int8_t)v;
    }
}

/* The pooling loop shared by average and max pooling: every batch and output pixel. */
static arm_cmsis_nn_status tmnn_pool_s8(const cmsis_nn_pool_params *pool_params,
                                        const cmsis_nn_dims *input_dims,
                                        const int8_t *input_data,
                                        const cmsis_nn_dims *filter_dims,
                                        const cmsis_nn_dims *output_dims,
                                        int8_t *output_data,
                                        tmnn_pool_reduce reduce)
{
    int32_t batch, in_h, in_w, ch, out_h, out_w;

    if (!tmnn_pool_args_ok(pool_params, input_dims, input_data, filter_dims, output_dims, output_data))
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    ch = input_dims->c;
    out_h = output_dims->h;
    out_w = output_dims->w;

    for (batch = 0; batch < input_dims->n; batch++)
    {
        const int8_t *src = input_data + (int64_t)batch * in_h * in_w * ch;
        int8_t *dst = output_data + (int64_t)batch * out_h * out_w * ch;
        int32_t oy, ox;
        for (oy = 0; oy < out_h; oy++)
        {
            for (ox = 0; ox < out_w; ox++)
            {
                int32_t y0, y1, x0, x1;
                const int32_t count = tmnn_pool_window(pool_params, input_dims, filter_dims, oy, ox, &y0, &y1, &x0, &x1);
                if (count == 0)
                {
                    return ARM_CMSIS_NN_ARG_ERROR;
                }
                reduce(src, in_w, ch, y0, y1, x0, x1, count, pool_params->activation.min,
                       pool_params->activation.max, dst);
                dst += ch;
            }
        }
    }
    return ARM_CMSIS_NN_SUCCESS;
}

arm_cmsis_nn_status arm_avgpool_s8(const cmsis_nn_context *ctx,
                                   const cmsis_nn_pool_params *pool_params,
                                   const cmsis_nn_dims *input_dims,
                                   const int8_t *input_data,
                                   const cmsis_nn_dims *filter_dims,
                                   const cmsis_nn_dims *output_dims,
                                   int8_t *output_data)
{
    (void)ctx;
    return tmnn_pool_s8(pool_params, input_dims, input_data, filter_dims, output_dims, output_data,
                        tmnn_average_window);
}

arm_cmsis_nn_status arm_max_pool_s8(const cmsis_nn_context *ctx,
                                    const cmsis_nn_pool_params *pool_params,
                                    const cmsis_nn_dims *input_dims,
                                    const int8_t *input_data,
                                    const cmsis_nn_dims *filter_dims,
                                    const cmsis_nn_dims *output_dims,
                                    int8_t *output_data)
{
    (void)ctx;
    return tmnn_pool_s8(pool_params, input_dims, input_data, filter_dims, output_dims, output_data,
                        tmnn_max_window);
}
