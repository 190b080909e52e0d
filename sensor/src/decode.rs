//! Ring-buffer bytes to model events, borrowing every string: the hot path
//! copies fixed-size headers onto the stack and allocates nothing.

use tracelake_bpf::abi::{self, Header, read_record};
use tracelake_model::{Body, Endpoint, Event, Fd, FdType, Kind, Launch, Session, Subject, Tty};

/// A record that cannot be decoded: counted by the reader, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its fixed part")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("kind {0} is not a kernel record")]
    NotKernel(u32),
    #[error("payload lengths exceed the record")]
    Payload,
}

pub fn subject(h: &Header) -> Subject {
    Subject {
        ktime_ns: h.ktime_ns,
        cgroup_id: h.cgroup_id,
        proc_start_ns: h.proc_start_ns,
        pid: h.pid,
        tgid: h.tgid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        euid: h.euid,
        egid: h.egid,
        pidns: h.pidns,
        mntns: h.mntns,
        comm: h.comm,
    }
}

/// Splits `lens.len()` consecutive payload strings off `data`.
fn payload<const N: usize>(data: &[u8], fixed: usize, lens: [u32; N]) -> Result<[&[u8]; N], DecodeError> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut pos = fixed;
    for (slot, len) in out.iter_mut().zip(lens) {
        let end = pos.checked_add(len as usize).ok_or(DecodeError::Payload)?;
        *slot = data.get(pos..end).ok_or(DecodeError::Payload)?;
        pos = end;
    }
    Ok(out)
}

fn endpoint(addr: [u8; 16], port: u16) -> Endpoint {
    Endpoint { addr, port }
}

fn stdio_fd(s: &abi::Stdio) -> Fd {
    let fd_type = match s.fd_type {
        abi::fd::NONE => FdType::None,
        abi::fd::SOCKET => FdType::Socket,
        abi::fd::PIPE => FdType::Pipe,
        abi::fd::CHAR if Tty(s.rdev).is_terminal() => FdType::Tty,
        abi::fd::CHAR => FdType::Char,
        abi::fd::FILE => FdType::File,
        _ => FdType::Other,
    };
    Fd { fd_type, family: s.family, protocol: s.protocol, remote: endpoint(s.addr, s.port), rdev: s.rdev }
}

fn launch(r: &abi::Exec) -> Launch {
    Launch {
        session: Session { tty: r.tty, sid: r.sid, leader: r.session_leader != 0 },
        stdio: [stdio_fd(&r.stdio[0]), stdio_fd(&r.stdio[1]), stdio_fd(&r.stdio[2])],
    }
}

