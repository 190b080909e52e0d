//! An event that owns its strings: for the few places that must keep one
//! (aggregation descriptors, /proc snapshots, tests), never the hot path.

use crate::{Aggregate, Body, Endpoint, Event, Kind, Launch, Subject};

/// Owned counterpart of `Body`; strings live in `OwnedEvent::strings`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedBody {
    Exec {
        exe_ino: u64,
        exe_dev: u32,
        exe_nlink: u32,
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
    Threads,
    File {
        ret: i64,
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
        bytes_sent: u64,
        bytes_received: u64,
    },
    Syscall {
        nr: u32,
        ret: i64,
        args: [u64; 6],
    },
    Snapshot {
        launch: Option<Launch>,
    },
}

/// An event with owned strings: up to three byte strings whose meaning
/// follows the body (exec: exe, args, cwd; file: path, path2; net: unix
/// path; syscall: str1..str3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEvent {
    pub kind: Kind,
    pub subject: Subject,
    pub flags: u32,
    pub count: u64,
    pub aggregate: Option<Aggregate>,
    pub body: OwnedBody,
    pub strings: [Vec<u8>; 3],
}

impl OwnedEvent {
    pub fn from_event(ev: &Event<'_>) -> OwnedEvent {
        let (body, s): (OwnedBody, [&[u8]; 3]) = match ev.body {
            Body::Exec { exe, args, cwd, exe_ino, exe_dev, exe_nlink, launch } => {
                (OwnedBody::Exec { exe_ino, exe_dev, exe_nlink, launch }, [exe, args, cwd])
            }
            Body::Fork { child_pid, child_start_ns } => (OwnedBody::Fork { child_pid, child_start_ns }, [&[]; 3]),
            Body::Exit { exit_code, signal, core_dump } => (OwnedBody::Exit { exit_code, signal, core_dump }, [&[]; 3]),
            Body::Threads => (OwnedBody::Threads, [&[]; 3]),
            Body::File { ret, path, path2, ino, dev, open_flags, mode, owner_uid, owner_gid } => {
                (OwnedBody::File { ret, ino, dev, open_flags, mode, owner_uid, owner_gid }, [path, path2, &[]])
            }
            Body::Net { ret, family, protocol, local, remote, unix_path, bytes_sent, bytes_received } => (
                OwnedBody::Net { ret, family, protocol, local, remote, bytes_sent, bytes_received },
                [unix_path, &[], &[]],
            ),
            Body::Syscall { nr, ret, args, str1, str2, str3 } => {
                (OwnedBody::Syscall { nr, ret, args }, [str1, str2, str3])
            }
            Body::Snapshot { exe, args, cwd, launch } => (OwnedBody::Snapshot { launch }, [exe, args, cwd]),
        };
        OwnedEvent {
            kind: ev.kind,
            subject: ev.subject,
            flags: ev.flags,
            count: ev.count,
            aggregate: ev.aggregate,
            body,
            strings: s.map(<[u8]>::to_vec),
        }
    }

    /// A borrowed view, for handlers that take `&Event`.
    pub fn as_event(&self) -> Event<'_> {
        let [a, b, c] = &self.strings;
        let body = match self.body {
            OwnedBody::Exec { exe_ino, exe_dev, exe_nlink, launch } => {
                Body::Exec { exe: a, args: b, cwd: c, exe_ino, exe_dev, exe_nlink, launch }
            }
            OwnedBody::Fork { child_pid, child_start_ns } => Body::Fork { child_pid, child_start_ns },
            OwnedBody::Exit { exit_code, signal, core_dump } => Body::Exit { exit_code, signal, core_dump },
            OwnedBody::Threads => Body::Threads,
            OwnedBody::File { ret, ino, dev, open_flags, mode, owner_uid, owner_gid } => {
                Body::File { ret, path: a, path2: b, ino, dev, open_flags, mode, owner_uid, owner_gid }
            }
            OwnedBody::Net { ret, family, protocol, local, remote, bytes_sent, bytes_received } => {
                Body::Net { ret, family, protocol, local, remote, unix_path: a, bytes_sent, bytes_received }
            }
            OwnedBody::Syscall { nr, ret, args } => Body::Syscall { nr, ret, args, str1: a, str2: b, str3: c },
            OwnedBody::Snapshot { launch } => Body::Snapshot { exe: a, args: b, cwd: c, launch },
        };
        Event {
            kind: self.kind,
            subject: self.subject,
            flags: self.flags,
            count: self.count,
            aggregate: self.aggregate,
            body,
        }
    }

    /// String `i` as text, lossily: convenient in tests and logs.
    pub fn text(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.strings[i]).into_owned()
    }
}
