/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* File activity: opens with intent, rename, unlink, chmod, chown. */
#ifndef TL_FILE_H
#define TL_FILE_H

static __always_inline bool tl_write_intent(__u32 flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC));
}

/* Successful open: aggregated per (process, inode, intent) before
 * the path is even built, so a flood of repeats (or of opens a filter
 * already rejected for this process, see tl_ignore) costs a lookup or two. This is the
 * hottest program: it reads through BTF pointers where it can, and fetches
 * the clock and the create mode only when it emits. */
static __always_inline int tl_open_exit(struct task_struct *task, long ret, __u32 oflags, __u64 mode_arg, bool mode_is_ptr)
{
	struct tl_config *c = tl_cfg();
	bool wr = tl_write_intent(oflags);
	struct tl_agg_key k = {};
	struct tl_ign_key ik = {};
	struct tl_heap *heap;
	struct tl_file *r;
	struct inode *ino;
	struct file *f;
	__u32 tgid, flags = 0, start, action, len, *gen, zero = 0, known = 0;
	struct tl_ign_cache *cache;
	struct tl_ign_slot *slot = NULL;
	__u64 now;
	int a;

	if (ret < 0 || !c)
		return 0;
	if (!wr && !c->read_watch)
		return 0;
	tgid = task->tgid;
	if (tl_skip(c, TL_CLASS_FILE, task, tgid))
		return 0;
	f = tl_fd_file_btf(task, ret);
	if (!f)
		return 0;
	ino = BPF_CORE_READ(f, f_inode);
	ik.inode = (__u64)ino;
	ik.ino = BPF_CORE_READ(ino, i_ino);
	ik.tgid = tgid;
	ik.wr = wr;
	cache = bpf_map_lookup_elem(&tl_ign_cpu, &zero);
	if (cache) {
		slot = &cache->slot[((ik.inode >> 6) ^ ik.tgid) & (TL_IGN_SLOTS - 1)];
		if (slot->valid && slot->k.inode == ik.inode && slot->k.ino == ik.ino && slot->k.tgid == tgid &&
		    slot->k.wr == ik.wr && c->generation - slot->generation <= 1)
			known = slot->valid;
	}
	if (known == TL_SLOT_IGNORED)
		return 0;
	gen = known == TL_SLOT_WATCHED ? NULL : bpf_map_lookup_elem(&tl_ignore, &ik);
	if (gen && c->generation - *gen <= 1) {
		if (slot) {
			slot->k = ik;
			slot->generation = *gen;
			slot->valid = TL_SLOT_IGNORED;
		}
		return 0;
	}
	/* No cgroup in open keys: the tgid already names the process, and the
	 * helper call is measurable on this path (sensor/src/agg.rs mirrors it). */
	k.tgid = tgid;
	k.kind = TL_KIND_FILE_OPEN;
	k.object[0] = known == TL_SLOT_WATCHED ? slot->dev : BPF_CORE_READ(ino, i_sb, s_dev);
	k.object[1] = ik.ino;
	k.object[2] = wr;
	if (tl_agg_probe(c, &k) != TL_AGG_NEW) {
		/* Watched and aggregating: next time, skip the ignore lookup. */
		if (slot && known != TL_SLOT_WATCHED) {
			slot->k = ik;
			slot->dev = k.object[0];
			slot->generation = c->generation;
			slot->valid = TL_SLOT_WATCHED;
		}
		return 0;
	}

	now = bpf_ktime_get_boot_ns();
	heap = tl_hp();
	if (!heap)
		return 0;
	start = tl_file_path(heap, f, &flags);
	action = tl_prefix_action(c, heap, start, TL_PATH_HALF);
	if (action < (wr ? TL_FILE_WRITES : TL_FILE_READS)) {
		struct tl_stats *st = tl_st();
		if (st)
			st->filtered++;
		bpf_map_update_elem(&tl_ignore, &ik, &c->generation, BPF_ANY);
		if (slot) {
			slot->k = ik;
			slot->generation = c->generation;
			slot->valid = TL_SLOT_IGNORED;
		}
		return 0;
	}
	a = tl_agg_insert(c, &k, now);
	if (a == TL_AGG_FOLDED)
		return 0;
	flags |= tl_agg_flag(c, a);

	r = (struct tl_file *)heap->rec;
	tl_fill_header(&r->h, TL_KIND_FILE_OPEN, task);
	r->ret = ret;
	r->ino = k.object[1];
	r->dev = k.object[0];
	r->open_flags = oflags;
	if (mode_is_ptr) {
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)mode_arg);
		r->mode = how.mode;
	} else {
		r->mode = mode_arg;
	}
	r->owner_uid = 0;
	r->owner_gid = 0;
	len = tl_copy_path(heap->rec + sizeof(*r), heap, start, TL_PATH_HALF, &flags);
	r->path_len = len;
	r->path2_len = 0;
	r->_pad0 = 0;
	r->h.flags = flags;
	tl_emit(r, sizeof(*r) + len);
	return 0;
}

