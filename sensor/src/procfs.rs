//! The /proc walk at start: processes that were running before the sensor
//! are reported as `process_snapshot` events, so later events about them
//! (and the enricher's process table) have a known origin.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::os::unix::fs::FileTypeExt;

use tracelake_model::{Fd, FdType, Kind, Launch, OwnedBody, OwnedEvent, Session, Stdio, Subject, Tty};

/// Root of the cgroup v2 hierarchy: pure v2 at /sys/fs/cgroup, or the
/// unified mount of a hybrid layout.
pub fn cgroup2_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() { unified.to_path_buf() } else { PathBuf::from("/sys/fs/cgroup") }
}

/// cgroup v2 id of a process: the inode of its directory in the v2 tree,
/// which is what bpf_get_current_cgroup_id() returns.
pub fn cgroup_id_of(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    fs::metadata(cgroup2_root().join(path.trim_start_matches('/'))).ok().map(|m| m.ino())
}

fn ns_inode(pid: u32, ns: &str) -> u32 {
    fs::metadata(format!("/proc/{pid}/ns/{ns}")).map(|m| m.ino() as u32).unwrap_or(0)
}

/// What /proc/<pid>/stat tells: ppid, start (boot time ns, from clock ticks), comm, session id, tty_nr.
struct Stat {
    ppid: u32,
    start_ns: u64,
    comm: [u8; 16],
    sid: u32,
    tty_nr: u32,
}

fn stat_fields(pid: u32) -> Option<Stat> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may itself contain ") ": split at the last one.
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut comm = [0u8; 16];
    let name = &stat[open + 1..close];
    comm[..name.len().min(15)].copy_from_slice(&name[..name.len().min(15)]);
    let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let sid = fields.get(3)?.parse().ok()?;
    // A signed int in the kernel's format string; never negative in practice.
    let tty_nr = fields.get(4)?.parse::<i64>().ok()? as u32;
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    Some(Stat { ppid, start_ns: start_ticks * (1_000_000_000 / hz), comm, sid, tty_nr })
}

/// The types of fds 0-2 from what /proc/<pid>/fd/N points at (stat follows the link to the socket, pipe or
/// device itself). A socket's peer would take a search through /proc/net per socket: left out.
fn stdio(pid: u32) -> Stdio {
    std::array::from_fn(|n| {
        let m = match fs::metadata(format!("/proc/{pid}/fd/{n}")) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Fd::default(),
            Err(_) => return Fd { fd_type: FdType::Other, ..Fd::default() },
        };
        let t = m.file_type();
        // glibc's dev_t to the kernel's (major << 20 | minor), as exec events carry it.
        let rdev = (libc::major(m.rdev()) << 20) | (libc::minor(m.rdev()) & 0xf_ffff);
        let fd_type = if t.is_socket() {
            FdType::Socket
        } else if t.is_fifo() {
            FdType::Pipe
        } else if t.is_char_device() && Tty(rdev).is_terminal() {
            FdType::Tty
        } else if t.is_char_device() {
            FdType::Char
        } else if t.is_file() {
            FdType::File
        } else {
            FdType::Other
        };
        let rdev = if t.is_char_device() { rdev } else { 0 };
        Fd { fd_type, rdev, ..Fd::default() }
    })
}

fn ids(pid: u32) -> Option<([u32; 2], [u32; 2])> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let pick = |key: &str| -> Option<[u32; 2]> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let mut it = line[key.len()..].split_whitespace().map(|v| v.parse::<u32>().ok());
        Some([it.next()??, it.next()??])
    };
    Some((pick("Uid:")?, pick("Gid:")?))
}

fn link(pid: u32, what: &str) -> Vec<u8> {
    fs::read_link(format!("/proc/{pid}/{what}")).map(|p| p.as_os_str().as_bytes().to_vec()).unwrap_or_default()
}

/// One snapshot event for a running process, or None if it vanished.
pub fn snapshot(pid: u32, now_ns: u64) -> Option<OwnedEvent> {
    let Stat { ppid, start_ns, comm, sid, tty_nr } = stat_fields(pid)?;
    let tty = if tty_nr == 0 { 0 } else { Tty::from_proc(tty_nr).0 };
    let launch = Launch { session: Session { tty, sid, leader: sid == pid }, stdio: stdio(pid) };
    let ([uid, euid], [gid, egid]) = ids(pid)?;
    let mut args = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if args.last().is_some_and(|&b| b != 0) {
        args.push(0);
    }
    Some(OwnedEvent {
        kind: Kind::ProcessSnapshot,
        subject: Subject {
            ktime_ns: now_ns,
            cgroup_id: cgroup_id_of(pid).unwrap_or(0),
            proc_start_ns: start_ns,
            pid,
            tgid: pid,
            ppid,
            uid,
            gid,
            euid,
            egid,
            pidns: ns_inode(pid, "pid"),
            mntns: ns_inode(pid, "mnt"),
            comm,
        },
        flags: 0,
        count: 1,
        aggregate: None,
        body: OwnedBody::Snapshot { launch: Some(launch) },
        strings: [link(pid, "exe"), args, link(pid, "cwd")],
    })
}

/// Every process in /proc (threads are not listed at the top level).
pub fn walk(now_ns: u64) -> Vec<OwnedEvent> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    pids.into_iter().filter_map(|pid| snapshot(pid, now_ns)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn own_process_is_found_with_its_identity() {
        let me = std::process::id();
        let ev = snapshot(me, 1).unwrap();
        assert_eq!(ev.subject.tgid, me);
        assert_eq!(ev.subject.ppid, std::os::unix::process::parent_id());
        assert_eq!(ev.text(0), std::env::current_exe().unwrap().to_string_lossy());
        assert!(ev.subject.mntns != 0 && ev.subject.pidns != 0);
        assert!(walk(1).iter().any(|e| e.subject.tgid == 1), "init is listed");
    }

    #[test]
    fn session_and_standard_fds_of_a_child() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let log = std::env::temp_dir().join(format!("tl-procfs-{}", std::process::id()));
        let mut leader = Command::new("sleep");
        leader.arg("30").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(fs::File::create(&log).unwrap());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            leader.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
        }
        let mut leader = leader.spawn().unwrap();
        let mut member = Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let launch = |pid: u32| match snapshot(pid, 1).unwrap().body {
            OwnedBody::Snapshot { launch } => launch.unwrap(),
            other => panic!("{other:?}"),
        };
        let l = launch(leader.id());
        assert_eq!(l.session, Session { tty: 0, sid: leader.id(), leader: true }, "setsid: a new session, no tty");
        assert_eq!(l.stdio.map(|f| f.fd_type), [FdType::Pipe, FdType::Char, FdType::File]);
        assert_eq!(l.stdio[1].rdev, 1 << 20 | 3, "/dev/null is 1:3");
        let m = launch(member.id());
        // SAFETY: getsid(0) has no preconditions.
        let ours = unsafe { libc::getsid(0) } as u32;
        assert_eq!((m.session.sid, m.session.leader), (ours, false), "inherits our session");
        for c in [&mut leader, &mut member] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(log);
    }
}
