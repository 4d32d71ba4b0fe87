/*
 * tinymlir portable CMSIS-NN subset -- function declarations.
 *
 * Portable C99 implementations of the CMSIS-NN functions that tinymlir's code
 * generator calls. Names, signatures, struct arguments, data layouts and the
 * integer arithmetic follow CMSIS-NN's public API (pure C, non-DSP, non-MVE
 * path, default double-rounding requantization), so the real library can be
 * linked instead with no change to generated code (see ../README.md).
 *
 * Common conventions (as in CMSIS-NN):
 *  - activations are NHWC int8; cmsis_nn_dims is {n, h, w, c};
 *  - input_offset = -input_zero_point, output_offset = +output_zero_point;
 *  - an accumulator acc = bias + sum((x + input_offset) * w) is turned into an
 *    output with arm_nn_requantize(acc, mult, shift) + output_offset, then
 *    clamped to [activation.min, activation.max];
 *  - padding is the top/left padding; output positions are given by
 *    output_dims, and window elements falling outside the input (top, left,
 *    bottom or right) are skipped, i.e. behave as input == -input_offset;
 *  - bias pointers may be NULL (no bias);
 *  - ctx->buf must point to at least *_get_buffer_size() bytes when that size
 *    is non-zero (ARM_CMSIS_NN_ARG_ERROR otherwise).
 */
#ifndef ARM_NNFUNCTIONS_H
#define ARM_NNFUNCTIONS_H

#include "arm_nn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Convolution                                                              */
/* ------------------------------------------------------------------------ */

/**
 * s8 convolution; picks the best kernel below for the given shapes.
 * input_dims  [N, H, W, C_IN]; filter_dims [C_OUT, KH, KW, C_IN] (OHWI data);
 * bias_dims   [C_OUT] (not read by this implementation); output_dims [N, OH, OW, C_OUT].
 * filter_dims->c may divide C_IN for a grouped convolution (C_IN / filter_dims->c
 * groups, each with C_OUT / groups output channels), as in CMSIS-NN v7.
 * quant_params holds C_OUT multipliers and shifts.
 */
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
                                            int8_t *output_data);

/** Scratch bytes needed by arm_convolve_wrapper_s8 (pure C value of CMSIS-NN). */
int32_t arm_convolve_wrapper_s8_get_buffer_size(const cmsis_nn_conv_params *conv_params,
                                                const cmsis_nn_dims *input_dims,
                                                const cmsis_nn_dims *filter_dims,
                                                const cmsis_nn_dims *output_dims);

/** Scratch bytes the real CMSIS-NN needs on a Cortex-M with the DSP extension
 * (host-side query, same formula as CMSIS-NN). */
int32_t arm_convolve_wrapper_s8_get_buffer_size_dsp(const cmsis_nn_conv_params *conv_params,
                                                    const cmsis_nn_dims *input_dims,
                                                    const cmsis_nn_dims *filter_dims,
                                                    const cmsis_nn_dims *output_dims);

/**
 * Generic s8 convolution (im2col into ctx->buf + GEMM). Signature of CMSIS-NN
 * v7: upscale_dims (transposed-convolution helper) must be NULL or have
 * h == w == 1 here, otherwise ARM_CMSIS_NN_NO_IMPL_ERROR is returned.
 */
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
                                    int8_t *output_data);

/** Scratch bytes for arm_convolve_s8: 2 * align4(KH*KW*C_IN) * sizeof(int16_t). */
int32_t arm_convolve_s8_get_buffer_size(const cmsis_nn_dims *input_dims, const cmsis_nn_dims *filter_dims);

/** 1x1 convolution, requires padding 0, stride 1, dilation 1, no groups. */
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
                                             int8_t *output_data);

/** Scratch bytes for arm_convolve_1x1_s8_fast (0). */
int32_t arm_convolve_1x1_s8_fast_get_buffer_size(const cmsis_nn_dims *input_dims);

/** 1x1 convolution with any stride; requires padding 0, no groups. No scratch. */
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
                                        int8_t *output_data);

/* ------------------------------------------------------------------------ */
/* Depthwise convolution                                                    */
/* ------------------------------------------------------------------------ */

/**
 * s8 depthwise convolution wrapper.
 * input_dims [N, H, W, C_IN]; filter_dims [1, KH, KW, C_OUT] with
 * C_OUT = C_IN * ch_mult (output channel oc reads input channel oc / ch_mult);
 * output_dims [N, OH, OW, C_OUT]; C_OUT multipliers and shifts.
 */
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
                                                  int8_t *output_data);

/** Scratch bytes for arm_depthwise_conv_wrapper_s8 (pure C: 0). */
int32_t arm_depthwise_conv_wrapper_s8_get_buffer_size(const cmsis_nn_dw_conv_params *dw_conv_params,
                                                      const cmsis_nn_dims *input_dims,
                                                      const cmsis_nn_dims *filter_dims,
                                                      const cmsis_nn_dims *output_dims);

