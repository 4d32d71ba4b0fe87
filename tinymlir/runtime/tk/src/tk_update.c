/* tinymlir training kernels: weight and bias gradients fused with the in-place update of
 * quantized parameters (SGD, momentum SGD or Adam; nearest or stochastic rounding).
 * Semantics in tk.h. */
#include <math.h>
#include <stddef.h>

#include "tk.h"

#define TK_DW_BLOCK 16   /* channels per block of the depthwise weight gradient */
#define TK_BIAS_BLOCK 32 /* channels per block of the bias gradient */

static uint32_t tk__fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static float tk__clamp_i32_range(float t)
{
    if (t < -2147483648.0f) {
        return -2147483648.0f;
    }
    if (t > 2147483648.0f) {
        return 2147483648.0f;
    }
    return t;
}

/* b^t in float32 by binary exponentiation (tk.h: "Bias corrections"); 1.0f for t <= 0. */
static float tk__pow_f32(float b, int32_t t)
{
    float r = 1.0f;
    uint32_t n = t > 0 ? (uint32_t)t : 0u;
    while (n != 0u) {
        if ((n & 1u) != 0u) {
            r = r * b;
        }
        b = b * b;
        n >>= 1;
    }
    return r;
}

/* The optimizer of one kernel call with its per-call constants (NULL: plain SGD). */
typedef struct {
    int32_t kind;
    float momentum, beta1, beta2, c1, c2, bc1, bc2, eps;
    float *velocity, *m, *v;
} tk__opt;

static const tk__opt *tk__opt_init(tk__opt *o, const tk_optimizer *opt)
{
    if (opt == NULL || opt->kind == TK_OPT_SGD) {
        return NULL;
    }
    o->kind = opt->kind;
    o->momentum = opt->momentum;
    o->beta1 = opt->beta1;
    o->beta2 = opt->beta2;
    o->c1 = 1.0f - opt->beta1;
    o->c2 = 1.0f - opt->beta2;
    o->bc1 = 1.0f - tk__pow_f32(opt->beta1, opt->step);
    o->bc2 = 1.0f - tk__pow_f32(opt->beta2, opt->step);
    o->eps = opt->eps;
    o->velocity = opt->velocity;
    o->m = opt->m;
    o->v = opt->v;
    return o;
}

/* The update rule of tk.h for one element: t from the gradient (and the optimizer state
 * at index i), then the rounding. Returns 1 (skipped: *q and the state unchanged) if t
 * or a new state value is not finite, else stores the saturated new value in *q, the
 * new state, and returns 0. stochastic != 0 selects stochastic rounding with counter
 * value `seed` (= state + i). */
static int32_t tk__update(int64_t *q, float gw, float f, float lr, int stochastic, uint32_t seed,
                          const tk__opt *o, size_t i, int64_t qmin, int64_t qmax)
{
    const float gs = gw * f;
    float t, s1 = 0.0f, s2 = 0.0f;
    int64_t v;
    if (o == NULL) {
        t = lr * gs;
    } else if (o->kind == TK_OPT_SGDM) {
        const float p = o->momentum * o->velocity[i];
        s1 = p + gs;
        t = lr * s1;
        if (!isfinite(s1)) {
            return 1;
        }
    } else {
        const float pm = o->beta1 * o->m[i];
        const float qm = o->c1 * gs;
        const float g2 = gs * gs;
        const float pv = o->beta2 * o->v[i];
        const float qv = o->c2 * g2;
        float mh, vh, d;
        s1 = pm + qm;
        s2 = pv + qv;
        mh = s1 / o->bc1;
        vh = s2 / o->bc2;
        d = sqrtf(vh) + o->eps;
        t = lr * (mh / d);
        if (!isfinite(s1) || !isfinite(s2)) {
            return 1;
        }
    }
    if (!isfinite(t)) {
        return 1;
    }
    t = tk__clamp_i32_range(t);
    if (stochastic) {
        const float u = (float)(tk__fmix32(seed) >> 8) * 0x1p-24f;
        const float r = tk__clamp_i32_range(u - t);
        v = *q + (int64_t)floorf(r);
    } else {
        v = *q - (int64_t)rintf(t);
    }
    *q = v < qmin ? qmin : (v > qmax ? qmax : v);
    if (o != NULL) {
        if (o->kind == TK_OPT_SGDM) {
            o->velocity[i] = s1;
        } else {
            o->m[i] = s1;
            o->v[i] = s2;
        }
    }
    return 0;
}

static int32_t tk__update_s8(int8_t *p, float gw, float f, float lr, int stochastic, uint32_t seed,
                             const tk__opt *o, size_t i)
{
    int64_t q = *p;
    int32_t skipped = tk__update(&q, gw, f, lr, stochastic, seed, o, i, -127, 127);
    *p = (int8_t)q;
    return skipped;
}

static int32_t tk__update_s32(int32_t *p, float gw, float f, float lr, int stochastic, uint32_t seed,
                              const tk__opt *o, size_t i)
{
    int64_t q = *p;
    int32_t skipped = tk__update(&q, gw, f, lr, stochastic, seed, o, i, -2147483647LL, 2147483647LL);
    *p = (int32_t)q;
    return skipped;
}

