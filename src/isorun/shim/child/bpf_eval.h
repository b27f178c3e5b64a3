/* isorun_bpf_eval (bpf_eval.c), shared by the shim and the wrappers' exec stage. */
#ifndef ISORUN_BPF_EVAL_H
#define ISORUN_BPF_EVAL_H
#include <stddef.h>
#include <linux/seccomp.h>

/*
 * What the classic BPF program prog (struct sock_filter[], len bytes) answers for d,
 * exactly as seccomp would; SECCOMP_RET_ERRNO|EPERM for anything the kernel would not
 * have loaded, so an evaluation error never lets a call run.
 */
unsigned int isorun_bpf_eval(const unsigned char *prog, size_t len,
                             const struct seccomp_data *d);

#endif
