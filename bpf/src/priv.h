/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Privilege changes and container-escape signals, read at syscall exit. */
#ifndef TL_PRIV_H
#define TL_PRIV_H

/* x86_64 syscall numbers (the only architecture built for now). */
#define NR_ptrace 101
#define NR_setuid 105
#define NR_setgid 106
#define NR_setreuid 113
#define NR_setregid 114
#define NR_setresuid 117
#define NR_setresgid 119
#define NR_setfsuid 122
#define NR_setfsgid 123
#define NR_capset 126
#define NR_pivot_root 155
#define NR_chroot 161
#define NR_mount 165
#define NR_umount2 166
#define NR_init_module 175
#define NR_unshare 272
#define NR_setns 308
#define NR_finit_module 313
#define NR_memfd_create 319
#define NR_bpf 321

static __always_inline __u32 tl_priv_kind(__s32 nr)
{
	switch (nr) {
	case NR_setuid: case NR_setreuid: case NR_setresuid: case NR_setfsuid:
		return TL_KIND_SETUID;
	case NR_setgid: case NR_setregid: case NR_setresgid: case NR_setfsgid:
		return TL_KIND_SETGID;
	case NR_capset: return TL_KIND_CAPSET;
	case NR_ptrace: return TL_KIND_PTRACE;
	case NR_mount: return TL_KIND_MOUNT;
	case NR_umount2: return TL_KIND_UMOUNT;
	case NR_unshare: return TL_KIND_UNSHARE;
	case NR_setns: return TL_KIND_SETNS;
	case NR_init_module: case NR_finit_module: return TL_KIND_MODULE_LOAD;
	case NR_bpf: return TL_KIND_BPF;
	case NR_memfd_create: return TL_KIND_MEMFD_CREATE;
	case NR_chroot: return TL_KIND_CHROOT;
	case NR_pivot_root: return TL_KIND_PIVOT_ROOT;
	}
	return 0;
}

/* Kinds a busy process repeats (runtimes, debuggers, bpftool): aggregated. */
static __always_inline bool tl_priv_aggregates(__u32 kind)
{
	return kind == TL_KIND_SETUID || kind == TL_KIND_SETGID || kind == TL_KIND_CAPSET || kind == TL_KIND_PTRACE ||
	       kind == TL_KIND_BPF || kind == TL_KIND_MEMFD_CREATE;
}

static __always_inline __u32 tl_user_str(struct tl_heap *heap, __u32 pos, __u64 uptr, __u32 *flags)
{
	long n;
	if (!uptr)
		return 0;
	pos &= 1023;
	n = bpf_probe_read_user_str(heap->rec + pos, TL_STR_MAX, (void *)uptr);
	if (n <= 1)
		return 0;
	if (n == TL_STR_MAX)
		*flags |= TL_F_STR_TRUNC;
	return (n - 1) & (TL_STR_MAX - 1);
}

static __noinline int tl_priv(__s32 nr, long ret)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tl_config *c = tl_cfg();
	__u32 kind = tl_priv_kind(nr), flags = 0, pos;
	struct pt_regs *regs;
	struct tl_syscall *s;
	struct tl_heap *heap;
	__u64 now;

	if (!kind || !c || tl_skip(c, TL_CLASS_PRIVILEGE, task, tgid))
		return 0;
	heap = tl_hp();
	if (!heap)
		return 0;
	regs = tl_regs();
	s = (struct tl_syscall *)heap->rec;
	s->args[0] = TL_ARG1(regs);
	s->args[1] = TL_ARG2(regs);
	s->args[2] = TL_ARG3(regs);
	s->args[3] = TL_ARG4(regs);
	s->args[4] = TL_ARG5(regs);
	s->args[5] = TL_ARG6(regs);
	now = bpf_ktime_get_boot_ns();
	if (tl_priv_aggregates(kind)) {
		struct tl_agg_key k = {
			.cgroup_id = bpf_get_current_cgroup_id(),
			.tgid = tgid,
			.kind = kind,
			.object = { (__u64)nr | ((ret < 0 ? 1ULL : 0) << 63), s->args[0], s->args[1] },
		};
		int r;
		if (tl_agg_probe(c, &k) != TL_AGG_NEW)
			return 0;
		r = tl_agg_insert(c, &k, now);
		if (r == TL_AGG_FOLDED)
			return 0;
		flags |= tl_agg_flag(c, r);
	}
	if (kind == TL_KIND_CAPSET) {
		/* The new sets matter more than the user pointers. */
		__u32 d[6] = {};
		bpf_probe_read_user(d, sizeof(d), (void *)s->args[1]);
		s->args[2] = d[0] | ((__u64)d[3] << 32);
		s->args[3] = d[1] | ((__u64)d[4] << 32);
		s->args[4] = d[2] | ((__u64)d[5] << 32);
	} else if (kind == TL_KIND_SETNS) {
		/* Which namespace the fd points at: the nsfs inode is its id. */
		struct file *f = tl_fd_file(task, s->args[0]);
		s->args[5] = f ? BPF_CORE_READ(f, f_inode, i_ino) : 0;
	}
	tl_fill_header(&s->h, kind, task);
	s->ret = ret;
	s->nr = nr;
	pos = sizeof(*s);
	s->str1_len = 0;
	s->str2_len = 0;
	s->str3_len = 0;
	switch (kind) {
	case TL_KIND_MOUNT:
		s->str1_len = tl_user_str(heap, pos, s->args[0], &flags);
		s->str2_len = tl_user_str(heap, pos + s->str1_len, s->args[1], &flags);
		s->str3_len = tl_user_str(heap, pos + s->str1_len + s->str2_len, s->args[2], &flags);
		break;
	case TL_KIND_UMOUNT:
	case TL_KIND_CHROOT:
	case TL_KIND_MEMFD_CREATE:
		s->str1_len = tl_user_str(heap, pos, s->args[0], &flags);
		break;
	case TL_KIND_PIVOT_ROOT:
		s->str1_len = tl_user_str(heap, pos, s->args[0], &flags);
		s->str2_len = tl_user_str(heap, pos + s->str1_len, s->args[1], &flags);
		break;
	case TL_KIND_MODULE_LOAD:
		s->str1_len = tl_user_str(heap, pos, nr == NR_init_module ? s->args[2] : s->args[1], &flags);
		break;
	}
	s->h.flags = flags;
	tl_emit(s, pos + s->str1_len + s->str2_len + s->str3_len);
	return 0;
}

/* Attached by user space to every sys_exit_* tracepoint of the list in
 * sensor/src/hooks.rs: one program, many syscalls. */
SEC("tracepoint/syscalls/sys_exit_setuid")
int tl_priv_exit(struct tl_sys_exit_ctx *ctx)
{
	return tl_priv(ctx->nr, ctx->ret);
}

/* Kernels built without modules have no module syscall tracepoints; the
 * attempt is still worth seeing, so catch it on the generic exit hook. It
 * runs on every syscall, so it is a BTF raw tracepoint (no perf-event
 * dispatch, direct register access) that returns after one compare. */
SEC("tp_btf/sys_exit")
int BPF_PROG(tl_module_exit, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	if (nr != NR_init_module && nr != NR_finit_module)
		return 0;
	return tl_priv(nr, ret);
}

#endif /* TL_PRIV_H */
