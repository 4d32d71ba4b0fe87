/*
 * tinymlir's own small kernels, called by the generated model code next to the
 * CMSIS-NN functions (C99, no malloc, no globals). Their arithmetic is the one of
 * tinymlir's interpreter (tinymlir/interpreter/cmsisnn_impls.py, nn_impls.py):
 *
 *   tmrt_quantize_s8    float32 -> s8 as ONNX QuantizeLinear:
 *                       y = saturate(round_half_even(x / scale) + zero_point),
 *                       the division in float32.
 *   tmrt_dequantize_s8  s8 -> float32 as ONNX DequantizeLinear:
 *                       y = (float)(x - zero_point) * scale.
 *   tmrt_requantize_s8  cmsisnn.requantize_s8:
 *                       y = clamp(arm_nn_requantize((x + in_off) << left_shift, mult, shift)
 *                                 + out_off, act_min, act_max).
 *   tmrt_transpose_s8   nn.transpose of an int8 tensor of rank <= 4 (dims and perm
 *                       padded to rank 4 with leading unit axes).
 *   tmrt_guard_fill / tmrt_guard_ok   the guard bytes after each arena buffer of a
 *                       debug build (emit_c(..., guard_bytes=N)): filled when the buffer
 *                       is born, checked after every op while it lives.
 */
#ifndef TINYMLIR_RT_H
#define TINYMLIR_RT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void tmrt_quantize_s8(const float *input, int8_t *output, int32_t size, float scale, int32_t zero_point);

void tmrt_dequantize_s8(const int8_t *input, float *output, int32_t size, float scale, int32_t zero_point);

void tmrt_requantize_s8(const int8_t *input,
                        int8_t *output,
                        int32_t size,
                        int32_t input_offset,
                        int32_t output_offset,
                        int32_t left_shift,
                        int32_t multiplier,
                        int32_t shift,
                        int32_t act_min,
                        int32_t act_max);

/* output[o0][o1][o2][o3] = input[...] with input axis perm[j] indexed by o_j;
 * in_dims are the input's four dimensions. */
void tmrt_transpose_s8(const int8_t *input, int8_t *output, const int32_t in_dims[4], const int32_t perm[4]);

#define TMRT_GUARD_BYTE 0x5A
void tmrt_guard_fill(int8_t *guard, int32_t size);
/* 1 if the `size` guard bytes are intact, else 0. */
int tmrt_guard_ok(const int8_t *guard, int32_t size);

#ifdef __cplusplus
}
#endif

#endif /* TINYMLIR_RT_H */
