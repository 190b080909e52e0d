/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The one definition of every record that crosses the kernel/user boundary.
 *
 * Rules (checked by `bpf/tests/layout.rs` against the compiled object's BTF):
 *  - every struct is naturally aligned with explicit padding fields, never packed;
 *  - event ids are fixed forever: add new ids, never renumber or reuse one;
 *  - variable-length payloads follow the fixed part, in the order the `*_len`
 *    fields are declared, so user space can slice them without copying.
 */
#ifndef TRACELAKE_H
#define TRACELAKE_H

/* Sizes (bytes). User space mirrors these in `tracelake_bpf::abi`. */
#define TL_COMM_LEN 16
#define TL_PATH_MAX 4096   /* longest path copied into a record */
#define TL_ARGV_MAX 4096   /* hard cap of the configurable argv capture */
#define TL_STR_MAX 256     /* mount source/target/fstype, memfd names */
#define TL_PREFIX_MAX 256  /* bytes of a path an allow/deny prefix can match */
#define TL_KIND_MAX 64     /* size of per-kind counter arrays */
#define TL_CGROUP_PATH_MAX 256 /* a cgroup v2 path as tl_cgroup_paths keeps it */

/* Event kinds. Fixed ids, never reused. */
enum tl_kind {
	TL_KIND_EXEC = 1,
	TL_KIND_FORK = 2,
	TL_KIND_EXIT = 3,
	TL_KIND_CLONE_THREAD = 4, /* never emitted alone: counted via aggregation */

	TL_KIND_FILE_OPEN = 10,
	TL_KIND_FILE_RENAME = 11,
	TL_KIND_FILE_UNLINK = 12,
	TL_KIND_FILE_CHMOD = 13,
	TL_KIND_FILE_CHOWN = 14,

	TL_KIND_NET_CONNECT = 20,
	TL_KIND_NET_ACCEPT = 21,
	TL_KIND_NET_LISTEN = 22,
	TL_KIND_NET_CLOSE = 23,
	TL_KIND_NET_UDP_SEND = 24,
	TL_KIND_NET_BIND = 25,

	TL_KIND_SETUID = 30,
	TL_KIND_SETGID = 31,
	TL_KIND_CAPSET = 32,
	TL_KIND_PTRACE = 33,
	TL_KIND_MOUNT = 34,
	TL_KIND_UMOUNT = 35,
	TL_KIND_UNSHARE = 36,
	TL_KIND_SETNS = 37,
	TL_KIND_MODULE_LOAD = 38,
	TL_KIND_BPF = 39,
	TL_KIND_MEMFD_CREATE = 40,
	TL_KIND_CHROOT = 41,
	TL_KIND_PIVOT_ROOT = 42,
};

/* Event classes: bits of tl_config.classes. */
#define TL_CLASS_PROCESS (1u << 0)
#define TL_CLASS_FILE (1u << 1)
#define TL_CLASS_NETWORK (1u << 2)
#define TL_CLASS_PRIVILEGE (1u << 3)

/* tl_config.scope */
#define TL_SCOPE_ALL 0
#define TL_SCOPE_CONTAINERS 1 /* mount namespace differs from the host's */
#define TL_SCOPE_CGROUPS 2    /* only cgroup ids present in tl_cgroups */

/* Values of the path-prefix LPM trie and of tl_config.file_default. */
#define TL_FILE_IGNORE 0      /* no file events under this prefix */
#define TL_FILE_WRITES 1      /* write/create/truncate opens and mutations */
#define TL_FILE_READS 2       /* ... and read-only opens too (secrets, keys) */

/* tl_header.flags */
#define TL_F_AGGREGATED (1u << 0)  /* first occurrence of an aggregation key */
#define TL_F_PATH_TRUNC (1u << 1)  /* a path was cut at TL_PATH_MAX or depth */
#define TL_F_ARGS_TRUNC (1u << 2)  /* argv was longer than the capture size */
#define TL_F_CWD_TRUNC (1u << 3)
#define TL_F_EXE_MEMFD (1u << 4)   /* executable is a memfd (fileless) */
#define TL_F_EXE_DELETED (1u << 5) /* executable file has no link left */
#define TL_F_STR_TRUNC (1u << 6)   /* a string argument was cut */
#define TL_F_AGG_FULL (1u << 7)    /* aggregation table was full: not aggregated */

/* Common header of every ring-buffer record: 88 bytes. */
struct tl_header {
	__u64 ktime_ns;      /* bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME */
	__u64 cgroup_id;     /* cgroup v2 id of the task */
	__u64 proc_start_ns; /* start time of the thread group (pid reuse guard) */
	__u32 kind;          /* enum tl_kind */
	__u32 size;          /* whole record size, fixed part plus payload */
	__u32 pid;           /* thread id */
	__u32 tgid;          /* process id */
	__u32 ppid;          /* real parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u32 pidns;         /* pid namespace inode number */
	__u32 mntns;         /* mount namespace inode number */
	__u32 flags;         /* TL_F_* */
	char comm[TL_COMM_LEN];
};

/* tl_stdio.fd_type: what a standard fd of a new program is. */
#define TL_FD_NONE 0   /* not open */
#define TL_FD_SOCKET 1
#define TL_FD_PIPE 2   /* pipe or FIFO */
#define TL_FD_CHAR 3   /* character device (a tty when its major says so) */
#define TL_FD_FILE 4   /* regular file */
#define TL_FD_OTHER 5  /* directory, block device, anonymous inode, ... */

/* One of fds 0, 1, 2 at exec: a shell whose stdin and stdout are a TCP
 * socket is a reverse shell, whoever made the connection. */
struct tl_stdio {
	__u8 addr[16];  /* socket peer, network byte order (4 bytes for AF_INET) */
	__u32 rdev;     /* TL_FD_CHAR: device number, kernel dev_t (major << 20 | minor) */
	__u16 family;   /* TL_FD_SOCKET: AF_* */
	__u16 port;     /* TL_FD_SOCKET: peer port, host order */
	__u16 protocol; /* TL_FD_SOCKET: IPPROTO_* */
	__u8 fd_type;   /* TL_FD_* */
	__u8 _pad0;
};

/* TL_KIND_EXEC. Payload: exe path, argv (NUL separated), cwd. */
struct tl_exec {
	struct tl_header h;
	__u64 exe_ino;
	__u32 exe_dev;
	__u32 exe_nlink; /* 0: deleted or memfd */
	__u32 path_len;
	__u32 args_len;
	__u32 cwd_len;
	__u32 tty;            /* controlling tty, kernel dev_t (major << 20 | minor); 0: none */
	__u32 sid;            /* session id, initial pid namespace */
	__u32 session_leader; /* 1: the process leads its session (sid == tgid) */
	struct tl_stdio stdio[3];
};

/* TL_KIND_FORK: a new process (not a thread). The header is the parent's. */
struct tl_fork {
	struct tl_header h;
	__u64 child_start_ns;
	__u32 child_pid;
	__u32 _pad0;
};

/* TL_KIND_EXIT: the last thread of a process is gone. */
struct tl_exit {
	struct tl_header h;
	__u32 exit_code; /* status >> 8 & 0xff */
	__u32 signal;    /* terminating signal, 0 if none */
	__u32 core_dump;
	__u32 _pad0;
};

/* File kinds. Payload: path, then path2 (rename target). */
struct tl_file {
	struct tl_header h;
	__s64 ret;       /* syscall return value */
	__u64 ino;       /* inode of the opened file (open only) */
	__u32 dev;
	__u32 open_flags;
	__u32 mode;      /* chmod mode, or create mode of open */
	__u32 owner_uid; /* chown target */
	__u32 owner_gid;
	__u32 path_len;
	__u32 path2_len;
	__u32 _pad0;
};

/* Network kinds. Addresses in network byte order, ports in host order. */
struct tl_net {
	struct tl_header h;
	__s64 ret;
	__u64 bytes_sent;     /* TL_KIND_NET_CLOSE only (tcp_sock) */
	__u64 bytes_received; /* TL_KIND_NET_CLOSE only */
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 family;         /* AF_INET or AF_INET6 */
	__u16 protocol;       /* IPPROTO_TCP / IPPROTO_UDP */
	__u16 sport;
	__u16 dport;
	__u32 fd;
	__u32 path_len;       /* AF_UNIX: socket path follows as payload */
};

/*
 * Privilege and escape kinds: the raw syscall arguments plus up to three
 * strings (mount: source, target, fstype; chroot: path; memfd: name;
 * pivot_root: new_root, put_old).
 */
struct tl_syscall {
	struct tl_header h;
	__s64 ret;
	__u64 args[6];
	__u32 nr;
	__u32 str1_len;
	__u32 str2_len;
	__u32 str3_len;
};

/* Aggregation table key: one (cgroup, process, kind, object). */
struct tl_agg_key {
	__u64 cgroup_id;
	__u32 tgid;
	__u32 kind;
	__u64 object[3]; /* file: dev, ino, intent; net: peer address, port and
			  * protocol; syscalls: nr and arguments */
};

/* Aggregation table value. count includes the emitted first occurrence. */
struct tl_agg_value {
	__u64 count;
	__u64 first_ns;
	__u64 last_ns;
	__u32 _reserved; /* always 0 (filter decisions live in tl_ignore) */
	__u32 _pad0;
};

/* The single entry of the tl_config array map, filled by user space. */
struct tl_config {
	__u32 classes;      /* TL_CLASS_* bits */
	__u32 scope;        /* TL_SCOPE_* */
	__u32 self_tgid;    /* the sensor itself, never traced */
	__u32 host_mntns;   /* for TL_SCOPE_CONTAINERS */
	__u32 argv_max;     /* <= TL_ARGV_MAX */
	__u32 aggregate;    /* 0: emit every event */
	__u32 generation;   /* selects tl_agg_a (even) or tl_agg_b (odd) */
	__u32 file_default; /* TL_FILE_* when no prefix matches */
	__u32 read_watch;   /* 1 when any prefix is TL_FILE_READS */
	__u32 _pad0;
};

/* Key of the path-prefix LPM trie. */
struct tl_prefix_key {
	__u32 prefixlen; /* in bits */
	__u8 data[TL_PREFIX_MAX];
};

/*
 * Value of tl_cgroup_paths (cgroup v2 id -> path), written when a cgroup is
 * created and read by user space on a lookup miss. A path that did not fit is
 * flagged and never used: a prefix of a path is another cgroup's path.
 */
struct tl_cgroup_path {
	__u64 created_ns;  /* CLOCK_BOOTTIME of the mkdir */
	__u32 len;         /* bytes of path, without the NUL */
	__u32 truncated;   /* 1: the path was longer than TL_CGROUP_PATH_MAX - 1 */
	char path[TL_CGROUP_PATH_MAX];
};

/* Per-CPU counters (tl_stats, one entry). */
struct tl_stats {
	__u64 emitted[TL_KIND_MAX];    /* records written to the ring buffer */
	__u64 dropped[TL_KIND_MAX];    /* ring buffer full: record lost, counted */
	__u64 aggregated[TL_KIND_MAX]; /* repeats folded into a summary */
	__u64 agg_full;                /* aggregation table full */
	__u64 filtered;                /* events dropped by a prefix filter */
};

#endif /* TRACELAKE_H */
