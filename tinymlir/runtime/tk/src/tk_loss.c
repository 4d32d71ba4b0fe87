/* tinymlir training kernels: softmax cross-entropy (double precision). Semantics in tk.h. */
#include <math.h>
#include <stddef.h>

#include "tk.h"

float tk_softmax_xent_f32(const float *logits, int32_t k, int32_t label, float *grad)
{
    double m = (double)logits[0];
    double s = 0.0;
    double lse;
    int32_t j;
    for (j = 1; j < k; j++) {
        if ((double)logits[j] > m) {
            m = (double)logits[j];
        }
    }
    for (j = 0; j < k; j++) {
        s = s + exp((double)logits[j] - m);
    }
    lse = log(s);
    if (grad != NULL) {
        for (j = 0; j < k; j++) {
            grad[j] = (float)(exp(((double)logits[j] - m) - lse) - (j == label ? 1.0 : 0.0));
        }
    }
    return (float)(lse - ((double)logits[label] - m));
}
