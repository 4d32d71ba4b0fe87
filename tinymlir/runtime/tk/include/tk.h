/*
 * tk.h -- tinymlir's training kernels ("tk") for the int8 on-device training step.
 *
 * Portable C99: no malloc, no global state, no VLAs. Every kernel has a numpy twin in
 * tinymlir/interpreter/tk_math.py that reproduces it bit for bit; the exact arithmetic
 * of each kernel is stated below so that it can be reimplemented from this header.
 *
 * Conventions
 * -----------
 * - Sizes and indices are int32_t. Activations and gradients are NHWC, row-major.
 *   Weights are OHWI ([out_c, k_h, k_w, in_c]) for convolutions and fully connected
 *   layers, [1, k_h, k_w, c] for depthwise convolutions. Weights are int8 with zero
 *   point 0 and one float32 scale per output channel.
 * - float32 arithmetic: every product and every sum is rounded to float32 separately,
 *   in exactly the order given (the sources must be compiled with -ffp-contract=off:
 *   no fused multiply-add; float expressions are evaluated in float, FLT_EVAL_METHOD 0).
 *   "acc = acc + a * b" means p = fl(a * b); acc = fl(acc + p). Only the softmax
 *   cross-entropy is computed in double. The floating-point environment must be the
 *   default one: round to nearest even, subnormals not flushed to zero.
 * - Accumulators start at +0.0f. Such an accumulator is never -0.0f, so adding a term
 *   equal to +-0.0f never changes it; kernels may therefore skip zero terms (stated per
 *   kernel), which is exact.
 * - Masks are bit-packed: element i is bit (i & 7) of byte i >> 3 (LSB first); the
 *   unused high bits of the last byte are 0. A mask of count elements has
 *   (count + 7) / 8 bytes.
 * - Outputs must not overlap inputs unless a kernel says so.
 *
 * Convolution geometry
 * --------------------
 * For output position (oh, ow) and kernel tap (kh, kw) the input position is
 *     ih = oh * stride_h - pad_h + kh * dil_h,   iw = ow * stride_w - pad_w + kw * dil_w.
 * A tap is valid when 0 <= ih < in_h and 0 <= iw < in_w; invalid taps contribute
 * nothing (zero padding). Seen from the input side, (ih, iw) receives from tap (kh, kw)
 * iff th = ih + pad_h - kh * dil_h >= 0 is divisible by stride_h with oh = th / stride_h
 * < out_h, and likewise for the width (ow).
 *
 * SGD update rule of one quantized parameter element (used by the *_sgd_s8/_s32 kernels)
 * ---------------------------------------------------------------------------------
 * Inputs: the element q (int8 or int32), its float32 gradient gw, the float32 factor f of
 * its channel (the per-channel gradient scaling the compiler chooses), the float32
 * learning rate lr and, for stochastic rounding, the uint32 counter state S (*rng on
 * entry) and the element's update index i (defined per kernel).
 *   gs = gw * f;  t = lr * gs;                          (two float32 roundings)
 *   if t is not finite (NaN or +-Inf): q is left unchanged and counted as skipped;
 *   else t = clamp(t, -2147483648.0f, 2147483648.0f) and
 *     nearest    (rng == NULL): d = (int64_t)rintf(t)  (round half to even);
 *                               q_new = sat(q - d)
 *     stochastic (rng != NULL): h = fmix32(S + i)  (uint32, wrapping);
 *                               u = (float)(h >> 8) * 0x1p-24f      (exact, in [0, 1));
 *                               v = clamp(u - t, -2147483648.0f, 2147483648.0f)
 *                               (u - t rounded to float32);
 *                               d = (int64_t)floorf(v);  q_new = sat(q + d)
 *   fmix32 is MurmurHash3's 32-bit finalizer (uint32, wrapping multiplications):
 *     h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35; h ^= h >> 16.
 *   sat (computed in int64): int8 parameters saturate to [-127, 127], int32 parameters
 *   to [-2147483647, 2147483647].
 * After a call with rng != NULL, *rng += (number of selected elements), skipped elements
 * included (uint32, wrapping), so consecutive calls draw fresh numbers.
 * Each *_sgd kernel returns the number of skipped (non-finite) elements.
 *
 * Optimizers: momentum SGD and Adam (the *_opt_s8/_s32 kernels)
 * -------------------------------------------------------------
 * The *_opt kernels are the *_sgd kernels with an optimizer `opt` (const tk_optimizer *;
 * NULL or kind TK_OPT_SGD: exactly the SGD rule above). Its float32 state arrays hold
 * one element per updated element, the element of update index i at [i] (so a partly
 * trained weight keeps state for its selected channels only). gs = gw * f as above (the
 * gradient w.r.t. the stored integers), then, every product, sum, quotient and square
 * root rounded to float32 separately, in this order:
 *   TK_OPT_SGDM (torch.optim.SGD, dampening 0, no Nesterov; mu = opt->momentum):
 *     p = mu * velocity[i];  vn = p + gs;  t = lr * vn
 *   TK_OPT_ADAM (torch.optim.Adam, no weight decay, no amsgrad; b1, b2, eps from opt,
 *   step count T = opt->step, the caller's counter incremented once per training step
 *   before the first update, so T >= 1):
 *     once per call: c1 = 1.0f - b1;  c2 = 1.0f - b2;
 *                    bc1 = 1.0f - pow_f32(b1, T);  bc2 = 1.0f - pow_f32(b2, T)
 *     per element:   mn = b1 * m[i] + c1 * gs      (p = b1 * m[i]; r = c1 * gs; mn = p + r)
 *                    g2 = gs * gs;  vn = b2 * v[i] + c2 * g2   (same order)
 *                    mh = mn / bc1;  vh = vn / bc2;  d = sqrtf(vh) + eps;
 *                    t = lr * (mh / d)
 *   pow_f32(b, T) (binary exponentiation, float32, not libm's powf):
 *     r = 1.0f; n = T (0 if T <= 0); while (n != 0) { if (n & 1) r = r * b; b = b * b;
 *     n >>= 1; } result r.   (sqrtf is IEEE's correctly rounded square root.)
 *   If t, or a new state value (vn; or mn and vn), is not finite, the element is skipped:
 *   q and its state keep their old values (counted as above; *rng still advances by
 *   every selected element). Else q is rounded and saturated from t exactly as the
 *   SGD rule does (nearest: q - rintf(t); stochastic: q + floorf(u - t)) and the new
 *   state stored: velocity[i] = vn (SGDM); m[i] = mn, v[i] = vn (ADAM).
 *   Memory: 4 bytes per updated element for SGDM, 8 for ADAM (+ the caller's int32 T).
 *
 * Channel selection (sparse update)
 * ---------------------------------
 * channels is an ascending list of n_channels distinct channel indices to update, or NULL
 * to update every channel in order (n_channels is then ignored). j denotes the position
 * of a channel in the selection (j = channel when channels == NULL); factor always has
 * one entry per real channel and is indexed by the channel, not by j.
 */
