/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Network activity: connect, accept, listen, bind, UDP send, TCP close. */
#ifndef TL_NET_H
#define TL_NET_H

#define TCP_CLOSE 7

static __always_inline struct sock *tl_fd_sock(struct task_struct *task, long fd)
{
	struct file *f = tl_fd_file(task, fd);
	struct socket *s;
	umode_t mode;

	if (!f)
		return NULL;
	mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	s = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(s, sk);
}

/* Local and peer addresses as the socket knows them. */
static __always_inline void tl_sock_addrs(struct sock *sk, struct tl_net *n)
{
	n->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	n->protocol = BPF_CORE_READ(sk, sk_protocol);
	n->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	n->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (n->family == AF_INET) {
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(n->saddr, &s, 4);
		__builtin_memcpy(n->daddr, &d, 4);
	} else if (n->family == AF_INET6) {
		bpf_core_read(n->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(n->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* Peer from a user sockaddr (connect, sendto, bind); returns the family. */
static __always_inline __u16 tl_user_sockaddr(const void *uaddr, __u8 *addr, __u16 *port)
{
	struct sockaddr_in6 sa = {};
	if (!uaddr || bpf_probe_read_user(&sa, sizeof(sa), uaddr))
		return 0;
	if (sa.sin6_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&sa;
		__builtin_memcpy(addr, &in->sin_addr.s_addr, 4);
		*port = bpf_ntohs(in->sin_port);
	} else if (sa.sin6_family == AF_INET6) {
		__builtin_memcpy(addr, &sa.sin6_addr, 16);
		*port = bpf_ntohs(sa.sin6_port);
	}
	return sa.sin6_family;
}

static __always_inline __u64 tl_fnv(__u64 h, const __u8 *p, __u32 n)
{
	for (__u32 i = 0; i < n && i < 108; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Net record in heap->rec plus its aggregation key; the caller filled the
 * addresses. Returns false when the event folds into an earlier one. */
static __always_inline bool tl_net_first(struct tl_config *c, struct tl_net *n, __u32 kind, __u32 tgid, __u64 now, __u64 extra, __u32 *flags)
{
	struct tl_agg_key k = {};
	__u64 a0, a1;
	int r;

	__builtin_memcpy(&a0, &n->daddr[0], 8);
	__builtin_memcpy(&a1, &n->daddr[8], 8);
	k.cgroup_id = bpf_get_current_cgroup_id();
	k.tgid = tgid;
	k.kind = kind;
	k.object[0] = a0 ^ extra;
	k.object[1] = a1;
	/* The ephemeral side's port would make every connection unique. */
	k.object[2] = (kind == TL_KIND_NET_CONNECT || kind == TL_KIND_NET_UDP_SEND ? (__u64)n->dport : (__u64)n->sport << 16) | ((__u64)n->family << 32) | ((__u64)n->protocol << 48) |
		      ((n->ret < 0 ? 1ULL : 0) << 63);
	if (tl_agg_probe(c, &k) != TL_AGG_NEW)
		return false;
	r = tl_agg_insert(c, &k, now);
	if (r == TL_AGG_FOLDED)
		return false;
	*flags |= tl_agg_flag(c, r);
	return true;
}

/* Remembers who owns a TCP socket so its close (often in softirq) is
 * attributed to the right process. */
static __always_inline void tl_track_sock(struct sock *sk, struct tl_header *h)
{
	__u64 key = (__u64)sk;
	bpf_map_update_elem(&tl_socks, &key, h, BPF_ANY);
}

enum tl_net_op { TL_OP_CONNECT, TL_OP_ACCEPT, TL_OP_LISTEN, TL_OP_BIND, TL_OP_SENDTO };

static __noinline int tl_net_exit(long ret, __u32 op, long fd, const void *uaddr)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tl_config *c = tl_cfg();
	struct tl_heap *heap;
	struct tl_net *n;
	struct sock *sk;
	__u32 kind, flags = 0, plen = 0;
	__u64 now, extra = 0;
	__u16 ufam = 0, uport = 0;
	__u8 uaddr_buf[16] = {};

	if (!c || tl_skip(c, TL_CLASS_NETWORK, task, tgid))
		return 0;
	switch (op) {
	case TL_OP_CONNECT: kind = TL_KIND_NET_CONNECT; break;
	case TL_OP_ACCEPT: kind = TL_KIND_NET_ACCEPT; break;
	case TL_OP_LISTEN: kind = TL_KIND_NET_LISTEN; break;
	case TL_OP_BIND: kind = TL_KIND_NET_BIND; break;
	default: kind = TL_KIND_NET_UDP_SEND; break;
	}
	if (op == TL_OP_ACCEPT) {
		if (ret < 0)
			return 0;
		fd = ret;
	}
	sk = tl_fd_sock(task, fd);
	if (!sk)
		return 0;
	heap = tl_hp();
	if (!heap)
		return 0;
	n = (struct tl_net *)heap->rec;
	__builtin_memset(n, 0, sizeof(*n));
	tl_sock_addrs(sk, n);
	if (op == TL_OP_SENDTO && n->protocol != IPPROTO_UDP)
		return 0;
	if (n->family != AF_INET && n->family != AF_INET6 && n->family != AF_UNIX)
		return 0;
	if (uaddr && (op == TL_OP_CONNECT || op == TL_OP_SENDTO || op == TL_OP_BIND)) {
		ufam = tl_user_sockaddr(uaddr, uaddr_buf, &uport);
		if (ufam == AF_INET || ufam == AF_INET6) {
			if (op == TL_OP_BIND) {
				__builtin_memcpy(n->saddr, uaddr_buf, 16);
				n->sport = uport;
			} else {
				__builtin_memcpy(n->daddr, uaddr_buf, 16);
				n->dport = uport;
			}
		}
	}
	if (n->family == AF_UNIX) {
		/* Unix sockets matter for runtime-socket access: keep the path. */
		if (op != TL_OP_CONNECT || !uaddr)
			return 0;
		long r = bpf_probe_read_user_str(heap->rec + sizeof(*n), 108, uaddr + 2);
		plen = r > 1 ? (r - 1) & 127 : 0;
		extra = tl_fnv(14695981039346656037ULL, heap->rec + sizeof(*n), plen);
		if (plen == 0)
			return 0;
	}
	n->ret = ret;
	n->fd = fd;
	n->path_len = plen;
	now = bpf_ktime_get_boot_ns();
	if (!tl_net_first(c, n, kind, tgid, now, extra, &flags))
		return 0;
	tl_fill_header(&n->h, kind, task);
	n->h.flags = flags;
	if ((op == TL_OP_CONNECT || op == TL_OP_ACCEPT) && n->protocol == IPPROTO_TCP && (ret == 0 || ret == -115 || op == TL_OP_ACCEPT))
		tl_track_sock(sk, &n->h);
	tl_emit(n, sizeof(*n) + plen);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tl_connect_exit(struct tl_sys_exit_ctx *ctx)
{
	struct pt_regs *regs = tl_regs();
	return tl_net_exit(ctx->ret, TL_OP_CONNECT, TL_ARG1(regs), (void *)TL_ARG2(regs));
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tl_accept_exit(struct tl_sys_exit_ctx *ctx)
{
	return tl_net_exit(ctx->ret, TL_OP_ACCEPT, -1, NULL);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tl_accept4_exit(struct tl_sys_exit_ctx *ctx)
{
	return tl_net_exit(ctx->ret, TL_OP_ACCEPT, -1, NULL);
}

SEC("tracepoint/syscalls/sys_exit_listen")
int tl_listen_exit(struct tl_sys_exit_ctx *ctx)
{
	struct pt_regs *regs = tl_regs();
	return tl_net_exit(ctx->ret, TL_OP_LISTEN, TL_ARG1(regs), NULL);
}

SEC("tracepoint/syscalls/sys_exit_bind")
int tl_bind_exit(struct tl_sys_exit_ctx *ctx)
{
	struct pt_regs *regs = tl_regs();
	return tl_net_exit(ctx->ret, TL_OP_BIND, TL_ARG1(regs), (void *)TL_ARG2(regs));
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int tl_sendto_exit(struct tl_sys_exit_ctx *ctx)
{
	struct pt_regs *regs = tl_regs();
	return tl_net_exit(ctx->ret, TL_OP_SENDTO, TL_ARG1(regs), (void *)TL_ARG5(regs));
}

/* TCP close, attributed to the process that opened the connection. */
SEC("tracepoint/sock/inet_sock_set_state")
int tl_sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct tl_config *c = tl_cfg();
	struct tl_sock_owner *o;
	struct tl_net n = {};
	struct tcp_sock *tp;
	__u64 key;

	if (!c || !(c->classes & TL_CLASS_NETWORK))
		return 0;
	if (ctx->newstate != TCP_CLOSE || ctx->protocol != IPPROTO_TCP)
		return 0;
	key = (__u64)ctx->skaddr;
	o = bpf_map_lookup_elem(&tl_socks, &key);
	if (!o)
		return 0;
	__builtin_memcpy(&n.h, &o->h, sizeof(n.h));
	bpf_map_delete_elem(&tl_socks, &key);
	n.h.ktime_ns = bpf_ktime_get_boot_ns();
	n.h.kind = TL_KIND_NET_CLOSE;
	n.h.flags = 0;
	n.family = ctx->family;
	n.protocol = IPPROTO_TCP;
	n.sport = ctx->sport;
	n.dport = ctx->dport;
	/* The verifier forbids loads through a moved ctx pointer: copy via helper. */
	if (ctx->family == AF_INET) {
		bpf_probe_read_kernel(n.saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(n.daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(n.saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(n.daddr, 16, ctx->daddr_v6);
	}
	tp = (struct tcp_sock *)ctx->skaddr;
	n.bytes_sent = BPF_CORE_READ(tp, bytes_acked);
	n.bytes_received = BPF_CORE_READ(tp, bytes_received);
	tl_emit(&n, sizeof(n));
	return 0;
}

#endif /* TL_NET_H */