/// Decodes one ring-buffer record.
pub fn decode(data: &[u8]) -> Result<Event<'_>, DecodeError> {
    let h: Header = read_record(data).ok_or(DecodeError::Short(data.len()))?;
    let kind = Kind::from_id(h.kind).ok_or(DecodeError::UnknownKind(h.kind))?;
    let data = data.get(..(h.size as usize).min(data.len())).unwrap_or(data);
    let short = || DecodeError::Short(data.len());
    let body = match kind {
        Kind::Exec => {
            let r: abi::Exec = read_record(data).ok_or_else(short)?;
            let [exe, args, cwd] = payload(data, size_of::<abi::Exec>(), [r.path_len, r.args_len, r.cwd_len])?;
            Body::Exec {
                exe,
                args,
                cwd,
                exe_ino: r.exe_ino,
                exe_dev: r.exe_dev,
                exe_nlink: r.exe_nlink,
                launch: Some(launch(&r)),
            }
        }
        Kind::Fork => {
            let r: abi::Fork = read_record(data).ok_or_else(short)?;
            Body::Fork { child_pid: r.child_pid, child_start_ns: r.child_start_ns }
        }
        Kind::Exit => {
            let r: abi::Exit = read_record(data).ok_or_else(short)?;
            Body::Exit { exit_code: r.exit_code, signal: r.signal, core_dump: r.core_dump != 0 }
        }
        Kind::FileOpen | Kind::FileRename | Kind::FileUnlink | Kind::FileChmod | Kind::FileChown => {
            let r: abi::File = read_record(data).ok_or_else(short)?;
            let [path, path2] = payload(data, size_of::<abi::File>(), [r.path_len, r.path2_len])?;
            Body::File {
                ret: r.ret,
                path,
                path2,
                ino: r.ino,
                dev: r.dev,
                open_flags: r.open_flags,
                mode: r.mode,
                owner_uid: r.owner_uid,
                owner_gid: r.owner_gid,
            }
        }
        Kind::NetConnect | Kind::NetAccept | Kind::NetListen | Kind::NetClose | Kind::NetUdpSend | Kind::NetBind => {
            let r: abi::Net = read_record(data).ok_or_else(short)?;
            let [unix_path] = payload(data, size_of::<abi::Net>(), [r.path_len])?;
            Body::Net {
                ret: r.ret,
                family: r.family,
                protocol: r.protocol,
                local: endpoint(r.saddr, r.sport),
                remote: endpoint(r.daddr, r.dport),
                unix_path,
                bytes_sent: r.bytes_sent,
                bytes_received: r.bytes_received,
            }
        }
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
        | Kind::PivotRoot => {
            let r: abi::Syscall = read_record(data).ok_or_else(short)?;
            let [str1, str2, str3] = payload(data, size_of::<abi::Syscall>(), [r.str1_len, r.str2_len, r.str3_len])?;
            Body::Syscall { nr: r.nr, ret: r.ret, args: r.args, str1, str2, str3 }
        }
        Kind::CloneThread | Kind::ProcessSnapshot => return Err(DecodeError::NotKernel(h.kind)),
    };
    Ok(Event { kind, subject: subject(&h), flags: h.flags, count: 1, aggregate: None, body })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn record<T: abi::Record>(rec: &T, payload: &[u8]) -> Vec<u8> {
        // SAFETY: T is a repr(C) plain-old-data record.
        let bytes = unsafe { std::slice::from_raw_parts((rec as *const T).cast::<u8>(), size_of::<T>()) };
        let mut v = bytes.to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn exec_payload_is_sliced() {
        let mut r = abi::Exec::default();
        r.h.kind = abi::kind::EXEC;
        r.path_len = 9;
        r.args_len = 8;
        r.cwd_len = 1;
        r.h.size = (size_of::<abi::Exec>() + 18) as u32;
        let bytes = record(&r, b"/bin/true/bin/tr\0x\0/");
        let ev = decode(&bytes).unwrap();
        match ev.body {
            Body::Exec { exe, args, cwd, .. } => {
                assert_eq!(exe, b"/bin/true");
                assert_eq!(args, b"/bin/tr\0");
                assert_eq!(cwd, b"x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_session_and_stdio_are_decoded() {
        let mut r = abi::Exec::default();
        r.h.kind = abi::kind::EXEC;
        r.h.size = size_of::<abi::Exec>() as u32;
        (r.tty, r.sid, r.session_leader) = (136 << 20 | 2, 77, 1);
        r.stdio[0] = abi::Stdio { fd_type: abi::fd::SOCKET, family: 10, protocol: 6, port: 4444, ..Default::default() };
        r.stdio[0].addr[15] = 1;
        r.stdio[1] = abi::Stdio { fd_type: abi::fd::CHAR, rdev: 136 << 20 | 2, ..Default::default() };
        r.stdio[2] = abi::Stdio { fd_type: abi::fd::CHAR, rdev: 1 << 20 | 3, ..Default::default() };
        let l = decode(&record(&r, b"")).unwrap().launch().copied().unwrap();
        assert_eq!(l.session, Session { tty: 136 << 20 | 2, sid: 77, leader: true });
        assert_eq!(l.session.tty().unwrap().to_string(), "pts/2");
        let [stdin, stdout, stderr] = l.stdio;
        assert_eq!((stdin.fd_type, stdin.family, stdin.protocol, stdin.remote.port), (FdType::Socket, 10, 6, 4444));
        assert_eq!(stdin.remote.addr[15], 1);
        assert_eq!((stdout.fd_type, stderr.fd_type), (FdType::Tty, FdType::Char), "/dev/null is no terminal");
        r.stdio[0].fd_type = abi::fd::PIPE;
        r.stdio[1].fd_type = abi::fd::NONE;
        r.stdio[2].fd_type = abi::fd::FILE;
        let l = decode(&record(&r, b"")).unwrap().launch().copied().unwrap();
        assert_eq!(l.stdio.map(|f| f.fd_type), [FdType::Pipe, FdType::None, FdType::File]);
    }

    #[test]
    fn lying_lengths_are_rejected_not_trusted() {
        let mut r = abi::File::default();
        r.h.kind = abi::kind::FILE_OPEN;
        r.path_len = 4000;
        r.h.size = size_of::<abi::File>() as u32 + 3;
        let bytes = record(&r, b"abc");
        assert_eq!(decode(&bytes), Err(DecodeError::Payload));
        assert_eq!(decode(&bytes[..10]), Err(DecodeError::Short(10)));
        let mut h = abi::Header { kind: 77, ..Default::default() };
        h.size = size_of::<abi::Header>() as u32;
        assert_eq!(decode(&record(&h, b"")), Err(DecodeError::UnknownKind(77)));
    }
}
