/*
 * tinymlir portable CMSIS-NN subset -- int8 GEMM with requantized output,
 * shared by the convolution and fully connected kernels.
 *
 * The raw int8 values of four columns are multiplied against one weight row at
 * a time. The offsets are folded in afterwards:
 *
 *   sum_k (x + a) * (w + b) = sum_k x*w + a * sum_k w + b * sum_k x + K*a*b
 *
 * which is exact in 64 bits and equals the (wrapping) int32 accumulation of
 * CMSIS-NN once reduced modulo 2^32. The inner loop works on fixed blocks of 16
 * elements with int32 partial sums so that gcc/clang vectorize it at -O2 (a
 * block of 16 int8 products cannot overflow int32); the block sums are
 * accumulated in int64, so no depth can overflow.
 */
#include "arm_nnsupportfunctions.h"
#include "tmnn_internal.h"

#define TMNN_BLOCK 16

/* Dot products of one weight row with four columns, plus the row sum. */
static void tmnn_dot4_s8(const int8_t *restrict w,
                         const int8_t *restrict c0,
                         const int8_t *restrict c1,
                         const int8_t *restrict c2,
                         const int8_t *restrict c3,
                         const int32_t depth,
                         int64_t *restrict dots,
                         int64_t *restrict wsum)
{
    int64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, sw = 0;
    int32_t k = 0;
    for (; k + TMNN_BLOCK <= depth; k += TMNN_BLOCK)
    {
        int32_t t0 = 0, t1 = 0, t2 = 0, t3 = 0, tw = 0;
        int32_t j;
        for (j = 0; j < TMNN_BLOCK; j++)
        {
            const int16_t wk = w[k + j];
            t0 += wk * c0[k + j];
            t1 += wk * c1[k + j];
            t2 += wk * c2[k + j];
            t3 += wk * c3[k + j];
            tw += wk;
        }
        s0 += t0;
        s1 += t1;
        s2 += t2;
        s3 += t3;
        sw += tw;
    }
    {
        int32_t t0 = 0, t1 = 0, t2 = 0, t3 = 0, tw = 0;
        for (; k < depth; k++)
        {
            const int32_t wk = w[k];
            t0 += wk * c0[k];
            t1 += wk * c1[k];
            t2 += wk * c2[k];
            t3 += wk * c3[k];
            tw += wk;
        }
        dots[0] = s0 + t0;
        dots[1] = s1 + t1;
        dots[2] = s2 + t2;
        dots[3] = s3 + t3;
        *wsum = sw + tw;
    }
}

static int64_t tmnn_sum_s8(const int8_t *x, const int32_t n)
{
    int64_t s = 0;
    int32_t k = 0;
    for (; k + TMNN_BLOCK <= n; k += TMNN_BLOCK)
    {
        int32_t t = 0;
        int32_t j;
        for (j = 0; j < TMNN_BLOCK; j++)
        {
            t += x[k + j];
        }
        s += t;
    }
    for (; k < n; k++)
    {
        s += x[k];
    }
    return s;
}

void tmnn_gemm_s8(const tmnn_gemm_s8_args *args,
                  const int8_t *const *cols,
                  const int32_t n_cols,
                  int8_t *out,
                  const int32_t out_col_stride)
{
    const int32_t depth = args->depth;
    const int64_t in_off = args->in_off;
    const int64_t w_off = args->w_off;
    const int64_t both_off = (int64_t)depth * in_off * w_off;
    const int8_t *c[TMNN_GEMM_COLS];
    int64_t col_term[TMNN_GEMM_COLS];
    int32_t j;
    int32_t m;

    /* Missing columns alias the first one; their results are not stored. */
    for (j = 0; j < TMNN_GEMM_COLS; j++)
    {
        c[j] = cols[j < n_cols ? j : 0];
        col_term[j] = (w_off != 0) ? w_off * tmnn_sum_s8(c[j], depth) : 0;
    }

    for (m = 0; m < args->rows; m++)
    {
        int64_t dots[TMNN_GEMM_COLS];
        int64_t wsum;
        const int32_t q = args->per_channel ? m : 0;
        const int32_t mult = args->mult[q];
        const int32_t shift = args->shift[q];
        const int64_t row_term = (args->bias ? (int64_t)args->bias[m] : 0) + both_off;
        int64_t wterm;

        tmnn_dot4_s8(args->w + (int64_t)m * depth, c[0], c[1], c[2], c[3], depth, dots, &wsum);
        wterm = in_off * wsum;
        for (j = 0; j < n_cols; j++)
        {
            const int32_t acc = tmnn_wrap_s32(row_term + wterm + col_term[j] + dots[j]);
            out[(int64_t)j * out_col_stride + m] =
                tmnn_requantize_to_s8(acc, mult, shift, args->out_off, args->act_min, args->act_max);
        }
    }
}
