/* tinymlir's own small kernels; see tinymlir_rt.h. */
#include "tinymlir_rt.h"

#include "arm_nnsupportfunctions.h"

/* Round half to even of a finite float, saturated to +-2^30 (any value that large
 * saturates the int8 result anyway). No libm needed. */
static int32_t tmrt_round_half_even(float v)
{
    int32_t i;
    float frac;
    if (!(v == v))
    {
        return 0; /* NaN */
    }
    if (v >= 1073741824.0f)
    {
        return 1073741824;
    }
    if (v <= -1073741824.0f)
    {
        return -1073741824;
    }
    i = (int32_t)v;       /* toward zero */
    frac = v - (float)i;  /* exact: |v| < 2^24 gives an exact difference, larger v are integers */
    if (frac > 0.5f || (frac == 0.5f && (i & 1)))
    {
        i++;
    }
    else if (frac < -0.5f || (frac == -0.5f && (i & 1)))
    {
        i--;
    }
    return i;
}

void tmrt_quantize_s8(const float *input, int8_t *output, int32_t size, float scale, int32_t zero_point)
{
    int32_t k;
    for (k = 0; k < size; k++)
    {
        const float v = input[k] / scale;
        int32_t q = tmrt_round_half_even(v) + zero_point;
        q = CLAMP(q, 127, -128);
        output[k] = (int8_t)q;
    }
}

void tmrt_dequantize_s8(const int8_t *input, float *output, int32_t size, float scale, int32_t zero_point)
{
    int32_t k;
    for (k = 0; k < size; k++)
    {
        output[k] = (float)((int32_t)input[k] - zero_point) * scale;
    }
}

void tmrt_requantize_s8(const int8_t *input,
                        int8_t *output,
                        int32_t size,
                        int32_t input_offset,
                        int32_t output_offset,
                        int32_t left_shift,
                        int32_t multiplier,
                        int32_t shift,
                        int32_t act_min,
                        int32_t act_max)
{
    int32_t k;
    for (k = 0; k < size; k++)
    {
        /* |x + input_offset| <= 255 and left_shift <= 23: fits in int32 */
        const int32_t acc = ((int32_t)input[k] + input_offset) * ((int32_t)1 << left_shift);
        int32_t y = arm_nn_requantize(acc, multiplier, shift) + output_offset;
        y = CLAMP(y, act_max, act_min);
        output[k] = (int8_t)y;
    }
}

void tmrt_transpose_s8(const int8_t *input, int8_t *output, const int32_t in_dims[4], const int32_t perm[4])
{
    int32_t in_stride[4];
    int32_t out_dims[4];
    int32_t s[4];
    int32_t a, b, c, d, j;
    in_stride[3] = 1;
    for (j = 2; j >= 0; j--)
    {
        in_stride[j] = in_stride[j + 1] * in_dims[j + 1];
    }
    for (j = 0; j < 4; j++)
    {
        out_dims[j] = in_dims[perm[j]];
        s[j] = in_stride[perm[j]];
    }
    for (a = 0; a < out_dims[0]; a++)
    {
        for (b = 0; b < out_dims[1]; b++)
        {
            for (c = 0; c < out_dims[2]; c++)
            {
                const int8_t *src = input + a * s[0] + b * s[1] + c * s[2];
                for (d = 0; d < out_dims[3]; d++)
                {
                    *output++ = src[d * s[3]];
                }
            }
        }
    }
}

void tmrt_guard_fill(int8_t *guard, int32_t size)
{
    for (int32_t i = 0; i < size; i++) {
        guard[i] = (int8_t)TMRT_GUARD_BYTE;
    }
}

int tmrt_guard_ok(const int8_t *guard, int32_t size)
{
    for (int32_t i = 0; i < size; i++) {
        if (guard[i] != (int8_t)TMRT_GUARD_BYTE) {
            return 0;
        }
    }
    return 1;
}
