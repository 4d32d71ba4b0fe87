/*
 * tinymlir portable CMSIS-NN subset -- public types.
 *
 * Written for tinymlir from CMSIS-NN's public API documentation. The struct
 * layouts (field names, types and order), enum values and header guard follow
 * CMSIS-NN's arm_nn_types.h so that code generated against this header also
 * compiles, unchanged, against the real library (see ../README.md).
 *
 * Only the types used by the functions in arm_nnfunctions.h are declared.
 */
#ifndef ARM_NN_TYPES_H
#define ARM_NN_TYPES_H

#include <stdbool.h>
#include <stdint.h>

/* Marker so that generated code / tests can tell this implementation apart
 * from the real library. Never defined by CMSIS-NN itself. */
#define TINYMLIR_CMSISNN_PORTABLE 1

/** Activation kinds used by CMSIS-NN's s16 activation helpers. */
typedef enum
{
    ARM_SIGMOID = 0,
    ARM_TANH = 1
} arm_nn_activation_type;

/** Return codes of the CMSIS-NN functions. */
typedef enum
{
    ARM_CMSIS_NN_SUCCESS = 0,        /* no error */
    ARM_CMSIS_NN_ARG_ERROR = -1,     /* an argument is invalid */
    ARM_CMSIS_NN_NO_IMPL_ERROR = -2, /* the requested variant is not implemented */
    ARM_CMSIS_NN_FAILURE = -3        /* logical error */
} arm_cmsis_nn_status;

/** Width/height pair used for strides, paddings and dilations. */
typedef struct
{
    int32_t w;
    int32_t h;
} cmsis_nn_tile;

/** Scratch memory handed to a function (see the *_get_buffer_size functions). */
typedef struct
{
    void *buf;
    int32_t size;
} cmsis_nn_context;

/** Tensor dimensions. The meaning of n (batch or output channels) and which
 * fields are used depends on the function, see arm_nnfunctions.h. */
typedef struct
{
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} cmsis_nn_dims;

/** One (multiplier, shift) pair per output channel. */
typedef struct
{
    int32_t *multiplier;
    int32_t *shift;
} cmsis_nn_per_channel_quant_params;

/** One (multiplier, shift) pair for the whole output tensor. */
typedef struct
{
    int32_t multiplier;
    int32_t shift;
} cmsis_nn_per_tensor_quant_params;

/** Per-tensor or per-channel requantization parameters. */
typedef struct
{
    int32_t *multiplier;
    int32_t *shift;
    int32_t is_per_channel;
} cmsis_nn_quant_params;

/** Output clamp, applied after the output offset has been added. */
typedef struct
{
    int32_t min;
    int32_t max;
} cmsis_nn_activation;

/** Convolution parameters.
 * input_offset is the negated input zero point (-z_x, range [-127, 128]);
 * output_offset is the output zero point (+z_y, range [-128, 127]). */
typedef struct
{
    int32_t input_offset;
    int32_t output_offset;
    cmsis_nn_tile stride;
    cmsis_nn_tile padding;
    cmsis_nn_tile dilation;
    cmsis_nn_activation activation;
} cmsis_nn_conv_params;

/** Depthwise convolution parameters; ch_mult * C_IN == C_OUT. */
typedef struct
{
    int32_t input_offset;
    int32_t output_offset;
    int32_t ch_mult;
    cmsis_nn_tile stride;
    cmsis_nn_tile padding;
    cmsis_nn_tile dilation;
    cmsis_nn_activation activation;
} cmsis_nn_dw_conv_params;

/** Pooling parameters. */
typedef struct
{
    cmsis_nn_tile stride;
    cmsis_nn_tile padding;
    cmsis_nn_activation activation;
} cmsis_nn_pool_params;

/** Fully connected parameters.
 * input_offset = -z_x, filter_offset = -z_w, output_offset = +z_y. */
typedef struct
{
    int32_t input_offset;
    int32_t filter_offset;
    int32_t output_offset;
    cmsis_nn_activation activation;
} cmsis_nn_fc_params;

#endif /* ARM_NN_TYPES_H */
