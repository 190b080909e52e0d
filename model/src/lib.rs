//! The event model: what every tracelake component sees of an event.
//!
//! Events borrow their strings (paths, argv) from the buffer they were
//! decoded from, so the hot path allocates nothing; `json` renders them as
//! the stable JSON-lines format documented in `docs/events.md`.

pub mod json;
mod kind;
mod owned;
pub mod session;

pub use kind::{Class, Kind};
pub use owned::{OwnedBody, OwnedEvent};
pub use session::{Fd, FdType, Launch, Session, Stdio, Tty};

/// Who did it: the process identity every event carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// CLOCK_BOOTTIME of the event, nanoseconds.
    pub ktime_ns: u64,
    /// cgroup v2 id (inode of the cgroup directory).
    pub cgroup_id: u64,
    /// Start time of the process (CLOCK_BOOTTIME ns): with tgid, a unique key.
    pub proc_start_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub pidns: u32,
    pub mntns: u32,
    pub comm: [u8; 16],
}

impl Subject {
    /// The comm without its NUL padding.
    pub fn comm(&self) -> &[u8] {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(self.comm.len());
        &self.comm[..end]
    }
}

/// Present on a summary record: the repeats folded in the kernel since the
/// first occurrence (which was emitted on its own, with count 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub first_ns: u64,
    pub last_ns: u64,
}

/// An IP endpoint as bytes: 4 used for IPv4, 16 for IPv6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u16,
}

/// Kind-specific fields. Strings are raw bytes: paths and argv need not be
/// UTF-8, and the JSON writer escapes them losslessly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Exec {
        exe: &'a [u8],
        /// argv, NUL separated, as the process laid it out.
        args: &'a [u8],
        cwd: &'a [u8],
        exe_ino: u64,
        exe_dev: u32,
        exe_nlink: u32,
        /// Terminal, session and standard fds; None from an agent that did not send them (Kafka `records-1`).
        launch: Option<Launch>,
    },
    Fork {
        child_pid: u32,
        child_start_ns: u64,
    },
    Exit {
        exit_code: u32,
        signal: u32,
        core_dump: bool,
    },
    /// Thread creations, only ever reported as a count.
    Threads,
    File {
        ret: i64,
        path: &'a [u8],
        /// Rename target.
        path2: &'a [u8],
        ino: u64,
        dev: u32,
        open_flags: u32,
        mode: u32,
        owner_uid: u32,
        owner_gid: u32,
    },
    Net {
        ret: i64,
        family: u16,
        protocol: u16,
        local: Endpoint,
        remote: Endpoint,
        unix_path: &'a [u8],
        bytes_sent: u64,
        bytes_received: u64,
    },
    Syscall {
        nr: u32,
        ret: i64,
        args: [u64; 6],
        str1: &'a [u8],
        str2: &'a [u8],
        str3: &'a [u8],
    },
    /// A process that was already running when the sensor started.
    Snapshot {
        exe: &'a [u8],
        args: &'a [u8],
        cwd: &'a [u8],
        /// None when /proc could not tell, or from an agent that did not send it.
        launch: Option<Launch>,
    },
}

/// One event, as every component downstream of the sensor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: Kind,
    pub subject: Subject,
    /// Raw TL_F_* flags of the record (see `flags`).
    pub flags: u32,
    /// Occurrences this record stands for: 1, or the repeats of a summary.
    pub count: u64,
    /// Some on summary records.
    pub aggregate: Option<Aggregate>,
    pub body: Body<'a>,
}

/// Flag bits of `Event::flags`, with their JSON names.
pub mod flags {
    pub const AGGREGATED: u32 = 1 << 0;
    pub const PATH_TRUNCATED: u32 = 1 << 1;
    pub const ARGS_TRUNCATED: u32 = 1 << 2;
    pub const CWD_TRUNCATED: u32 = 1 << 3;
    pub const EXE_MEMFD: u32 = 1 << 4;
    pub const EXE_DELETED: u32 = 1 << 5;
    pub const STR_TRUNCATED: u32 = 1 << 6;
    pub const AGG_TABLE_FULL: u32 = 1 << 7;

    pub const NAMES: [(u32, &str); 8] = [
        (AGGREGATED, "aggregated"),
        (PATH_TRUNCATED, "path_truncated"),
        (ARGS_TRUNCATED, "args_truncated"),
        (CWD_TRUNCATED, "cwd_truncated"),
        (EXE_MEMFD, "exe_memfd"),
        (EXE_DELETED, "exe_deleted"),
        (STR_TRUNCATED, "string_truncated"),
        (AGG_TABLE_FULL, "aggregation_table_full"),
    ];
}

impl Event<'_> {
    /// Executions from a memfd or a deleted file: nothing on disk to inspect.
    pub fn fileless(&self) -> bool {
        self.flags & (flags::EXE_MEMFD | flags::EXE_DELETED) != 0
    }

    /// Terminal, session and standard fds of an exec or /proc snapshot, when known.
    pub fn launch(&self) -> Option<&Launch> {
        match &self.body {
            Body::Exec { launch, .. } | Body::Snapshot { launch, .. } => launch.as_ref(),
            Body::Fork { .. }
            | Body::Exit { .. }
            | Body::Threads
            | Body::File { .. }
            | Body::Net { .. }
            | Body::Syscall { .. } => None,
        }
    }

    /// argv split at NULs (a trailing NUL does not make an empty argument).
    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        let raw: &[u8] = match self.body {
            Body::Exec { args, .. } | Body::Snapshot { args, .. } => args,
            _ => &[],
        };
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        raw.split(|&b| b == 0).filter(move |_| !raw.is_empty())
    }
}

/// Converts kernel CLOCK_BOOTTIME stamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    /// realtime - boottime, nanoseconds.
    offset_ns: i128,
}

impl BootClock {
    pub fn from_offset(offset_ns: i128) -> Self {
        BootClock { offset_ns }
    }

    /// realtime - boottime, nanoseconds (what `from_offset` takes).
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// Wall-clock nanoseconds since the Unix epoch for a boottime stamp.
    pub fn wall_ns(&self, ktime_ns: u64) -> i128 {
        i128::from(ktime_ns) + self.offset_ns
    }
}

/// An error with its causes on one line, for logs (`Display` of most errors names only the outermost one;
/// tonic's says just "transport error"). The one such helper of the workspace.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
