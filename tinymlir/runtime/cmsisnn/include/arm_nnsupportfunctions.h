/*
 * tinymlir portable CMSIS-NN subset -- fixed-point helpers.
 *
 * Written for tinymlir from the documented behaviour of CMSIS-NN's support
 * functions (pure C path, default "double rounding" requantization, i.e.
 * CMSIS_NN_USE_SINGLE_ROUNDING not defined). Names follow CMSIS-NN where the
 * helper exists there; helpers prefixed tmnn_ are tinymlir's own.
 *
 * Integer semantics (two's complement, 32-bit):
 *   arm_nn_doubling_high_mult(a, b)        round(a * b / 2^31), ties toward
 *                                          +infinity; saturates the single
 *                                          overflow case INT32_MIN * INT32_MIN
 *                                          to INT32_MAX.
 *   arm_nn_doubling_high_mult_no_sat(a, b) same value but no saturation: the
 *                                          INT32_MIN * INT32_MIN case wraps to
 *                                          INT32_MIN (this is the one used by
 *                                          arm_nn_requantize).
 *   arm_nn_divide_by_power_of_two(x, e)    x / 2^e rounded to nearest, ties
 *                                          away from zero; e in [0, 31].
 *   arm_nn_requantize(x, m, s)             x is first multiplied by 2^max(s,0)
 *                                          (wrapping to 32 bits), then
 *                                          doubling_high_mult_no_sat with m, then
 *                                          divide_by_power_of_two by max(-s,0).
 *                                          s in [-31, 31].
 *
 * Where the real library relies on wrapping int32 arithmetic, these helpers
 * compute in 64 bits and wrap explicitly, so they are free of undefined
 * behaviour (clean under -fsanitize=undefined) and give identical results.
 * Right shifts of negative values assume an arithmetic shift (true for gcc,
 * clang, armclang and IAR).
 */
#ifndef ARM_NNSUPPORTFUNCTIONS_H
#define ARM_NNSUPPORTFUNCTIONS_H

#include <stdint.h>
#include <string.h>

#include "arm_nn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef NN_Q31_MAX
#define NN_Q31_MAX ((int32_t)(0x7FFFFFFFL))
#endif
#ifndef NN_Q31_MIN
#define NN_Q31_MIN ((int32_t)(-0x7FFFFFFFL - 1))
#endif
#ifndef NN_Q15_MAX
#define NN_Q15_MAX ((int16_t)(0x7FFF))
#endif
#ifndef NN_Q15_MIN
#define NN_Q15_MIN ((int16_t)(-0x7FFF - 1))
#endif
#ifndef NN_Q7_MAX
#define NN_Q7_MAX ((int8_t)(0x7F))
#endif
#ifndef NN_Q7_MIN
#define NN_Q7_MIN ((int8_t)(-0x7F - 1))
#endif

#define LEFT_SHIFT(_shift) ((_shift) > 0 ? (_shift) : 0)
#define RIGHT_SHIFT(_shift) ((_shift) > 0 ? 0 : -(_shift))

#define MAX(A, B) ((A) > (B) ? (A) : (B))
#define MIN(A, B) ((A) < (B) ? (A) : (B))
/* Note the CMSIS-NN argument order: value, high bound, low bound. */
#define CLAMP(x, h, l) MAX(MIN((x), (h)), (l))

/** Reduce a 64-bit value modulo 2^32 into the int32 range (two's complement
 * wrap-around) without relying on implementation-defined conversions. */
static inline int32_t tmnn_wrap_s32(const int64_t v)
{
    const uint32_t u = (uint32_t)((uint64_t)v & 0xFFFFFFFFu);
    if (u <= 0x7FFFFFFFu)
    {
        return (int32_t)u;
    }
    return (int32_t)(u - 0x80000000u) + NN_Q31_MIN;
}

/** Wrapping 32-bit addition. */
static inline int32_t tmnn_add_wrap_s32(const int32_t a, const int32_t b)
{
    return tmnn_wrap_s32((int64_t)a + (int64_t)b);
}

/** Saturating rounding doubling high multiply (ARM SQRDMULH / gemmlowp). */
static inline int32_t arm_nn_doubling_high_mult(const int32_t m1, const int32_t m2)
{
    if (m1 == NN_Q31_MIN && m2 == NN_Q31_MIN)
    {
        return NN_Q31_MAX;
    }
    /* |m1 * m2| < 2^62 here, so adding the rounding term cannot overflow. */
    return (int32_t)((((int64_t)m1 * (int64_t)m2) + ((int64_t)1 << 30)) >> 31);
}

/** Rounding doubling high multiply without saturation, used for requantization. */
static inline int32_t arm_nn_doubling_high_mult_no_sat(const int32_t m1, const int32_t m2)
{
    /* The product is at most 2^62 in magnitude: the sum fits in int64. Only
     * INT32_MIN * INT32_MIN leaves the int32 range; it wraps to INT32_MIN. */
    return tmnn_wrap_s32((((int64_t)m1 * (int64_t)m2) + ((int64_t)1 << 30)) >> 31);
}

/** Divide by 2^exponent, rounding to nearest with ties away from zero. */
static inline int32_t arm_nn_divide_by_power_of_two(const int32_t dividend, const int32_t exponent)
{
    const int32_t remainder_mask = (int32_t)(((uint32_t)1u << exponent) - 1u);
    const int32_t remainder = remainder_mask & dividend;
    int32_t result = dividend >> exponent;
    int32_t threshold = remainder_mask >> 1;
    if (result < 0)
    {
        threshold++;
    }
    if (remainder > threshold)
    {
        result++;
    }
    return result;
}

/** Requantize: approximately val * multiplier * 2^(shift - 31). */
static inline int32_t arm_nn_requantize(const int32_t val, const int32_t multiplier, const int32_t shift)
{
    const int32_t left = LEFT_SHIFT(shift);
    const int32_t right = RIGHT_SHIFT(shift);
    const int32_t scaled = tmnn_wrap_s32((int64_t)val * ((int64_t)1 << left));
    return arm_nn_divide_by_power_of_two(arm_nn_doubling_high_mult_no_sat(scaled, multiplier), right);
}

/** Requantize, add the output offset (wrapping) and clamp to [act_min, act_max]. */
static inline int8_t tmnn_requantize_to_s8(const int32_t acc,
                                           const int32_t multiplier,
                                           const int32_t shift,
                                           const int32_t out_offset,
                                           const int32_t act_min,
                                           const int32_t act_max)
{
    int32_t v = tmnn_add_wrap_s32(arm_nn_requantize(acc, multiplier, shift), out_offset);
    v = MAX(v, act_min);
    v = MIN(v, act_max);
    return (int8_t)v;
}

/** Copy helper with the CMSIS-NN name. */
static inline void arm_memcpy_s8(int8_t *dst, const int8_t *src, uint32_t block_size)
{
    memcpy(dst, src, block_size);
}

#ifdef __cplusplus
}
#endif

#endif /* ARM_NNSUPPORTFUNCTIONS_H */
