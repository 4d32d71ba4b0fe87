/* Region markers for measuring executed instructions under QEMU
 * (tinymlir.codegen.qemu_icount.count_instructions and the tinymlir-icount plugin).
 *
 *     tinymlir_region_begin();
 *     ... code to measure ...
 *     tinymlir_region_end();
 *
 * The count runs from the first instruction of tinymlir_region_begin (included) to the
 * first instruction of tinymlir_region_end (excluded), first executions only. At -O2 each
 * marker is a single `bx lr`, so the markers add 2 instructions to the region: begin's
 * `bx lr` and the `bl tinymlir_region_end` (plus any argument shuffling the compiler puts
 * around the calls). Both are out-of-line, externally visible functions with a memory
 * clobber, so code is not moved across them and they are never optimised away. */
#ifndef TINYMLIR_REGION_H
#define TINYMLIR_REGION_H

#ifdef __cplusplus
extern "C" {
#endif

void tinymlir_region_begin(void);
void tinymlir_region_end(void);

#ifdef __cplusplus
}
#endif

#endif
