/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Process lifecycle: exec, fork, thread creation (counted), exit. */
#ifndef TL_PROCESS_H
#define TL_PROCESS_H

static __always_inline bool tl_is_memfd(struct file *exe)
{
	char p[8] = {};
	const unsigned char *nm = BPF_CORE_READ(exe, f_path.dentry, d_name.name);
	bpf_probe_read_kernel(p, 6, nm);
	return p[0] == 'm' && p[1] == 'e' && p[2] == 'm' && p[3] == 'f' && p[4] == 'd' && p[5] == ':';
}

/* Controlling tty and session: what tells an interactive shell from a script. */
static __always_inline void tl_exec_session(struct tl_exec *e, struct task_struct *task)
{
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	struct tty_struct *tty = BPF_CORE_READ(sig, tty);
	struct pid *sp = BPF_CORE_READ(sig, pids[PIDTYPE_SID]);
	struct upid up = {};

	e->tty = 0;
	if (tty) {
		/* tty_devnum(): what /proc/<pid>/stat reports as tty_nr. */
		__u32 major = BPF_CORE_READ(tty, driver, major);
		__u32 minor = BPF_CORE_READ(tty, driver, minor_start) + BPF_CORE_READ(tty, index);
		e->tty = (major << 20) | (minor & 0xfffff);
	}
	/* numbers[] is a flexible array: a constant index in a CO-RE access
	 * string is refused as out of bounds, so read from the field's address. */
	bpf_core_read(&up, sizeof(up), &sp->numbers);
	e->sid = up.nr;
	e->session_leader = e->sid == e->h.tgid;
}

/* One standard fd: its type and, for a socket, the peer the socket knows. */
static __always_inline void tl_exec_fd(struct tl_stdio *s, struct file *f)
{
	__u32 mode;

	__builtin_memset(s, 0, sizeof(*s));
	if (!f)
		return;
	mode = BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT;
	if (mode == S_IFSOCK) {
		struct socket *sock = BPF_CORE_READ(f, private_data);
		struct sock *sk = BPF_CORE_READ(sock, sk);

		s->fd_type = TL_FD_SOCKET;
		if (!sk)
			return;
		s->family = BPF_CORE_READ(sk, __sk_common.skc_family);
		s->protocol = BPF_CORE_READ(sk, sk_protocol);
		s->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (s->family == AF_INET) {
			__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
			__builtin_memcpy(s->addr, &d, 4);
		} else if (s->family == AF_INET6) {
			bpf_core_read(s->addr, 16, &sk->__sk_common.skc_v6_daddr);
		}
	} else if (mode == S_IFIFO) {
		s->fd_type = TL_FD_PIPE;
	} else if (mode == S_IFCHR) {
		s->fd_type = TL_FD_CHAR;
		s->rdev = BPF_CORE_READ(f, f_inode, i_rdev);
	} else if (mode == S_IFREG) {
		s->fd_type = TL_FD_FILE;
	} else {
		s->fd_type = TL_FD_OTHER;
	}
}

/* fds 0, 1 and 2 of the new program (close-on-exec fds are already gone). */
static __always_inline void tl_exec_stdio(struct tl_exec *e, struct task_struct *task)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file **fds = BPF_CORE_READ(fdt, fd);

#pragma unroll
	for (int i = 0; i < 3; i++) {
		struct file *f = NULL;
		if (i < max)
			bpf_probe_read_kernel(&f, sizeof(f), &fds[i]);
		tl_exec_fd(&e->stdio[i], f);
	}
}