#ifndef TINYMLIR_TK_H
#define TINYMLIR_TK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t n, in_h, in_w, in_c;      /* input x / input gradient dx, NHWC */
    int32_t out_h, out_w, out_c;      /* output y / output gradient dy, NHWC */
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;             /* top / left padding */
    int32_t dil_h, dil_w;
} tk_conv_geometry;

/* The optimizer of the *_opt kernels (see "Optimizers" above). */
#define TK_OPT_SGD 0
#define TK_OPT_SGDM 1
#define TK_OPT_ADAM 2
typedef struct {
    int32_t kind;        /* TK_OPT_SGD, TK_OPT_SGDM or TK_OPT_ADAM */
    float momentum;      /* SGDM */
    float beta1, beta2;  /* ADAM */
    float eps;           /* ADAM */
    int32_t step;        /* ADAM: the step count T >= 1 */
    float *velocity;     /* SGDM: one float per updated element */
    float *m, *v;        /* ADAM: first and second moments, one float per updated element each */
} tk_optimizer;

/* ---------------------------------------------------------------- elementwise */

/* Mask of the elements where a clamped activation was not clamped:
 * bit i = (act_min < y[i] && y[i] < act_max) (strict comparisons in int32, PyTorch's
 * ReLU / ReLU6 / hardtanh gradient convention). mask has (count + 7) / 8 bytes; the
 * unused high bits of the last byte are written as 0. */
void tk_output_mask_s8(const int8_t *y, int32_t count, int32_t act_min, int32_t act_max, uint8_t *mask);

/* out[i] = (bit i of mask) ? g[i] : 0.0f (the value g[i] is copied, bits included).
 * out may equal g (in place). */
void tk_mask_grad_f32(const float *g, const uint8_t *mask, int32_t count, float *out);

