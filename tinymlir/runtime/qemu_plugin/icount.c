/* tinymlir-icount: a QEMU TCG plugin counting the guest instructions executed in a region.
 *
 *   qemu-system-arm ... -plugin libtinymlir_icount.so,begin=0x1234,end=0x5678 -d plugin
 *
 * The region starts at the first execution of the instruction at `begin` (counted) and
 * stops at the first execution, after that, of the instruction at `end` (not counted).
 * At exit the plugin prints, through qemu_plugin_outs (QEMU's log, i.e. stderr with
 * `-d plugin`), one line:
 *
 *   tinymlir-icount: <N> begin=<hit|missed> end=<hit|missed>
 *
 * Counting is exact per instruction but cheap: a translation block (TB) without a marker
 * gets one TB-exec callback that adds the TB's instruction count while the region is
 * active (no marker inside it, so the state cannot change mid-block); only TBs holding a
 * marker get per-instruction callbacks, so a marker in the middle of a block is handled
 * exactly. A TB-exec callback runs when the block starts, so a block left early by a
 * synchronous fault would be over-counted by the instructions it skipped; semihosting
 * calls, branches and interrupts end a block and do not cause that.
 *
 * Addresses are parsed with strtoull base 0 (hex with 0x). On Arm targets bit 0 is
 * ignored (Thumb function symbols carry it). The state is global: meant for one vCPU
 * (the mps2 boards), where TCG runs the guest on one thread. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinymlir_qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum { MARK_BEGIN = 1, MARK_END = 2 };

static uint64_t begin_addr, end_addr;
static bool active, begun, ended;
static uint64_t count;

/* A TB without markers: add its instruction count while the region is active. */
static void tb_exec(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    if (active)
        count += (uint64_t)(uintptr_t)userdata;
}

/* Every instruction of a TB holding a marker; userdata holds its MARK_* bits. */
static void insn_exec(unsigned int vcpu_index, void *userdata)
{
    uintptr_t marks = (uintptr_t)userdata;
    (void)vcpu_index;
    if ((marks & MARK_BEGIN) && !begun) {
        begun = true;
        active = true;
    }
    if ((marks & MARK_END) && active) {
        active = false;
        ended = true;
    }
    if (active)
        count++;
}

static uintptr_t marks_of(uint64_t vaddr)
{
    return (vaddr == begin_addr ? MARK_BEGIN : 0) | (vaddr == end_addr ? MARK_END : 0);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    bool has_marker = false;
    (void)id;
    for (size_t i = 0; i < n && !has_marker; i++)
        has_marker = marks_of(qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, i))) != 0;
    if (!has_marker) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        qemu_plugin_register_vcpu_insn_exec_cb(insn, insn_exec, QEMU_PLUGIN_CB_NO_REGS,
                                               (void *)marks_of(qemu_plugin_insn_vaddr(insn)));
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    char line[128];
    (void)id;
    (void)userdata;
    snprintf(line, sizeof line, "tinymlir-icount: %" PRIu64 " begin=%s end=%s\n", count,
             begun ? "hit" : "missed", ended ? "hit" : "missed");
    qemu_plugin_outs(line);
}

static int parse_addr(const char *arg, const char *key, uint64_t *out, bool *seen)
{
    size_t k = strlen(key);
    char *stop;
    if (strncmp(arg, key, k) != 0 || arg[k] != '=')
        return 0;
    *out = strtoull(arg + k + 1, &stop, 0);
    if (stop == arg + k + 1 || *stop != '\0') {
        fprintf(stderr, "tinymlir-icount: bad address in '%s'\n", arg);
        return -1;
    }
    *seen = true;
    return 1;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    bool have_begin = false, have_end = false;
    for (int i = 0; i < argc; i++) {
        int b = parse_addr(argv[i], "begin", &begin_addr, &have_begin);
        int e = b ? 0 : parse_addr(argv[i], "end", &end_addr, &have_end);
        if (b < 0 || e < 0)
            return -1;
        if (!b && !e) {
            fprintf(stderr, "tinymlir-icount: unknown argument '%s' (expected begin=ADDR,end=ADDR)\n", argv[i]);
            return -1;
        }
    }
    if (!have_begin || !have_end) {
        fprintf(stderr, "tinymlir-icount: need the arguments begin=ADDR and end=ADDR\n");
        return -1;
    }
    if (info->target_name && strncmp(info->target_name, "arm", 3) == 0) {
        begin_addr &= ~(uint64_t)1; /* Thumb bit */
        end_addr &= ~(uint64_t)1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
