/*
 * tinymlir portable CMSIS-NN subset -- arm_elementwise_add_s8.
 *
 * Both inputs are brought to a common scale with a left shift (typically 20,
 * as TFLite's quantized ADD does) and a requantization each, added, and the
 * sum requantized to the output scale:
 *
 *   a   = requantize((in1 + input_1_offset) * 2^left_shift, input_1_mult, input_1_shift)
 *   b   = requantize((in2 + input_2_offset) * 2^left_shift, input_2_mult, input_2_shift)
 *   out = clamp(requantize(a + b, out_mult, out_shift) + out_offset)
 *
 * All intermediate int32 operations wrap modulo 2^32 like the target code.
 */
#include <stddef.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"

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
                                           const int32_t block_size)
{
    int64_t scale;
    int32_t i;

    if (block_size < 0 || left_shift < 0 || left_shift > 31 ||
        (block_size > 0 && (input_1_vect == NULL || input_2_vect == NULL || output == NULL)))
    {
        return ARM_CMSIS_NN_ARG_ERROR;
    }
    scale = (int64_t)1 << left_shift;
    for (i = 0; i < block_size; i++)
    {
        const int32_t in1 = tmnn_wrap_s32(((int64_t)input_1_vect[i] + input_1_offset) * scale);
        const int32_t in2 = tmnn_wrap_s32(((int64_t)input_2_vect[i] + input_2_offset) * scale);
        const int32_t a = arm_nn_requantize(in1, input_1_mult, input_1_shift);
        const int32_t b = arm_nn_requantize(in2, input_2_mult, input_2_shift);
        output[i] = tmnn_requantize_to_s8(
            tmnn_add_wrap_s32(a, b), out_mult, out_shift, out_offset, out_activation_min, out_activation_max);
    }
    return ARM_CMSIS_NN_SUCCESS;
}
