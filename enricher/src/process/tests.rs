#![allow(clippy::unwrap_used, reason = "test code")]

use tracelake_model::{Body, Event, Kind, Subject};

use super::*;

fn subject(tgid: u32, ppid: u32, start: u64, t: u64) -> Subject {
    Subject { tgid, pid: tgid, ppid, proc_start_ns: start, ktime_ns: t, ..Subject::default() }
}

fn exec<'a>(tgid: u32, ppid: u32, start: u64, exe: &'a [u8], args: &'a [u8]) -> Event<'a> {
    Event {
        kind: Kind::Exec,
        subject: subject(tgid, ppid, start, start),
        flags: 0,
        count: 1,
        aggregate: None,
        body: Body::Exec { exe, args, cwd: b"/", exe_ino: 0, exe_dev: 0, exe_nlink: 1, launch: None },
    }
}

fn fork(parent: u32, parent_start: u64, child: u32, child_start: u64) -> Event<'static> {
    Event {
        kind: Kind::Fork,
        subject: subject(parent, 1, parent_start, child_start),
        flags: 0,
        count: 1,
        aggregate: None,
        body: Body::Fork { child_pid: child, child_start_ns: child_start },
    }
}

fn exit(tgid: u32, t: u64) -> Event<'static> {
    Event {
        kind: Kind::Exit,
        subject: subject(tgid, 0, 0, t),
        flags: 0,
        count: 1,
        aggregate: None,
        body: Body::Exit { exit_code: 0, signal: 0, core_dump: false },
    }
}

#[test]
fn lineage_follows_fork_and_exec_and_survives_exit() {
    let mut t = ProcessTable::new(Duration::from_secs(60), 1000, 1000);
    t.observe(&exec(100, 1, 10, b"/usr/sbin/nginx", b"nginx\0-g\0daemon off;\0"));
    t.observe(&fork(100, 10, 200, 20));
    // Before exec the child is its parent's image.
    assert_eq!(&*t.get(200, 20).unwrap().exe, b"/usr/sbin/nginx");
    t.observe(&exec(200, 100, 20, b"/bin/sh", b"sh\0-c\0id\0"));
    t.observe(&fork(200, 20, 300, 30));
    t.observe(&exec(300, 200, 30, b"/usr/bin/id", b"id\0"));
    let chain: Vec<_> = t.lineage(300, 30, 8).iter().map(|p| String::from_utf8_lossy(&p.exe).into_owned()).collect();
    assert_eq!(chain, ["/usr/bin/id", "/bin/sh", "/usr/sbin/nginx"]);
    assert_eq!(t.lineage(300, 30, 2).len(), 2, "depth is bounded");
    let args: Vec<_> = t.get(100, 10).unwrap().args().map(<[u8]>::to_vec).collect();
    assert_eq!(args, [b"nginx".to_vec(), b"-g".to_vec(), b"daemon off;".to_vec()]);

    // The shell exits; a late event about it still resolves, by start time,
    // and so does the lineage of its child through the tombstone.
    t.observe(&exit(200, 40));
    assert_eq!(t.lineage(300, 30, 8).len(), 3);
    assert!(t.get(200, 0).unwrap().exited_ns.is_some(), "only its tombstone is left");
    let dead = t.get(200, 20).unwrap();
    assert_eq!((&*dead.exe, dead.exited_ns), (&b"/bin/sh"[..], Some(40)));
    // A reused pid is a different process.
    t.observe(&exec(200, 1, 50, b"/usr/bin/other", b"other\0"));
    assert_eq!(&*t.get(200, 50).unwrap().exe, b"/usr/bin/other");
    assert_eq!(&*t.get(200, 20).unwrap().exe, b"/bin/sh");
}

#[test]
fn live_entries_are_bounded_when_exits_are_missed() {
    let mut t = ProcessTable::new(Duration::from_secs(60), 10, 3);
    for pid in 1..=5u32 {
        t.observe(&exec(pid, 0, u64::from(pid), b"/x", b"x\0"));
    }
    assert_eq!(t.live_count(), 3);
    assert!(t.get(1, 0).is_none() && t.get(5, 0).is_some(), "the oldest went first");
}

#[test]
fn a_parent_that_exited_before_its_child_was_seen_is_still_found() {
    let mut t = ProcessTable::new(Duration::from_secs(60), 1000, 1000);
    t.observe(&exec(10, 1, 5, b"/usr/bin/containerd-shim-runc-v2", b"shim\0"));
    t.observe(&exec(20, 10, 6, b"/usr/sbin/runc", b"runc\0exec\0"));
    // runc exits before the exec'd process's first event arrives, and no
    // fork event told the child when its parent started.
    t.observe(&exit(20, 7));
    t.observe(&exec(30, 20, 8, b"/bin/cat", b"cat\0"));
    let chain: Vec<_> = t.lineage(30, 8, 8).iter().map(|p| String::from_utf8_lossy(&p.exe).into_owned()).collect();
    assert_eq!(chain, ["/bin/cat", "/usr/sbin/runc", "/usr/bin/containerd-shim-runc-v2"]);
}

#[test]
fn lookups_and_tombstone_evictions_are_counted() {
    // Room for two tombstones: the third exit pushes one out by size.
    let mut t = ProcessTable::new(Duration::from_secs(600), 2, 1000);
    for pid in 1..=3u32 {
        t.observe(&exec(pid, 0, u64::from(pid) * 100, b"/bin/sh", b"sh\0"));
    }
    assert!(t.get(1, 100).is_some());
    assert!(t.get(9, 0).is_none());
    for pid in 1..=3u32 {
        t.observe(&exit(pid, 10_000));
    }
    t.tombstones.run_pending_tasks();
    let found = (1..=3u32).filter(|&pid| t.get(pid, u64::from(pid) * 100).is_some()).count();
    let c = t.counters().read();
    assert_eq!(found, 2, "two tombstones fit");
    assert_eq!(c.evicted, 1, "{c:?}");
    assert_eq!(c.expired, 0);
    assert_eq!((c.hits, c.misses), (3, 2), "{c:?}");
}