SEC("tracepoint/sched/sched_process_exec")
int tl_exec(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tl_config *c = tl_cfg();
	struct tl_heap *heap;
	struct tl_exec *e;
	struct file *exe;
	unsigned long as, ae;
	__u32 flags = 0, cwd_flags = 0, start, pos, amax;
	__u64 alen;

	if (!c || tl_skip(c, TL_CLASS_PROCESS, task, tgid))
		return 0;
	heap = tl_hp();
	if (!heap)
		return 0;
	e = (struct tl_exec *)heap->rec;
	tl_fill_header(&e->h, TL_KIND_EXEC, task);

	exe = BPF_CORE_READ(task, mm, exe_file);
	e->exe_ino = BPF_CORE_READ(exe, f_inode, i_ino);
	e->exe_dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
	e->exe_nlink = BPF_CORE_READ(exe, f_inode, i_nlink);
	if (e->exe_nlink == 0)
		flags |= TL_F_EXE_DELETED;
	if (tl_is_memfd(exe))
		flags |= TL_F_EXE_MEMFD;
	tl_exec_session(e, task);
	tl_exec_stdio(e, task);

	start = tl_file_path(heap, exe, &flags);
	pos = sizeof(*e);
	e->path_len = tl_copy_path(heap->rec + pos, heap, start, TL_PATH_HALF, &flags);
	pos += e->path_len;

	as = BPF_CORE_READ(task, mm, arg_start);
	ae = BPF_CORE_READ(task, mm, arg_end);
	alen = ae > as ? ae - as : 0;
	amax = c->argv_max;
	if (amax > TL_ARGV_MAX - 1)
		amax = TL_ARGV_MAX - 1;
	if (alen > amax) {
		alen = amax;
		flags |= TL_F_ARGS_TRUNC;
	}
	alen &= TL_ARGV_MAX - 1;
	pos &= TL_REC_MAX - 1;
	if (pos > TL_REC_MAX - 2 * TL_PATH_MAX)
		return 0;
	if (bpf_probe_read_user(heap->rec + pos, alen, (void *)as))
		alen = 0;
	e->args_len = alen;
	pos += alen;

	start = tl_path_walk(heap, BPF_CORE_READ(task, fs, pwd.dentry), BPF_CORE_READ(task, fs, pwd.mnt), &cwd_flags);
	pos &= TL_REC_MAX - 1;
	if (pos > TL_REC_MAX - TL_PATH_MAX)
		return 0;
	e->cwd_len = tl_copy_path(heap->rec + pos, heap, start, TL_PATH_HALF, &cwd_flags);
	pos += e->cwd_len;
	if (cwd_flags & TL_F_PATH_TRUNC)
		flags |= TL_F_CWD_TRUNC;
	e->h.flags = flags;
	tl_emit(e, pos);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tl_fork, struct task_struct *parent, struct task_struct *child)
{
	struct tl_config *c = tl_cfg();
	__u32 tgid = parent->tgid;
	struct tl_fork f = {};

	if (!c || tl_skip(c, TL_CLASS_PROCESS, parent, tgid))
		return 0;
	if (child->pid != child->tgid) {
		/* Threads are counted per process, never emitted one by one. */
		struct tl_agg_key k = {
			.cgroup_id = bpf_get_current_cgroup_id(),
			.tgid = tgid,
			.kind = TL_KIND_CLONE_THREAD,
		};
		__u64 now = bpf_ktime_get_boot_ns();
		struct tl_stats *st;
		if (tl_agg_probe(c, &k) == TL_AGG_NEW && tl_agg_insert(c, &k, now) != TL_AGG_FOLDED) {
			st = tl_st();
			if (st)
				st->aggregated[TL_KIND_CLONE_THREAD]++;
		}
		return 0;
	}
	tl_fill_header(&f.h, TL_KIND_FORK, parent);
	f.child_pid = child->pid;
	f.child_start_ns = child->start_boottime;
	tl_emit(&f, sizeof(f));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tl_exit, struct task_struct *p)
{
	struct tl_config *c = tl_cfg();
	struct tl_exit e = {};
	int code;

	if (!c || tl_skip(c, TL_CLASS_PROCESS, p, p->tgid))
		return 0;
	/* Only the last thread of the group reports the process exit. */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	tl_fill_header(&e.h, TL_KIND_EXIT, p);
	code = p->exit_code;
	e.exit_code = (code >> 8) & 0xff;
	e.signal = code & 0x7f;
	e.core_dump = (code & 0x80) ? 1 : 0;
	tl_emit(&e, sizeof(e));
	return 0;
}

#endif /* TL_PROCESS_H */
