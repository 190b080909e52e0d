/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Path reconstruction from dentries and the prefix filter. */
#ifndef TL_PATH_H
#define TL_PATH_H

struct tl_walk {
	struct dentry *dentry;
	struct mount *mnt;
	struct mount *mnt_parent;
	struct dentry *mnt_root;
	__u32 off;
	__u32 flags;
};

/* One path component per bpf_loop step: a plain loop makes the verifier
 * explore every branch combination and exceeds its budget. */
static long tl_walk_step(__u32 i, void *data)
{
	struct tl_walk *w = data;
	struct tl_heap *heap = tl_hp();
	/* Locals: CO-RE relocations must not see the tl_walk field accesses. */
	struct dentry *dentry = w->dentry;
	struct mount *mnt = w->mnt;
	struct dentry *parent;
	struct qstr name;
	__u32 len, off;

	if (!heap)
		return 1;
	parent = BPF_CORE_READ(dentry, d_parent);
	/* A dentry that is its own parent but not a mount root is a pseudo
	 * file (memfd, deleted-and-disconnected): its name is all there is. */
	bool last = dentry == parent && dentry != w->mnt_root;
	if (!last && dentry == w->mnt_root) {
		struct mount *mp = w->mnt_parent;
		if (mnt == mp)
			return 1; /* root of the namespace */
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = mp;
		w->mnt_parent = BPF_CORE_READ(mp, mnt_parent);
		w->mnt_root = BPF_CORE_READ(mp, mnt.mnt_root);
		return 0;
	}
	name = BPF_CORE_READ(dentry, d_name);
	len = name.len & 0xff;
	off = w->off;
	if (len == 0 || len + 1 > off) {
		w->flags |= TL_F_PATH_TRUNC;
		return 1;
	}
	off -= len + 1;
	bpf_probe_read_kernel(&heap->path[(off + 1) & (TL_PATH_HALF - 1)], len, name.name);
	heap->path[off & (TL_PATH_HALF - 1)] = '/';
	w->off = off;
	w->dentry = parent;
	if (last)
		return 1;
	if (i == TL_PATH_DEPTH - 1)
		w->flags |= TL_F_PATH_TRUNC;
	return 0;
}

/*
 * Walks dentry -> root (crossing mounts) and writes the path backwards so it
 * ends at heap->path[TL_PATH_HALF]. Returns the start offset; the path is
 * heap->path[off .. TL_PATH_HALF). The walk stops at the task's namespace
 * root, so a process in a container sees container paths.
 */
static __always_inline __u32 tl_path_walk(struct tl_heap *heap, struct dentry *dentry, struct vfsmount *vfsmnt, __u32 *flags)
{
	struct tl_walk w = {};
	struct mount *mnt;

	if (!heap || !dentry)
		return TL_PATH_HALF;
	mnt = container_of(vfsmnt, struct mount, mnt);
	w.dentry = dentry;
	w.mnt = mnt;
	w.mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
	w.mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	w.off = TL_PATH_HALF;
	bpf_loop(TL_PATH_DEPTH, tl_walk_step, &w, 0);
	*flags |= w.flags;
	if (w.off >= TL_PATH_HALF) {
		w.off = TL_PATH_HALF - 1;
		heap->path[TL_PATH_HALF - 1] = '/';
	}
	return w.off;
}

static __always_inline __u32 tl_file_path(struct tl_heap *heap, struct file *f, __u32 *flags)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *m = BPF_CORE_READ(f, f_path.mnt);
	return tl_path_walk(heap, d, m, flags);
}

/*
 * Appends "/" + a user-space relative path after TL_PATH_HALF, so a path
 * relative to a directory becomes absolute. Returns the end offset.
 */
static __always_inline __u32 tl_path_append_user(struct tl_heap *heap, const char *upath, __u32 *flags)
{
	long n;
	heap->path[TL_PATH_HALF] = '/';
	n = bpf_probe_read_user_str(&heap->path[TL_PATH_HALF + 1], TL_PATH_HALF - 1, upath);
	if (n <= 1)
		return TL_PATH_HALF;
	if (n >= TL_PATH_HALF - 1)
		*flags |= TL_F_PATH_TRUNC;
	return TL_PATH_HALF + 1 + (__u32)(n - 1);
}

/*
 * Resolves a user path argument of an *at() syscall into heap->path: an
 * absolute path is copied as is, a relative one is joined to the dirfd's
 * path (or the cwd for AT_FDCWD). Writes the start offset to *start and
 * returns the end offset.
 */
static __always_inline __u32 tl_user_path(struct tl_heap *heap, struct task_struct *task, long dfd, const char *upath, __u32 *start, __u32 *flags)
{
	char first = 0;
	long n;

	bpf_probe_read_user(&first, 1, upath);
	if (first == '/') {
		n = bpf_probe_read_user_str(&heap->path[TL_PATH_HALF], TL_PATH_HALF, upath);
		*start = TL_PATH_HALF;
		if (n <= 1)
			return TL_PATH_HALF;
		if (n >= TL_PATH_HALF)
			*flags |= TL_F_PATH_TRUNC;
		return TL_PATH_HALF + (__u32)(n - 1);
	}
	if (dfd == AT_FDCWD) {
		struct dentry *d = BPF_CORE_READ(task, fs, pwd.dentry);
		struct vfsmount *m = BPF_CORE_READ(task, fs, pwd.mnt);
		*start = tl_path_walk(heap, d, m, flags);
	} else {
		struct file *f = tl_fd_file(task, dfd);
		*start = f ? tl_file_path(heap, f, flags) : TL_PATH_HALF;
	}
	/* The walk yields "/" for the root itself: avoid "//name". */
	if (*start == TL_PATH_HALF - 1)
		*start = TL_PATH_HALF;
	return tl_path_append_user(heap, upath, flags);
}

/* Prefix action (TL_FILE_*) of heap->path[start..end). */
static __always_inline __u32 tl_prefix_action(struct tl_config *c, struct tl_heap *heap, __u32 start, __u32 end)
{
	__u32 len = end - start;
	__u32 *v;

	if (len == 0)
		return c->file_default;
	if (len > TL_PREFIX_MAX)
		len = TL_PREFIX_MAX;
	/* The source of probe_read is not range-checked; the destination is. */
	bpf_probe_read_kernel(heap->pkey.data, ((len - 1) & (TL_PREFIX_MAX - 1)) + 1, &heap->path[start & (TL_PATH_BUF - 1)]);
	heap->pkey.prefixlen = len * 8;
	v = bpf_map_lookup_elem(&tl_prefixes, &heap->pkey);
	return v ? *v : c->file_default;
}

/* Copies heap->path[start..end) to dst (at most TL_PATH_MAX - 1 bytes, so a
 * mask proves the bound to the verifier); returns the bytes copied. */
static __always_inline __u32 tl_copy_path(void *dst, struct tl_heap *heap, __u32 start, __u32 end, __u32 *flags)
{
	__u32 len = end - start;
	if (len > TL_PATH_MAX - 1) {
		len = TL_PATH_MAX - 1;
		*flags |= TL_F_PATH_TRUNC;
	}
	len &= TL_PATH_MAX - 1;
	if (len == 0)
		return 0;
	bpf_probe_read_kernel(dst, len, &heap->path[start & (TL_PATH_BUF - 1)]);
	return len;
}

#endif /* TL_PATH_H */
