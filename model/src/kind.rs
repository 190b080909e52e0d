//! Event kinds and classes. Matches on Kind list every variant (no `_` arm),
//! so adding a kind breaks the build wherever it must be handled.

/// The four event classes the sensor can enable separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Process,
    File,
    Network,
    Privilege,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Process => "process",
            Class::File => "file",
            Class::Network => "network",
            Class::Privilege => "privilege",
        }
    }
}

/// Every kind of event. Ids below 100 are the kernel's (`enum tl_kind` in
/// bpf/include/tracelake.h); 100 and up are made in user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Exec,
    Fork,
    Exit,
    CloneThread,
    FileOpen,
    FileRename,
    FileUnlink,
    FileChmod,
    FileChown,
    NetConnect,
    NetAccept,
    NetListen,
    NetClose,
    NetUdpSend,
    NetBind,
    Setuid,
    Setgid,
    Capset,
    Ptrace,
    Mount,
    Umount,
    Unshare,
    Setns,
    ModuleLoad,
    Bpf,
    MemfdCreate,
    Chroot,
    PivotRoot,
    ProcessSnapshot,
}

impl Kind {
    pub const ALL: [Kind; 29] = [
        Kind::Exec,
        Kind::Fork,
        Kind::Exit,
        Kind::CloneThread,
        Kind::FileOpen,
        Kind::FileRename,
        Kind::FileUnlink,
        Kind::FileChmod,
        Kind::FileChown,
        Kind::NetConnect,
        Kind::NetAccept,
        Kind::NetListen,
        Kind::NetClose,
        Kind::NetUdpSend,
        Kind::NetBind,
        Kind::Setuid,
        Kind::Setgid,
        Kind::Capset,
        Kind::Ptrace,
        Kind::Mount,
        Kind::Umount,
        Kind::Unshare,
        Kind::Setns,
        Kind::ModuleLoad,
        Kind::Bpf,
        Kind::MemfdCreate,
        Kind::Chroot,
        Kind::PivotRoot,
        Kind::ProcessSnapshot,
    ];

    /// The fixed numeric id (never reused).
    pub fn id(self) -> u32 {
        match self {
            Kind::Exec => 1,
            Kind::Fork => 2,
            Kind::Exit => 3,
            Kind::CloneThread => 4,
            Kind::FileOpen => 10,
            Kind::FileRename => 11,
            Kind::FileUnlink => 12,
            Kind::FileChmod => 13,
            Kind::FileChown => 14,
            Kind::NetConnect => 20,
            Kind::NetAccept => 21,
            Kind::NetListen => 22,
            Kind::NetClose => 23,
            Kind::NetUdpSend => 24,
            Kind::NetBind => 25,
            Kind::Setuid => 30,
            Kind::Setgid => 31,
            Kind::Capset => 32,
            Kind::Ptrace => 33,
            Kind::Mount => 34,
            Kind::Umount => 35,
            Kind::Unshare => 36,
            Kind::Setns => 37,
            Kind::ModuleLoad => 38,
            Kind::Bpf => 39,
            Kind::MemfdCreate => 40,
            Kind::Chroot => 41,
            Kind::PivotRoot => 42,
            Kind::ProcessSnapshot => 100,
        }
    }

    pub fn from_id(id: u32) -> Option<Kind> {
        // A table lookup keeps decoding branch-light; ids are checked by tests.
        Kind::ALL.iter().copied().find(|k| k.id() == id)
    }

    /// The JSON `kind` value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Fork => "fork",
            Kind::Exit => "exit",
            Kind::CloneThread => "clone_thread",
            Kind::FileOpen => "file_open",
            Kind::FileRename => "file_rename",
            Kind::FileUnlink => "file_unlink",
            Kind::FileChmod => "file_chmod",
            Kind::FileChown => "file_chown",
            Kind::NetConnect => "net_connect",
            Kind::NetAccept => "net_accept",
            Kind::NetListen => "net_listen",
            Kind::NetClose => "net_close",
            Kind::NetUdpSend => "net_udp_send",
            Kind::NetBind => "net_bind",
            Kind::Setuid => "setuid",
            Kind::Setgid => "setgid",
            Kind::Capset => "capset",
            Kind::Ptrace => "ptrace",
            Kind::Mount => "mount",
            Kind::Umount => "umount",
            Kind::Unshare => "unshare",
            Kind::Setns => "setns",
            Kind::ModuleLoad => "module_load",
            Kind::Bpf => "bpf",
            Kind::MemfdCreate => "memfd_create",
            Kind::Chroot => "chroot",
            Kind::PivotRoot => "pivot_root",
            Kind::ProcessSnapshot => "process_snapshot",
        }
    }

    pub fn class(self) -> Class {
        match self {
            Kind::Exec | Kind::Fork | Kind::Exit | Kind::CloneThread | Kind::ProcessSnapshot => Class::Process,
            Kind::FileOpen | Kind::FileRename | Kind::FileUnlink | Kind::FileChmod | Kind::FileChown => Class::File,
            Kind::NetConnect
            | Kind::NetAccept
            | Kind::NetListen
            | Kind::NetClose
            | Kind::NetUdpSend
            | Kind::NetBind => Class::Network,
            Kind::Setuid
            | Kind::Setgid
            | Kind::Capset
            | Kind::Ptrace
            | Kind::Mount
            | Kind::Umount
            | Kind::Unshare
            | Kind::Setns
            | Kind::ModuleLoad
            | Kind::Bpf
            | Kind::MemfdCreate
            | Kind::Chroot
            | Kind::PivotRoot => Class::Privilege,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert!(seen.insert(k.id()), "duplicate id {}", k.id());
            assert_eq!(Kind::from_id(k.id()), Some(k));
        }
        assert_eq!(Kind::from_id(0), None);
        assert_eq!(Kind::from_id(99), None);
    }
}
