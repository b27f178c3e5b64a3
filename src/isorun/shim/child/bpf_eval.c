/*
 * The profile's seccomp program run in user space, on one call's seccomp_data: by the
 * refusal report's supervisor (notify.c), to answer a notified call with the errno the
 * profile gives it, and by the wrappers' exec stage (seccomp_exec.c), to know before it
 * loads the reporting filter whether the profile lets the stage hand the listener over.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>

#include "bpf_eval.h"

#define EVAL_REFUSE (SECCOMP_RET_ERRNO | EPERM)

/*
 * Classic BPF as seccomp runs it (the subset seccomp_check_filter admits: loads from
 * seccomp_data, scratch memory, ALU, forward jumps, RET), over one notification's data.
 * The refusal report's filter (isorun.compile.refusals) is the profile's own program with each
 * ERRNO answer turned into USER_NOTIF; running the profile's program here gives back the
 * errno it would have answered, exactly, argument conditions included. The data is the
 * kernel's copy: no pointer is followed, so no other thread can change what we decide on
 * (the TOCTOU of seccomp_unotify(2) NOTES does not apply). Anything the kernel would not
 * have loaded answers as a refusal (EPERM): an evaluation error never lets a call run.
 *
 * One function on purpose, though longer than the rest: an interpreter's loop with one
 * case per instruction class, which reads best whole, beside the kernel's own
 * (net/core/filter.c) it mirrors.
 */
/* long: an interpreter loop, one case per BPF instruction class, read whole */
unsigned int isorun_bpf_eval(const unsigned char *prog, size_t len,
                             const struct seccomp_data *d) {
    const struct sock_filter *f = (const void *)prog;
    size_t n = len / sizeof *f, pc = 0;
    unsigned int a = 0, x = 0, mem[BPF_MEMWORDS] = {0}, src, word;
    int taken;

    while (pc < n) {
        const struct sock_filter *i = &f[pc++];
        switch (BPF_CLASS(i->code)) {
        case BPF_LD:
        case BPF_LDX:
            if (BPF_MODE(i->code) == BPF_ABS && BPF_SIZE(i->code) == BPF_W) {
                if (i->k % 4 != 0 || i->k > sizeof *d - 4)
                    return EVAL_REFUSE;
                memcpy(&word, (const unsigned char *)d + i->k, 4);
            } else if (BPF_MODE(i->code) == BPF_LEN) {
                word = sizeof *d;
            } else if (BPF_MODE(i->code) == BPF_IMM) {
                word = i->k;
            } else if (BPF_MODE(i->code) == BPF_MEM && i->k < BPF_MEMWORDS) {
                word = mem[i->k];
            } else {
                return EVAL_REFUSE;
            }
            if (BPF_CLASS(i->code) == BPF_LD)
                a = word;
            else
                x = word;
            break;
        case BPF_ST:
        case BPF_STX:
            if (i->k >= BPF_MEMWORDS)
                return EVAL_REFUSE;
            mem[i->k] = BPF_CLASS(i->code) == BPF_ST ? a : x;
            break;
        case BPF_ALU:
            src = BPF_SRC(i->code) == BPF_X ? x : i->k;
            switch (BPF_OP(i->code)) {
            case BPF_ADD: a += src; break;
            case BPF_SUB: a -= src; break;
            case BPF_MUL: a *= src; break;
            case BPF_DIV: if (src == 0) return EVAL_REFUSE; a /= src; break;
            case BPF_MOD: if (src == 0) return EVAL_REFUSE; a %= src; break;
            case BPF_OR: a |= src; break;
            case BPF_AND: a &= src; break;
            case BPF_XOR: a ^= src; break;
            case BPF_LSH: a = src < 32 ? a << src : 0; break;
            case BPF_RSH: a = src < 32 ? a >> src : 0; break;
            case BPF_NEG: a = -a; break;
            default: return EVAL_REFUSE;
            }
            break;
        case BPF_JMP:
            if (BPF_OP(i->code) == BPF_JA) {
                pc += i->k;
                break;
            }
            src = BPF_SRC(i->code) == BPF_X ? x : i->k;
            switch (BPF_OP(i->code)) {
            case BPF_JEQ: taken = a == src; break;
            case BPF_JGT: taken = a > src; break;
            case BPF_JGE: taken = a >= src; break;
            case BPF_JSET: taken = (a & src) != 0; break;
            default: return EVAL_REFUSE;
            }
            pc += taken ? i->jt : i->jf;
            break;
        case BPF_RET:
            return BPF_RVAL(i->code) == BPF_A ? a : i->k;
        case BPF_MISC:
            if (BPF_MISCOP(i->code) == BPF_TAX)
                x = a;
            else
                a = x;
            break;
        default:
            return EVAL_REFUSE;
        }
    }
    return EVAL_REFUSE; /* fell off the end: the kernel refuses such a program */
}

