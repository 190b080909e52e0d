//! The /proc walk at start: processes that were running before the sensor
//! are reported as `process_snapshot` events, so later events about them
//! (and the enricher's process table) have a known origin.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tracelake_model::{Kind, OwnedBody, OwnedEvent, Subject};

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

/// Boot time in ns of a process start, from /proc/<pid>/stat (clock ticks).
fn stat_fields(pid: u32) -> Option<(u32, u64, [u8; 16])> {
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
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    Some((ppid, start_ticks * (1_000_000_000 / hz), comm))
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
    let (ppid, start_ns, comm) = stat_fields(pid)?;
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
        body: OwnedBody::Snapshot,
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
}