/** Scratch bytes the real CMSIS-NN needs with the DSP extension (host-side query). */
int32_t arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp(const cmsis_nn_dw_conv_params *dw_conv_params,
                                                          const cmsis_nn_dims *input_dims,
                                                          const cmsis_nn_dims *filter_dims,
                                                          const cmsis_nn_dims *output_dims);

/** Generic s8 depthwise convolution (any ch_mult, dilation, batch). No scratch. */
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
                                          int8_t *output_data);

/* ------------------------------------------------------------------------ */
/* Fully connected                                                          */
/* ------------------------------------------------------------------------ */

/**
 * s8 fully connected layer, per-tensor requantization.
 * input_dims: n = batches, the rest is flattened: each batch row has
 *             filter_dims->n values (accumulation depth K).
 * filter_dims: n = K (accumulation depth), c = C_OUT; data is [C_OUT][K].
 * output_dims: n = batches, c = C_OUT.
 * acc = bias + sum((x + input_offset) * (w + filter_offset)).
 * (CMSIS-NN documents filter_offset as 0 for older releases; non-zero values
 * are supported by v7 and here.)
 */
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
                                           int8_t *output_data);

/** Same as arm_fully_connected_s8 with C_OUT multipliers and shifts. */
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
                                                       int8_t *output_data);

/** Scratch bytes for arm_fully_connected_s8 / _per_channel_s8 (pure C: 0). */
int32_t arm_fully_connected_s8_get_buffer_size(const cmsis_nn_dims *filter_dims);

/** Scratch bytes the real CMSIS-NN needs with the DSP extension (0). */
int32_t arm_fully_connected_s8_get_buffer_size_dsp(const cmsis_nn_dims *filter_dims);

/* ------------------------------------------------------------------------ */
/* Elementwise                                                              */
/* ------------------------------------------------------------------------ */

/**
 * s8 elementwise add of two vectors of block_size elements:
 *   a = requantize((in1 + input_1_offset) << left_shift, input_1_mult, input_1_shift)
 *   b = requantize((in2 + input_2_offset) << left_shift, input_2_mult, input_2_shift)
 *   out = clamp(requantize(a + b, out_mult, out_shift) + out_offset)
 */
arm_cmsis_nn_status arm_elementwise_add_s8(const int8_t *input_1_vect,
                                           const int8_t *input_2_vect,
                                           const int32_t input_1_offset,
                                           const int32_t input_1_mult,
                                           const int32_t input_1_shift,
                                           const int32_t input_2_offset,
                                           const int32_t input_2_mult,
                                           const int32_t input_2_shift,
                                           const int32_t left_shift,
                                           int8_t *output,
                                           const int32_t out_offset,
                                           const int32_t out_mult,
                                           const int32_t out_shift,
                                           const int32_t out_activation_min,
                                           const int32_t out_activation_max,
                                           const int32_t block_size);

/* ------------------------------------------------------------------------ */
/* Pooling                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * s8 average pooling. input_dims [N, H, W, C]; filter_dims .h/.w = window;
 * output_dims [N, OH, OW, C]. The average is over the window elements inside
 * the input only; the sum is divided with rounding half away from zero.
 * No input/output offsets (in and out share quantization).
 */
arm_cmsis_nn_status arm_avgpool_s8(const cmsis_nn_context *ctx,
                                   const cmsis_nn_pool_params *pool_params,
                                   const cmsis_nn_dims *input_dims,
                                   const int8_t *input_data,
                                   const cmsis_nn_dims *filter_dims,
                                   const cmsis_nn_dims *output_dims,
                                   int8_t *output_data);

/** Scratch bytes for arm_avgpool_s8 (pure C: 0). */
int32_t arm_avgpool_s8_get_buffer_size(const int dim_dst_width, const int ch_src);

/** Scratch bytes the real CMSIS-NN needs with the DSP extension (ch_src * 4). */
int32_t arm_avgpool_s8_get_buffer_size_dsp(const int dim_dst_width, const int ch_src);

/** s8 max pooling, same layout as arm_avgpool_s8. No scratch. */
arm_cmsis_nn_status arm_max_pool_s8(const cmsis_nn_context *ctx,
                                    const cmsis_nn_pool_params *pool_params,
                                    const cmsis_nn_dims *input_dims,
                                    const int8_t *input_data,
                                    const cmsis_nn_dims *filter_dims,
                                    const cmsis_nn_dims *output_dims,
                                    int8_t *output_data);

#ifdef __cplusplus
}
#endif

#endif /* ARM_NNFUNCTIONS_H */
