//! Which program goes on which hook. One table, used for the sensor object
//! and for the no-op benchmark object alike.

use crate::config::ClassName;

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Attach {
    /// Classic tracepoints: (category, name); one program may take several.
    TracePoints(&'static [(&'static str, &'static str)]),
    /// A BTF-typed raw tracepoint.
    BtfTracePoint(&'static str),
}

/// One program of the object and its hooks.
#[derive(Clone, Copy, Debug)]
pub struct Hook {
    pub program: &'static str,
    pub attach: Attach,
    pub class: ClassName,
}

const fn tp(program: &'static str, class: ClassName, points: &'static [(&'static str, &'static str)]) -> Hook {
    Hook { program, attach: Attach::TracePoints(points), class }
}

/// Syscalls whose exit the privilege program watches.
pub const PRIVILEGE_SYSCALLS: &[(&str, &str)] = &[
    ("syscalls", "sys_exit_setuid"),
    ("syscalls", "sys_exit_setgid"),
    ("syscalls", "sys_exit_setreuid"),
    ("syscalls", "sys_exit_setregid"),
    ("syscalls", "sys_exit_setresuid"),
    ("syscalls", "sys_exit_setresgid"),
    ("syscalls", "sys_exit_setfsuid"),
    ("syscalls", "sys_exit_setfsgid"),
    ("syscalls", "sys_exit_capset"),
    ("syscalls", "sys_exit_ptrace"),
    ("syscalls", "sys_exit_mount"),
    ("syscalls", "sys_exit_umount"),
    ("syscalls", "sys_exit_unshare"),
    ("syscalls", "sys_exit_setns"),
    ("syscalls", "sys_exit_init_module"),
    ("syscalls", "sys_exit_finit_module"),
    ("syscalls", "sys_exit_bpf"),
    ("syscalls", "sys_exit_memfd_create"),
    ("syscalls", "sys_exit_chroot"),
    ("syscalls", "sys_exit_pivot_root"),
];

/// The module-load fallback for kernels without module syscall tracepoints.
pub const MODULE_FALLBACK: Hook =
    Hook { program: "tl_module_exit", attach: Attach::BtfTracePoint("sys_exit"), class: ClassName::Privilege };

/// Every program of tracelake.bpf.o except the fallback.
pub const HOOKS: &[Hook] = &[
    tp("tl_exec", ClassName::Process, &[("sched", "sched_process_exec")]),
    Hook { program: "tl_fork", attach: Attach::BtfTracePoint("sched_process_fork"), class: ClassName::Process },
    Hook { program: "tl_exit", attach: Attach::BtfTracePoint("sched_process_exit"), class: ClassName::Process },
    tp("tl_openat_exit", ClassName::File, &[("syscalls", "sys_exit_openat")]),
    tp("tl_open_legacy_exit", ClassName::File, &[("syscalls", "sys_exit_open")]),
    tp("tl_creat_exit", ClassName::File, &[("syscalls", "sys_exit_creat")]),
    tp("tl_openat2_exit", ClassName::File, &[("syscalls", "sys_exit_openat2")]),
    tp("tl_rename_exit", ClassName::File, &[("syscalls", "sys_exit_rename")]),
    tp("tl_renameat_exit", ClassName::File, &[("syscalls", "sys_exit_renameat")]),
    tp("tl_renameat2_exit", ClassName::File, &[("syscalls", "sys_exit_renameat2")]),
    tp("tl_unlink_exit", ClassName::File, &[("syscalls", "sys_exit_unlink")]),
    tp("tl_unlinkat_exit", ClassName::File, &[("syscalls", "sys_exit_unlinkat")]),
    tp("tl_rmdir_exit", ClassName::File, &[("syscalls", "sys_exit_rmdir")]),
    tp("tl_chmod_exit", ClassName::File, &[("syscalls", "sys_exit_chmod")]),
    tp("tl_fchmod_exit", ClassName::File, &[("syscalls", "sys_exit_fchmod")]),
    tp("tl_fchmodat_exit", ClassName::File, &[("syscalls", "sys_exit_fchmodat")]),
    tp("tl_fchmodat2_exit", ClassName::File, &[("syscalls", "sys_exit_fchmodat2")]),
    tp("tl_chown_exit", ClassName::File, &[("syscalls", "sys_exit_chown")]),
    tp("tl_lchown_exit", ClassName::File, &[("syscalls", "sys_exit_lchown")]),
    tp("tl_fchown_exit", ClassName::File, &[("syscalls", "sys_exit_fchown")]),
    tp("tl_fchownat_exit", ClassName::File, &[("syscalls", "sys_exit_fchownat")]),
    tp("tl_connect_exit", ClassName::Network, &[("syscalls", "sys_exit_connect")]),
    tp("tl_accept_exit", ClassName::Network, &[("syscalls", "sys_exit_accept")]),
    tp("tl_accept4_exit", ClassName::Network, &[("syscalls", "sys_exit_accept4")]),
    tp("tl_listen_exit", ClassName::Network, &[("syscalls", "sys_exit_listen")]),
    tp("tl_bind_exit", ClassName::Network, &[("syscalls", "sys_exit_bind")]),
    tp("tl_sendto_exit", ClassName::Network, &[("syscalls", "sys_exit_sendto")]),
    tp("tl_sock_state", ClassName::Network, &[("sock", "inet_sock_set_state")]),
    tp("tl_priv_exit", ClassName::Privilege, PRIVILEGE_SYSCALLS),
];
