/*
 * tinymlir portable CMSIS-NN subset -- s8 fully connected layers:
 * arm_fully_connected_s8 (per-tensor requantization),
 * arm_fully_connected_per_channel_s8 (per-output-channel requantization) and
 * the buffer-size queries.
 *
 * Batch rows are read in place and fed, four at a time, to tmnn_gemm_s8
 * against the [C_OUT][K] weight matrix. No scratch memory is used.
 */
#include <stddef.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"
#include "tmnn_internal.h"

int32_t arm_fully_connected_s8_get_buffer_size(const cmsis_nn_dims *filter_dims)
{
    (void)filter_dims;
    return 0;
}

int32_t arm_fully_connected_s8_get_buffer_size_dsp(const cmsis_nn_dims *filter_dims)
{
    return arm_fully_connected_s8_get_buffer_size(filter_dims);
}

static arm_cmsis_nn_status tmnn_fully_connected(const cmsis_nn_fc_params *fc_params,
                                                const int32_t *mult,
                                                const int32_t *shift,
                                                const int32_t per_channel,
                                                const cmsis_nn_dims *input_dims,
                                                const int8_t *input_data,
                                                const cmsis_nn_dims *filter_dims,
                                                const int8_t *filter_data,
                                                const int32_t *bias_data,
                                                const cmsis_nn_dims *output_dims,
                                                int8_t *output_data)
{
    tmnn_gemm_s8_args args;
    int32_t batches, depth, out_c, b0;

    if (fc_params == NULL || mult == NULL || shift == NULL || input_dims == NULL || input_data == NULL ||
        filter_dims == NULL || filter_data == NULL || output_dims == NULL || output_data == NULL)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    batches = input_dims->n;
    depth = filter_dims->n;
    out_c = output_dims->c;
    if (batches <= 0 || depth <= 0 || out_c <= 0)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }

    args.w = filter_data;
    args.rows = out_c;
    args.depth = depth;
    args.bias = bias_data;
    args.mult = mult;
    args.shift = shift;
    args.per_channel = per_channel;
    args.in_off = fc_params->input_offset;
    args.w_off = fc_params->filter_offset;
    args.out_off = fc_params->output_offset;
    args.act_min = fc_params->activation.min;
    args.act_max = fc_params->activation.max;

    for (b0 = 0; b0 < batches; b0 += TMNN_GEMM_COLS)
    {
        const int32_t n_cols = MIN(TMNN_GEMM_COLS, batches - b0);
        const int8_t *cols[TMNN_GEMM_COLS];
        int32_t j;
        for (j = 0; j < n_cols; j++)
        {
            cols[j] = input_data + (int64_t)(b0 + j) * depth;
        }
        tmnn_gemm_s8(&args, cols, n_cols, output_data + (int64_t)b0 * out_c, out_c);
    }
    return ARM_CMSIS_NN_SUCCESS;
}

arm_cmsis_nn_status arm_fully_connected_s8(const cmsis_nn_context *ctx,
                                           const cmsis_nn_fc_params *fc_params,
                                           const cmsis_nn_per_tensor_quant_params *quant_params,
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
    if (quant_params == NULL)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    return tmnn_fully_connected(fc_params,
                                &quant_params->multiplier,
                                &quant_params->shift,
                                0,
                                input_dims,
                                input_data,
                                filter_dims,
                                filter_data,
                                bias_data,
                                output_dims,
                                output_data);
}

arm_cmsis_nn_status arm_fully_connected_per_channel_s8(const cmsis_nn_context *ctx,
                                                       const cmsis_nn_fc_params *fc_params,
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
    if (quant_params == NULL)
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    return tmnn_fully_connected(fc_params,
                                quant_params->multiplier,
                                quant_params->shift,
                                1,
                                input_dims,
                                input_data,
                                filter_dims,
                                filter_data,
                                bias_data,
                                output_dims,
                                output_data);
}