/* out[i] = a[i] + b[i] (float32). out may equal a or b. */
void tk_add_f32(const float *a, const float *b, int32_t count, float *out);

/* Gradient of a global average pool. dy is [n, c]; dx is [n, h, w, c] with
 * dx[n, y, x, c] = dy[n, c] / (float)(h * w) (one float32 division per (n, c); the same
 * value is stored at every position). */
void tk_global_avgpool_grad_f32(const float *dy, int32_t n, int32_t h, int32_t w, int32_t c, float *dx);

/* Plain float SGD: for i ascending: t = lr * g[i]; if t is finite, p[i] = p[i] - t,
 * else p[i] is left unchanged and counted. Returns the number of skipped elements. */
int32_t tk_sgd_f32(float *p, const float *g, int32_t count, float lr);

/* ---------------------------------------------------------------- loss */

/* Softmax cross-entropy of one sample (batch 1), computed in double with the C library's
 * exp and log, in this order:
 *   m = (double)z[0]; for j = 1..k-1: if ((double)z[j] > m) m = (double)z[j];
 *   s = 0.0; for j = 0..k-1: s = s + exp((double)z[j] - m);
 *   lse = log(s);
 *   grad[j] = (float)(exp(((double)z[j] - m) - lse) - (j == label ? 1.0 : 0.0));
 *   returns (float)(lse - ((double)z[label] - m)).
 * Requires k >= 1 and 0 <= label < k. grad (k floats) may be NULL (loss only). */
float tk_softmax_xent_f32(const float *logits, int32_t k, int32_t label, float *grad);

/* ---------------------------------------------------------------- input gradients */

/* Input gradient of a convolution (groups = 1) or fully connected layer (all spatial
 * sizes 1, k = 1): w is OHWI int8 [out_c, k_h, k_w, in_c], w_scale has out_c entries.
 * For every dx[n, ih, iw, ci]:
 *   acc = 0.0f;
 *   for kh = 0..k_h-1, for kw = 0..k_w-1, if the tap maps to a valid (oh, ow) (see the
 *   geometry above):
 *     for co = 0..out_c-1 ascending:
 *       gs = dy[n, oh, ow, co] * w_scale[co];
 *       acc = acc + gs * (float)w[co, kh, kw, ci];
 *   dx[n, ih, iw, ci] = acc.
 * Terms with gs == 0.0f are skipped (exact). dx must not overlap dy, w or w_scale. */
void tk_conv_input_grad_f32(const tk_conv_geometry *g, const float *dy, const int8_t *w,
                            const float *w_scale, float *dx);

/* Input gradient of a depthwise convolution with channel multiplier 1 (in_c == out_c =
 * c): w is int8 [1, k_h, k_w, c], w_scale has c entries. For every dx[n, ih, iw, c]:
 *   acc = 0.0f;
 *   for kh, for kw (valid taps, as above):
 *     acc = acc + (dy[n, oh, ow, c] * w_scale[c]) * (float)w[kh, kw, c];
 *   dx[n, ih, iw, c] = acc. */
void tk_depthwise_conv_input_grad_f32(const tk_conv_geometry *g, const float *dy, const int8_t *w,
                                      const float *w_scale, float *dx);

/* ---------------------------------------------------------------- fused gradient + SGD */

/* Weight gradient of a convolution / fully connected layer (groups = 1) fused with the
 * in-place SGD update of its OHWI int8 weight w [out_c, k_h, k_w, in_c]. x is the int8
 * input [n, in_h, in_w, in_c] with real value xr = (float)(x + x_offset) * x_scale
 * (x + x_offset in int32, converted to float, then one float32 product).
 * For each selected output channel co (position j in the selection), for each
 * (kh, kw, ci):
 *   gw = 0.0f;
 *   for n, oh, ow ascending, if the tap (kh, kw) of (oh, ow) is valid and
 *   dy[n, oh, ow, co] != 0.0f:
 *     gw = gw + dy[n, oh, ow, co] * xr(x[n, ih, iw, ci]);
 *   then w[co, kh, kw, ci] is updated with the SGD rule above (int8 saturation), factor
 *   factor[co], update index i = j * (k_h * k_w * in_c) + (kh * k_w + kw) * in_c + ci.
 * Terms with dy == 0.0f are skipped (exact when xr is finite; defined as skipped
 * otherwise). scratch must hold tk_conv_weight_grad_sgd_scratch_bytes(g) bytes
 * (k_h * k_w * in_c floats: one channel's gradient), suitably aligned for float.
 * On return scratch holds the gradient of the last selected channel, [k_h, k_w, in_c]
 * (the tests check it; callers should treat scratch as clobbered).
 * Returns the number of skipped (non-finite) elements. */
