/* Region markers: see region.h. */
#include "region.h"

/* noipa (GCC): besides noinline, keeps identical-code folding from merging the two
 * markers into one function or a thunk of the other. */
#if defined(__GNUC__) && !defined(__clang__)
#define TINYMLIR_MARKER __attribute__((noinline, noipa, used))
#else
#define TINYMLIR_MARKER __attribute__((noinline, used))
#endif

TINYMLIR_MARKER void tinymlir_region_begin(void)
{
    __asm__ volatile("" ::: "memory");
}

TINYMLIR_MARKER void tinymlir_region_end(void)
{
    __asm__ volatile("" ::: "memory");
}