/* ---------------------------------------------------------------- regular convolution */

int32_t tk_conv_weight_grad_sgd_scratch_bytes(const tk_conv_geometry *g)
{
    return g->k_h * g->k_w * g->in_c * (int32_t)sizeof(float);
}

int32_t tk_conv_weight_grad_sgd_s8(const tk_conv_geometry *g, const float *dy, const int8_t *x,
                                   int32_t x_offset, float x_scale, int8_t *w,
                                   const int32_t *channels, int32_t n_channels, const float *factor,
                                   float lr, uint32_t *rng, float *scratch)
{
    return tk_conv_weight_grad_opt_s8(g, dy, x, x_offset, x_scale, w, channels, n_channels, factor, lr, rng, NULL,
                                      scratch);
}

int32_t tk_conv_weight_grad_opt_s8(const tk_conv_geometry *g, const float *dy, const int8_t *x,
                                   int32_t x_offset, float x_scale, int8_t *w,
                                   const int32_t *channels, int32_t n_channels, const float *factor,
                                   float lr, uint32_t *rng, const tk_optimizer *opt, float *scratch)
{
    tk__opt oc;
    const tk__opt *o = tk__opt_init(&oc, opt);
    const int32_t in_c = g->in_c, out_c = g->out_c, k_w = g->k_w;
    const int32_t kk = g->k_h * g->k_w * in_c; /* elements per output channel */
    const int32_t n_sel = channels != NULL ? n_channels : out_c;
    const int stochastic = rng != NULL;
    const uint32_t state = stochastic ? *rng : 0u;
    int32_t skipped = 0;
    int32_t j, e, b, oh, ow, kh, kw, ci;
    for (j = 0; j < n_sel; j++) {
        const int32_t co = channels != NULL ? channels[j] : j;
        int8_t *wrow = w + (size_t)co * kk;
        const float f = factor[co];
        const uint32_t base = state + (uint32_t)j * (uint32_t)kk;
        for (e = 0; e < kk; e++) {
            scratch[e] = 0.0f;
        }
        for (b = 0; b < g->n; b++) {
            for (oh = 0; oh < g->out_h; oh++) {
                for (ow = 0; ow < g->out_w; ow++) {
                    const float d = dy[(((size_t)b * g->out_h + oh) * g->out_w + ow) * out_c + co];
                    if (d == 0.0f) {
                        continue;
                    }
                    for (kh = 0; kh < g->k_h; kh++) {
                        const int32_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
                        if (ih < 0 || ih >= g->in_h) {
                            continue;
                        }
                        for (kw = 0; kw < k_w; kw++) {
                            const int32_t iw = ow * g->stride_w - g->pad_w + kw * g->dil_w;
                            const int8_t *restrict xrow;
                            float *restrict s;
                            if (iw < 0 || iw >= g->in_w) {
                                continue;
                            }
                            xrow = x + (((size_t)b * g->in_h + ih) * g->in_w + iw) * in_c;
                            s = scratch + (size_t)(kh * k_w + kw) * in_c;
                            for (ci = 0; ci < in_c; ci++) {
                                s[ci] = s[ci] + d * ((float)(xrow[ci] + x_offset) * x_scale);
                            }
                        }
                    }
                }
            }
        }
        for (e = 0; e < kk; e++) {
            skipped += tk__update_s8(&wrow[e], scratch[e], f, lr, stochastic, base + (uint32_t)e, o,
                                     (size_t)j * (size_t)kk + (size_t)e);
        }
    }
    if (stochastic) {
        *rng = state + (uint32_t)n_sel * (uint32_t)kk;
    }
    return skipped;
}

/* ---------------------------------------------------------------- depthwise convolution */

int32_t tk_depthwise_conv_weight_grad_sgd_scratch_bytes(const tk_conv_geometry *g)
{
    return g->k_h * g->k_w * (int32_t)sizeof(float);
}

/* Loop order: blocks of up to TK_DW_BLOCK selected channels, then taps, then positions,
 * with the block's accumulators in a small local array: each (tap, channel) gradient
 * still sums its terms over (n, oh, ow) ascending, the positions are read in order and
 * a block's channels share cache lines. */
int32_t tk_depthwise_conv_weight_grad_sgd_s8(const tk_conv_geometry *g, const float *dy, const int8_t *x,
                                             int32_t x_offset, float x_scale, int8_t *w,
                                             const int32_t *channels, int32_t n_channels,
                                             const float *factor, float lr, uint32_t *rng, float *scratch)
{
    return tk_depthwise_conv_weight_grad_opt_s8(g, dy, x, x_offset, x_scale, w, channels, n_channels, factor, lr,
                                                rng, NULL, scratch);
}