int32_t tk_conv_weight_grad_sgd_s8(const tk_conv_geometry *g, const float *dy, const int8_t *x,
                                   int32_t x_offset, float x_scale, int8_t *w,
                                   const int32_t *channels, int32_t n_channels, const float *factor,
                                   float lr, uint32_t *rng, float *scratch);
int32_t tk_conv_weight_grad_sgd_scratch_bytes(const tk_conv_geometry *g);
/* tk_conv_weight_grad_sgd_s8 with an optimizer (state index = update index i, i.e. the
 * state arrays are [n_sel, k_h, k_w, in_c]); same scratch. */
int32_t tk_conv_weight_grad_opt_s8(const tk_conv_geometry *g, const float *dy, const int8_t *x,
                                   int32_t x_offset, float x_scale, int8_t *w,
                                   const int32_t *channels, int32_t n_channels, const float *factor,
                                   float lr, uint32_t *rng, const tk_optimizer *opt, float *scratch);

/* Weight gradient of a depthwise convolution (in_c == out_c = c, multiplier 1) fused with
 * the in-place SGD update of its int8 weight w [1, k_h, k_w, c]; channels select along c.
 * For each selected channel ch (position j, n_sel selected channels) and each (kh, kw):
 *   gw = 0.0f;
 *   for n, oh, ow ascending, if the tap is valid and dy[n, oh, ow, ch] != 0.0f:
 *     gw = gw + dy[n, oh, ow, ch] * xr(x[n, ih, iw, ch]);
 *   then w[kh, kw, ch] is updated with the SGD rule (int8 saturation), factor factor[ch],
 *   update index i = (kh * k_w + kw) * n_sel + j.
 * scratch must hold tk_depthwise_conv_weight_grad_sgd_scratch_bytes(g) bytes (k_h * k_w
 * floats); on return it holds the gradient [k_h, k_w] of the last selected channel (the
 * tests check it; callers should treat scratch as clobbered).
 * Returns the number of skipped elements. */
int32_t tk_depthwise_conv_weight_grad_sgd_s8(const tk_conv_geometry *g, const float *dy, const int8_t *x,
                                             int32_t x_offset, float x_scale, int8_t *w,
                                             const int32_t *channels, int32_t n_channels,
                                             const float *factor, float lr, uint32_t *rng, float *scratch);
int32_t tk_depthwise_conv_weight_grad_sgd_scratch_bytes(const tk_conv_geometry *g);
/* tk_depthwise_conv_weight_grad_sgd_s8 with an optimizer (state index = update index
 * i = (kh * k_w + kw) * n_sel + j: the state arrays are [k_h, k_w, n_sel]). */
int32_t tk_depthwise_conv_weight_grad_opt_s8(const tk_conv_geometry *g, const float *dy, const int8_t *x,
                                             int32_t x_offset, float x_scale, int8_t *w,
                                             const int32_t *channels, int32_t n_channels,
                                             const float *factor, float lr, uint32_t *rng,
                                             const tk_optimizer *opt, float *scratch);

/* Bias gradient fused with the in-place SGD update of an int32 bias b [c]. dy is
 * [rows, c] (rows = n * h * w). For each selected channel ch (position j):
 *   gw = 0.0f; for r = 0..rows-1: gw = gw + dy[r * c + ch];
 *   then b[ch] is updated with the SGD rule (int32 saturation), factor factor[ch],
 *   update index i = j.
 * Returns the number of skipped elements. */
int32_t tk_bias_grad_sgd_s32(const float *dy, int32_t rows, int32_t c, int32_t *b,
                             const int32_t *channels, int32_t n_channels, const float *factor,
                             float lr, uint32_t *rng);
/* tk_bias_grad_sgd_s32 with an optimizer (state index = j: the state arrays are [n_sel]). */
int32_t tk_bias_grad_opt_s32(const float *dy, int32_t rows, int32_t c, int32_t *b,
                             const int32_t *channels, int32_t n_channels, const float *factor,
                             float lr, uint32_t *rng, const tk_optimizer *opt);

#ifdef __cplusplus
}
#endif

#endif /* TINYMLIR_TK_H */
