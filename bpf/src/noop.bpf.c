/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The benchmark floor: every tracelake program name on the same hooks, each
 * doing nothing. Loading this instead of tracelake.bpf.o measures what the
 * attachment alone costs, so tracelake's own work can be read as a ratio.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define NOOP_TP(sec, name) \
	SEC(sec)           \
	int name(void *ctx) { return 0; }

NOOP_TP("tracepoint/sched/sched_process_exec", tl_exec)
NOOP_TP("tracepoint/syscalls/sys_exit_openat", tl_openat_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_open", tl_open_legacy_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_creat", tl_creat_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_openat2", tl_openat2_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_rename", tl_rename_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_renameat", tl_renameat_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_renameat2", tl_renameat2_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_unlink", tl_unlink_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_unlinkat", tl_unlinkat_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_rmdir", tl_rmdir_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_chmod", tl_chmod_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_fchmod", tl_fchmod_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_fchmodat", tl_fchmodat_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_fchmodat2", tl_fchmodat2_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_chown", tl_chown_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_lchown", tl_lchown_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_fchown", tl_fchown_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_fchownat", tl_fchownat_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_connect", tl_connect_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_accept", tl_accept_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_accept4", tl_accept4_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_listen", tl_listen_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_bind", tl_bind_exit)
NOOP_TP("tracepoint/syscalls/sys_exit_sendto", tl_sendto_exit)
NOOP_TP("tracepoint/sock/inet_sock_set_state", tl_sock_state)
NOOP_TP("tracepoint/syscalls/sys_exit_setuid", tl_priv_exit)

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tl_fork, struct task_struct *parent, struct task_struct *child) { return 0; }

SEC("tp_btf/sys_exit")
int BPF_PROG(tl_module_exit, struct pt_regs *regs, long ret) { return 0; }

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tl_exit, struct task_struct *p) { return 0; }

char LICENSE[] SEC("license") = "GPL";
