/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Maps and helpers shared by every tracelake program. */
#ifndef TL_COMMON_H
#define TL_COMMON_H

#define TL_REC_MAX 16384 /* largest record assembled in the per-CPU heap */
#define TL_PATH_BUF 8192 /* path scratch: walk writes backwards from the middle */
#define TL_PATH_HALF (TL_PATH_BUF / 2)
#define TL_PATH_DEPTH 48 /* path components walked before giving up (flagged) */

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define O_ACCMODE 3
#define O_RDONLY 0
#define O_WRONLY 1
#define O_CREAT 0100
#define O_TRUNC 01000
#define AT_FDCWD -100
#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFCHR 0020000
#define S_IFIFO 0010000

/* Scratch that does not fit the 512-byte BPF stack. Tracepoint programs do
 * not nest on one CPU (bpf_prog_active), so one copy per CPU is enough. */
struct tl_heap {
	__u8 rec[TL_REC_MAX];
	__u8 path[TL_PATH_BUF];
	struct tl_prefix_key pkey;
};

/* What a TCP close needs to be attributed: the header of the process that
 * connected or accepted, since the close often runs in softirq context. */
struct tl_sock_owner {
	struct tl_header h;
};

/* Layout of syscalls:sys_exit_* (and raw_syscalls:sys_exit, whose 8-byte id
 * overlaps nr on little-endian). */
struct tl_sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__s32 _pad;
	__s64 ret;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* user space resizes from config */
} tl_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_config);
} tl_config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_stats);
} tl_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_heap);
} tl_heap SEC(".maps");

/* Two aggregation tables: user space flips tl_config.generation and drains
 * the idle one, so no entry is ever deleted while the kernel updates it and
 * counts stay exact. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tl_agg_key);
	__type(value, struct tl_agg_value);
} tl_agg_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tl_agg_key);
	__type(value, struct tl_agg_value);
} tl_agg_b SEC(".maps");

/* Opens a prefix filter rejected, remembered per process so the next open
 * of the same file costs one small lookup. Keyed by the inode's address and
 * number (both must match, so a recycled inode cannot inherit a decision),
 * and only trusted for the generation it was made in and the next one. */
struct tl_ign_key {
	__u64 inode;
	__u64 ino;
	__u32 tgid;
	__u32 wr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tl_ign_key);
	__type(value, __u32);
} tl_ignore SEC(".maps");

/* A direct-mapped per-CPU front for tl_ignore: a process opening the same
 * rejected file over and over (the common case) hits here with an array
 * index and four compares, no hashing and no shared cache lines. */
#define TL_IGN_SLOTS 64
#define TL_SLOT_IGNORED 1 /* a filter rejected this file for this process */
#define TL_SLOT_WATCHED 2 /* reported: repeats go straight to aggregation */
struct tl_ign_slot {
	struct tl_ign_key k;
	__u64 dev; /* for TL_SLOT_WATCHED: saves two reads per folded open */
	__u32 generation;
	__u32 valid;
};

struct tl_ign_cache {
	struct tl_ign_slot slot[TL_IGN_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_ign_cache);
} tl_ign_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tl_prefix_key);
	__type(value, __u32);
} tl_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} tl_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tl_sock_owner);
} tl_socks SEC(".maps");

/* Never read: it makes the compiler record every kernel->user record in the
 * object's BTF (types used only by locals are left out), so the layout test
 * can compare the Rust mirror with what the compiler laid out. */
struct tl_records {
	struct tl_exec exec;
	struct tl_fork fork;
	struct tl_exit exit;
	struct tl_file file;
	struct tl_net net;
	struct tl_syscall syscall;
	struct tl_cgroup_path cgroup_path;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_records);
} tl_abi SEC(".maps");

static __always_inline struct tl_config *tl_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&tl_config_map, &zero);
}

static __always_inline struct tl_stats *tl_st(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&tl_stats, &zero);
}

static __always_inline struct tl_heap *tl_hp(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&tl_heap, &zero);
}

static __always_inline __u32 tl_kidx(__u32 kind)
{
	return kind & (TL_KIND_MAX - 1);
}

/* True when the current task is out of scope for this class. */
static __always_inline bool tl_skip(struct tl_config *c, __u32 class, struct task_struct *task, __u32 tgid)
{
	if (!(c->classes & class))
		return true;
	if (tgid == c->self_tgid)
		return true;
	if (c->scope == TL_SCOPE_CONTAINERS) {
		__u32 mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
		return mntns == c->host_mntns;
	}
	if (c->scope == TL_SCOPE_CGROUPS) {
		__u64 cg = bpf_get_current_cgroup_id();
		return bpf_map_lookup_elem(&tl_cgroups, &cg) == NULL;
	}
	return false;
}

static __always_inline __u32 tl_pidns(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid up = {};
	bpf_core_read(&up, sizeof(up), &pid->numbers[level & 31]);
	return BPF_CORE_READ(up.ns, ns.inum);
}

