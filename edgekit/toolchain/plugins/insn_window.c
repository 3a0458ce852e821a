/* QEMU TCG plugin: count guest instructions executed between two addresses.
 *
 * Arguments: begin=<addr>, end=<addr>, out=<file>, and optionally mode=insn.
 * Every time execution reaches `end` after `begin`, the instructions executed
 * since `begin` are appended to <file>, one number per line.
 *
 * mode=tb (default) adds a translation block's instruction count when the
 * block starts; this is exact while no exception leaves a block early (none
 * does inside an inference: the harness runs with interrupts unused).
 * mode=insn adds one per instruction: exact always, slower.
 *
 * Written against QEMU 7.2's plugin API (qemu_plugin_version 1); the few
 * declarations needed are repeated here because Debian ships no plugin header. */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op, void *ptr,
                                                uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t g_count;
static uint64_t g_begin_addr, g_end_addr, g_at_begin;
static bool g_open_window, g_per_insn;
static FILE *g_out;

static void on_begin(unsigned int vcpu, void *udata) {
    (void)vcpu, (void)udata;
    g_at_begin = g_count;
    g_open_window = true;
}

static void on_end(unsigned int vcpu, void *udata) {
    (void)vcpu, (void)udata;
    if (!g_open_window) return;
    g_open_window = false;
    fprintf(g_out, "%" PRIu64 "\n", g_count - g_at_begin);
    fflush(g_out);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (!g_per_insn) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &g_count, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        if (g_per_insn) qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &g_count, 1);
        if (pc == g_begin_addr) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
        if (pc == g_end_addr) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

static void on_exit_cb(qemu_plugin_id_t id, void *udata) {
    (void)id, (void)udata;
    if (g_out) fclose(g_out);
    g_out = NULL;
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv) {
    (void)info;
    const char *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "begin=", 6)) g_begin_addr = strtoull(argv[i] + 6, NULL, 0) & ~1ull;
        else if (!strncmp(argv[i], "end=", 4)) g_end_addr = strtoull(argv[i] + 4, NULL, 0) & ~1ull;
        else if (!strncmp(argv[i], "out=", 4)) out = argv[i] + 4;
        else if (!strcmp(argv[i], "mode=insn")) g_per_insn = true;
        else if (!strcmp(argv[i], "mode=tb")) g_per_insn = false;
        else {
            fprintf(stderr, "insn_window: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    if (!out || !g_begin_addr || !g_end_addr) {
        fprintf(stderr, "insn_window: needs begin=, end= and out=\n");
        return -1;
    }
    g_out = fopen(out, "w");
    if (!g_out) {
        fprintf(stderr, "insn_window: cannot write %s\n", out);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