int32_t tk_depthwise_conv_weight_grad_opt_s8(const tk_conv_geometry *g, const float *dy, const int8_t *x,
                                             int32_t x_offset, float x_scale, int8_t *w,
                                             const int32_t *channels, int32_t n_channels,
                                             const float *factor, float lr, uint32_t *rng,
                                             const tk_optimizer *opt, float *scratch)
{
    tk__opt oc;
    const tk__opt *o = tk__opt_init(&oc, opt);
    const int32_t c = g->out_c, k_w = g->k_w;
    const int32_t n_sel = channels != NULL ? n_channels : c;
    const int stochastic = rng != NULL;
    const uint32_t state = stochastic ? *rng : 0u;
    float acc[TK_DW_BLOCK];
    int32_t chs[TK_DW_BLOCK];
    int32_t skipped = 0;
    int32_t j0, nb, jb, kh, kw, b, oh, ow;
    for (j0 = 0; j0 < n_sel; j0 += nb) {
        nb = n_sel - j0 < TK_DW_BLOCK ? n_sel - j0 : TK_DW_BLOCK;
        for (jb = 0; jb < nb; jb++) {
            chs[jb] = channels != NULL ? channels[j0 + jb] : j0 + jb;
        }
        for (kh = 0; kh < g->k_h; kh++) {
            for (kw = 0; kw < k_w; kw++) {
                const int32_t tap = kh * k_w + kw;
                for (jb = 0; jb < nb; jb++) {
                    acc[jb] = 0.0f;
                }
                for (b = 0; b < g->n; b++) {
                    for (oh = 0; oh < g->out_h; oh++) {
                        const int32_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
                        if (ih < 0 || ih >= g->in_h) {
                            continue;
                        }
                        for (ow = 0; ow < g->out_w; ow++) {
                            const int32_t iw = ow * g->stride_w - g->pad_w + kw * g->dil_w;
                            const float *dyrow;
                            const int8_t *xrow;
                            if (iw < 0 || iw >= g->in_w) {
                                continue;
                            }
                            dyrow = dy + (((size_t)b * g->out_h + oh) * g->out_w + ow) * c;
                            xrow = x + (((size_t)b * g->in_h + ih) * g->in_w + iw) * c;
                            for (jb = 0; jb < nb; jb++) {
                                const float d = dyrow[chs[jb]];
                                if (d != 0.0f) {
                                    acc[jb] = acc[jb] + d * ((float)(xrow[chs[jb]] + x_offset) * x_scale);
                                }
                            }
                        }
                    }
                }
                for (jb = 0; jb < nb; jb++) {
                    const int32_t ch = chs[jb];
                    const uint32_t i = (uint32_t)tap * (uint32_t)n_sel + (uint32_t)(j0 + jb);
                    skipped += tk__update_s8(&w[(size_t)tap * c + ch], acc[jb], factor[ch], lr, stochastic, state + i,
                                             o, (size_t)i);
                }
                if (j0 + nb == n_sel) {
                    scratch[tap] = acc[nb - 1]; /* the last selected channel's gradient */
                }
            }
        }
    }
    if (stochastic) {
        *rng = state + (uint32_t)n_sel * (uint32_t)(g->k_h * k_w);
    }
    return skipped;
}

/* ---------------------------------------------------------------- bias */

int32_t tk_bias_grad_sgd_s32(const float *dy, int32_t rows, int32_t c, int32_t *b,
                             const int32_t *channels, int32_t n_channels, const float *factor,
                             float lr, uint32_t *rng)
{
    return tk_bias_grad_opt_s32(dy, rows, c, b, channels, n_channels, factor, lr, rng, NULL);
}

int32_t tk_bias_grad_opt_s32(const float *dy, int32_t rows, int32_t c, int32_t *b,
                             const int32_t *channels, int32_t n_channels, const float *factor,
                             float lr, uint32_t *rng, const tk_optimizer *opt)
{
    tk__opt oc;
    const tk__opt *o = tk__opt_init(&oc, opt);
    const int32_t n_sel = channels != NULL ? n_channels : c;
    const int stochastic = rng != NULL;
    const uint32_t state = stochastic ? *rng : 0u;
    float acc[TK_BIAS_BLOCK];
    int32_t chs[TK_BIAS_BLOCK];
    int32_t skipped = 0;
    int32_t j0, nb, jb, r;
    for (j0 = 0; j0 < n_sel; j0 += nb) {
        nb = n_sel - j0 < TK_BIAS_BLOCK ? n_sel - j0 : TK_BIAS_BLOCK;
        for (jb = 0; jb < nb; jb++) {
            chs[jb] = channels != NULL ? channels[j0 + jb] : j0 + jb;
            acc[jb] = 0.0f;
        }
        for (r = 0; r < rows; r++) {
            const float *row = dy + (size_t)r * c;
            for (jb = 0; jb < nb; jb++) {
                acc[jb] = acc[jb] + row[chs[jb]];
            }
        }
        for (jb = 0; jb < nb; jb++) {
            const int32_t ch = chs[jb];
            skipped += tk__update_s32(&b[ch], acc[jb], factor[ch], lr, stochastic, state + (uint32_t)(j0 + jb), o,
                                      (size_t)(j0 + jb));
        }
    }
    if (stochastic) {
        *rng = state + (uint32_t)n_sel;
    }
    return skipped;
}
