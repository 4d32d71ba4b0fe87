/* tinymlir Cortex-M harness for a training step: runs `model_train_step` on the input of
 * the generated `train_data.h` for each of its labels, then prints, per parameter, its
 * name, size and FNV-1a hash (so a host can compare every byte cheaply), and the stack
 * high-water mark of the whole run (the stack is painted first, then scanned).
 * Output: "STEP k STATUS s LOSS <hex bits>" lines, "PARAM name bytes hash" lines,
 * "STACK bytes", "END". Returns 0 when every step returned 0. The first step runs between
 * the region markers of region.h (QEMU instruction counting). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "region.h"
#include "train_data.h"

#if defined(__arm__)
extern uint8_t __heap_end[]; /* lowest address of the stack region (picolibc.ld) */
extern uint8_t __stack[];    /* its top */
#define STACK_PAINT 0xA5u

static void paint_stack(void)
{
    volatile uint8_t *p = __heap_end;
    const uint8_t *sp = (const uint8_t *)__builtin_frame_address(0);
    while (p + 256 < sp) {
        *p++ = STACK_PAINT;
    }
}

static long stack_used(void)
{
    const volatile uint8_t *p = __heap_end;
    while (p < __stack && *p == STACK_PAINT) {
        p++;
    }
    return (long)(__stack - (const uint8_t *)p);
}
#else
static void paint_stack(void) {}
static long stack_used(void) { return -1; }
#endif

static uint32_t fnv1a(const uint8_t *data, int32_t n)
{
    uint32_t h = 2166136261u;
    for (int32_t i = 0; i < n; i++) {
        h = (h ^ data[i]) * 16777619u;
    }
    return h;
}

int main(void)
{
    int failed = 0;
    paint_stack();
    for (int k = 0; k < TRAIN_STEPS; k++) {
        float loss = 0.0f;
        if (k == 0) {
            tinymlir_region_begin();
        }
        const int status = model_train_step(train_input, train_labels[k], TRAIN_LR, &loss);
        if (k == 0) {
            tinymlir_region_end();
        }
        uint32_t bits;
        memcpy(&bits, &loss, sizeof bits);
        printf("STEP %d STATUS %d LOSS %08lx\n", k, status, (unsigned long)bits);
        failed |= status != 0;
    }
    const long stack = stack_used();
    for (int32_t i = 0; i < model_param_count(); i++) {
        printf("PARAM %s %ld %08lx\n", model_param_name(i), (long)model_param_bytes(i),
               (unsigned long)fnv1a((const uint8_t *)model_param_data(i), model_param_bytes(i)));
    }
    printf("STACK %ld\nEND\n", stack);
    return failed;
}
