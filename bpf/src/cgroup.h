/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * cgroup v2 id -> path, recorded when the cgroup is created.
 *
 * User space names a container from its cgroup path. Resolving an id to a
 * path afterwards takes open_by_handle_at, which needs CAP_DAC_READ_SEARCH,
 * a capability the agent does not hold; and the cgroup may be gone by the
 * time its first event is read. The runtime creates a container's cgroup
 * before it moves the container's first process in, so recording every
 * mkdir here means the path is known before that process's first event.
 */
#ifndef TL_CGROUP_H
#define TL_CGROUP_H

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384); /* user space sizes it from enricher.cache_entries */
	__type(key, __u64);
	__type(value, struct tl_cgroup_path);
} tl_cgroup_paths SEC(".maps");

/* Scratch for the value: larger than the stack allows beside the helpers'
 * frames. Only this program uses it and a program does not nest on its CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_cgroup_path);
} tl_cgroup_scratch SEC(".maps");

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(tl_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	/* The default (v2) hierarchy is hierarchy 0; v1 hierarchies number
	 * their cgroups on their own, so their ids would collide with v2's. */
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
		return 0;
	__u64 id = BPF_CORE_READ(cgrp, kn, id);
	__u32 zero = 0;
	struct tl_cgroup_path *v = bpf_map_lookup_elem(&tl_cgroup_scratch, &zero);
	if (!v)
		return 0;
	long n = bpf_probe_read_kernel_str(v->path, sizeof(v->path), path);
	if (n <= 0)
		return 0;
	v->created_ns = bpf_ktime_get_boot_ns();
	v->len = (__u32)(n - 1);
	/* n counts the NUL: a full buffer means the copy stopped early. */
	v->truncated = n >= (long)sizeof(v->path) ? 1 : 0;
	bpf_map_update_elem(&tl_cgroup_paths, &id, v, BPF_ANY);
	return 0;
}

#endif /* TL_CGROUP_H */