static __always_inline void tl_fill_header(struct tl_header *h, __u32 kind, struct task_struct *task)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();
	const struct cred *cred = BPF_CORE_READ(task, cred);

	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->proc_start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	h->kind = kind;
	h->size = 0;
	h->pid = (__u32)id;
	h->tgid = id >> 32;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->euid = BPF_CORE_READ(cred, euid.val);
	h->egid = BPF_CORE_READ(cred, egid.val);
	h->pidns = tl_pidns(task);
	h->mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	h->flags = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Writes a record to the ring buffer; a full ring is counted, never silent. */
static __always_inline void tl_emit(void *rec, __u64 size)
{
	struct tl_header *h = rec;
	struct tl_stats *st = tl_st();
	__u32 k = tl_kidx(h->kind);
	long err;

	if (size > TL_REC_MAX)
		size = TL_REC_MAX;
	h->size = size;
	err = bpf_ringbuf_output(&tl_events, rec, size, 0);
	if (!st)
		return;
	if (err)
		st->dropped[k]++;
	else
		st->emitted[k]++;
}

/* Result of an aggregation lookup. */
#define TL_AGG_NEW 0     /* first occurrence: caller emits */
#define TL_AGG_FOLDED 1  /* repeat: counted, caller does nothing */

/* The clock is read only when a repeat is folded: the ignore path, the
 * hottest of all, skips the helper call. */
static __always_inline int tl_agg_probe_in(void *map, struct tl_agg_key *k)
{
	struct tl_agg_value *v = bpf_map_lookup_elem(map, k);
	if (!v)
		return TL_AGG_NEW;
	__sync_fetch_and_add(&v->count, 1);
	v->last_ns = bpf_ktime_get_boot_ns();
	return TL_AGG_FOLDED;
}

static __always_inline int tl_agg_probe(struct tl_config *c, struct tl_agg_key *k)
{
	int r;
	if (!c->aggregate)
		return TL_AGG_NEW;
	if (c->generation & 1)
		r = tl_agg_probe_in(&tl_agg_b, k);
	else
		r = tl_agg_probe_in(&tl_agg_a, k);
	if (r == TL_AGG_FOLDED) {
		struct tl_stats *st = tl_st();
		if (st)
			st->aggregated[tl_kidx(k->kind)]++;
	}
	return r;
}

static __always_inline int tl_agg_insert_in(void *map, struct tl_agg_key *k, struct tl_agg_value *nv)
{
	long err = bpf_map_update_elem(map, k, nv, BPF_NOEXIST);
	if (err == -17 /* EEXIST: another CPU inserted it first */) {
		struct tl_agg_value *v = bpf_map_lookup_elem(map, k);
		if (v)
			__sync_fetch_and_add(&v->count, 1);
		return TL_AGG_FOLDED;
	}
	return err ? -1 : TL_AGG_NEW;
}

/* Remembers a first occurrence. Returns TL_AGG_NEW
 * when the caller should emit with TL_F_AGGREGATED, TL_AGG_FOLDED when a
 * racing CPU won, -1 when the table is full (emit unaggregated). */
static __always_inline int tl_agg_insert(struct tl_config *c, struct tl_agg_key *k, __u64 now)
{
	struct tl_agg_value nv = { .count = 1, .first_ns = now, .last_ns = now };
	int r;
	if (!c->aggregate)
		return -1;
	if (c->generation & 1)
		r = tl_agg_insert_in(&tl_agg_b, k, &nv);
	else
		r = tl_agg_insert_in(&tl_agg_a, k, &nv);
	if (r < 0) {
		struct tl_stats *st = tl_st();
		if (st)
			st->agg_full++;
	}
	return r;
}

/* Emission flag for a first occurrence given tl_agg_insert's result. */
static __always_inline __u32 tl_agg_flag(struct tl_config *c, int r)
{
	if (!c->aggregate)
		return 0;
	return r == TL_AGG_NEW ? TL_F_AGGREGATED : TL_F_AGG_FULL;
}

/* Syscall arguments of the current task, read at sys_exit. */
static __always_inline struct pt_regs *tl_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

#define TL_ARG1(r) BPF_CORE_READ(r, di)
#define TL_ARG2(r) BPF_CORE_READ(r, si)
#define TL_ARG3(r) BPF_CORE_READ(r, dx)
#define TL_ARG4(r) BPF_CORE_READ(r, r10)
#define TL_ARG5(r) BPF_CORE_READ(r, r8)
#define TL_ARG6(r) BPF_CORE_READ(r, r9)

static __always_inline struct file *tl_fd_file(struct task_struct *task, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file **fds;
	struct file *f = NULL;

	if (fd < 0 || fd >= max)
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* The same through a BTF-typed task (bpf_get_current_task_btf): plain loads
 * instead of one probe_read helper call per pointer hop, for hot paths. */
static __always_inline struct file *tl_fd_file_btf(struct task_struct *task, long fd)
{
	struct fdtable *fdt = task->files->fdt;
	struct file *f = NULL;

	if (fd < 0 || fd >= fdt->max_fds)
		return NULL;
	/* Variable offsets into BTF pointers are not allowed: read the slot. */
	bpf_probe_read_kernel(&f, sizeof(f), (void *)((unsigned long)fdt->fd + fd * sizeof(f)));
	return f;
}

#endif /* TL_COMMON_H */