/* The open handlers fetch the task once and hand it down: each helper call
 * shows on this path. */
#define TL_OPEN_PROLOGUE                                                       \
	struct task_struct *task = bpf_get_current_task_btf();                 \
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task)

SEC("tracepoint/syscalls/sys_exit_openat")
int tl_openat_exit(struct tl_sys_exit_ctx *ctx)
{
	TL_OPEN_PROLOGUE;
	/* mode is only needed on emit; pass the register, not a read of it */
	return tl_open_exit(task, ctx->ret, regs->dx, regs->r10, false);
}

SEC("tracepoint/syscalls/sys_exit_open")
int tl_open_legacy_exit(struct tl_sys_exit_ctx *ctx)
{
	TL_OPEN_PROLOGUE;
	return tl_open_exit(task, ctx->ret, regs->si, regs->dx, false);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int tl_creat_exit(struct tl_sys_exit_ctx *ctx)
{
	TL_OPEN_PROLOGUE;
	return tl_open_exit(task, ctx->ret, O_CREAT | O_WRONLY | O_TRUNC, regs->si, false);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int tl_openat2_exit(struct tl_sys_exit_ctx *ctx)
{
	TL_OPEN_PROLOGUE;
	__u64 flags = 0;
	/* struct open_how starts with the flags */
	bpf_probe_read_user(&flags, sizeof(flags), (void *)regs->dx);
	return tl_open_exit(task, ctx->ret, flags, regs->dx, true);
}

/* Arguments of a path-mutating syscall, normalised across its variants. */
struct tl_mut {
	__u32 kind;
	__u32 mode;
	__u32 uid;
	__u32 gid;
	__u32 fl;
	long dfd; /* AT_FDCWD, a dirfd, or the fd itself when path is NULL */
	const char *path;
	long dfd2;
	const char *path2;
};

static __always_inline __u32 tl_mut_path(struct tl_heap *heap, struct task_struct *task, long dfd, const char *p, __u32 *start, __u32 *flags)
{
	if (p)
		return tl_user_path(heap, task, dfd, p, start, flags);
	{
		struct file *f = tl_fd_file(task, dfd);
		*start = f ? tl_file_path(heap, f, flags) : TL_PATH_HALF;
		return TL_PATH_HALF;
	}
}

static __noinline int tl_mut_exit(long ret, struct tl_mut *m)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tl_config *c = tl_cfg();
	struct tl_heap *heap;
	struct tl_file *r;
	__u32 flags = 0, start = 0, end, action, len, len2 = 0;

	if (!c || !m || tl_skip(c, TL_CLASS_FILE, task, tgid))
		return 0;
	heap = tl_hp();
	if (!heap)
		return 0;
	r = (struct tl_file *)heap->rec;
	end = tl_mut_path(heap, task, m->dfd, m->path, &start, &flags);
	action = tl_prefix_action(c, heap, start, end);
	len = tl_copy_path(heap->rec + sizeof(*r), heap, start, end, &flags);
	if (m->kind == TL_KIND_FILE_RENAME) {
		__u32 a2;
		end = tl_mut_path(heap, task, m->dfd2, m->path2, &start, &flags);
		a2 = tl_prefix_action(c, heap, start, end);
		if (a2 > action)
			action = a2;
		len2 = tl_copy_path(heap->rec + sizeof(*r) + len, heap, start, end, &flags);
	}
	if (action < TL_FILE_WRITES) {
		struct tl_stats *st = tl_st();
		if (st)
			st->filtered++;
		return 0;
	}
	tl_fill_header(&r->h, m->kind, task);
	r->ret = ret;
	r->ino = 0;
	r->dev = 0;
	r->open_flags = m->fl;
	r->mode = m->mode;
	r->owner_uid = m->uid;
	r->owner_gid = m->gid;
	r->path_len = len;
	r->path2_len = len2;
	r->_pad0 = 0;
	r->h.flags = flags;
	tl_emit(r, sizeof(*r) + len + len2);
	return 0;
}

/* Designated initialisers below override the AT_FDCWD defaults on purpose. */
#pragma clang diagnostic ignored "-Winitializer-overrides"
#define TL_MUT_HANDLER(name, ...)                                   \
	SEC("tracepoint/syscalls/sys_exit_" #name)                  \
	int tl_##name##_exit(struct tl_sys_exit_ctx *ctx)           \
	{                                                           \
		struct pt_regs *regs = tl_regs();                   \
		struct tl_mut m = { .dfd = AT_FDCWD, .dfd2 = AT_FDCWD, __VA_ARGS__ }; \
		return tl_mut_exit(ctx->ret, &m);                   \
	}

TL_MUT_HANDLER(rename, .kind = TL_KIND_FILE_RENAME, .path = (void *)TL_ARG1(regs), .path2 = (void *)TL_ARG2(regs))
TL_MUT_HANDLER(renameat, .kind = TL_KIND_FILE_RENAME, .dfd = TL_ARG1(regs), .path = (void *)TL_ARG2(regs), .dfd2 = TL_ARG3(regs), .path2 = (void *)TL_ARG4(regs))
TL_MUT_HANDLER(renameat2, .kind = TL_KIND_FILE_RENAME, .dfd = TL_ARG1(regs), .path = (void *)TL_ARG2(regs), .dfd2 = TL_ARG3(regs), .path2 = (void *)TL_ARG4(regs), .fl = TL_ARG5(regs))
TL_MUT_HANDLER(unlink, .kind = TL_KIND_FILE_UNLINK, .path = (void *)TL_ARG1(regs))
TL_MUT_HANDLER(unlinkat, .kind = TL_KIND_FILE_UNLINK, .dfd = TL_ARG1(regs), .path = (void *)TL_ARG2(regs), .fl = TL_ARG3(regs))
TL_MUT_HANDLER(rmdir, .kind = TL_KIND_FILE_UNLINK, .path = (void *)TL_ARG1(regs), .fl = 0x200 /* AT_REMOVEDIR */)
TL_MUT_HANDLER(chmod, .kind = TL_KIND_FILE_CHMOD, .path = (void *)TL_ARG1(regs), .mode = TL_ARG2(regs))
TL_MUT_HANDLER(fchmod, .kind = TL_KIND_FILE_CHMOD, .dfd = TL_ARG1(regs), .mode = TL_ARG2(regs))
TL_MUT_HANDLER(fchmodat, .kind = TL_KIND_FILE_CHMOD, .dfd = TL_ARG1(regs), .path = (void *)TL_ARG2(regs), .mode = TL_ARG3(regs))
TL_MUT_HANDLER(fchmodat2, .kind = TL_KIND_FILE_CHMOD, .dfd = TL_ARG1(regs), .path = (void *)TL_ARG2(regs), .mode = TL_ARG3(regs), .fl = TL_ARG4(regs))
TL_MUT_HANDLER(chown, .kind = TL_KIND_FILE_CHOWN, .path = (void *)TL_ARG1(regs), .uid = TL_ARG2(regs), .gid = TL_ARG3(regs))
TL_MUT_HANDLER(lchown, .kind = TL_KIND_FILE_CHOWN, .path = (void *)TL_ARG1(regs), .uid = TL_ARG2(regs), .gid = TL_ARG3(regs), .fl = 0x100 /* AT_SYMLINK_NOFOLLOW */)
TL_MUT_HANDLER(fchown, .kind = TL_KIND_FILE_CHOWN, .dfd = TL_ARG1(regs), .uid = TL_ARG2(regs), .gid = TL_ARG3(regs))
TL_MUT_HANDLER(fchownat, .kind = TL_KIND_FILE_CHOWN, .dfd = TL_ARG1(regs), .path = (void *)TL_ARG2(regs), .uid = TL_ARG3(regs), .gid = TL_ARG4(regs), .fl = TL_ARG5(regs))

#endif /* TL_FILE_H */
