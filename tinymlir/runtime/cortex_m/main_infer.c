/* tinymlir Cortex-M harness: runs the generated model once on the input of the
 * generated `input_data.h` and prints every output as the hex of its float bits (or,
 * when the header defines TINYMLIR_OUTPUT_INT8, as a decimal int8), one per line,
 * between "BEGIN" and "END" markers. Returns model_infer's status. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "input_data.h"
#include "model.h"

#ifdef TINYMLIR_OUTPUT_INT8
static int8_t output[MODEL_OUTPUT_SIZE];
#else
static float output[MODEL_OUTPUT_SIZE];
#endif

int main(void)
{
    int status = model_infer(tinymlir_input, output);
    printf("STATUS %d\n", status);
    printf("BEGIN %d\n", (int)MODEL_OUTPUT_SIZE);
    for (int i = 0; i < MODEL_OUTPUT_SIZE; i++) {
#ifdef TINYMLIR_OUTPUT_INT8
        printf("%d\n", (int)output[i]);
#else
        uint32_t bits;
        memcpy(&bits, &output[i], sizeof bits);
        printf("%08lx\n", (unsigned long)bits);
#endif
    }
    printf("END\n");
    return status == 0 ? 0 : 1;
}
