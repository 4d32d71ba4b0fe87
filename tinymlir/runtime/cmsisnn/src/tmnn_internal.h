/*
 * tinymlir portable CMSIS-NN subset -- internal helpers shared by the
 * source files of this directory. Not part of the CMSIS-NN API; never
 * included by generated code.
 */
#ifndef TMNN_INTERNAL_H
#define TMNN_INTERNAL_H

#include <stdint.h>

#include "arm_nn_types.h"

/* Number of im2col columns (output pixels / batch rows) handled per GEMM call. */
#define TMNN_GEMM_COLS 4

/* Description of an int8 GEMM whose int32 results are requantized to int8:
 *
 *   out[j][m] = requant(bias[m] + sum_k (col_j[k] + in_off) * (w[m][k] + w_off))
 *
 * for m in [0, rows) and the (at most TMNN_GEMM_COLS) columns col_j. */
typedef struct
{
    const int8_t *w;      /* rows x depth, row-major (row m is contiguous) */
    int32_t rows;         /* number of output channels */
    int32_t depth;        /* accumulation depth K */
    const int32_t *bias;  /* rows values, or NULL */
    const int32_t *mult;  /* rows values if per_channel, else one value */
    const int32_t *shift; /* idem */
    int32_t per_channel;  /* 0: mult[0]/shift[0] for every row */
    int32_t in_off;
    int32_t w_off;
    int32_t out_off;
    int32_t act_min;
    int32_t act_max;
} tmnn_gemm_s8_args;

/* Computes n_cols (1..TMNN_GEMM_COLS) output vectors. Output vector j is written
 * to out + j * out_col_stride, element m at offset m. */
void tmnn_gemm_s8(const tmnn_gemm_s8_args *args,
                  const int8_t *const *cols,
                  int32_t n_cols,
                  int8_t *out,
                  int32_t out_col_stride);

#endif /* TMNN_INTERNAL_H */
