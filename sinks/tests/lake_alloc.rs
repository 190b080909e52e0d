//! Rule 8: appending an event to the lake's Arrow builders allocates only
//! when a builder grows (amortised doubling), never once per event. Counted
//! with a global allocator, in its own test binary.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracelake_model::json::{Ancestor, Identity, JsonContext};
use tracelake_model::{Body, BootClock, Endpoint, Event, Fd, FdType, Kind, Launch, Session, Subject};
use tracelake_sinks::parquet::{LakeConfig, LakeSink};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn appending_events_does_not_allocate_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LakeConfig {
        dir: dir.path().to_path_buf(),
        rotate_bytes: 1 << 30,
        rotate_age: Duration::from_secs(3600),
        retention: Duration::ZERO,
        ..LakeConfig::default()
    };
    let ctx = JsonContext { node: "n", clock: BootClock::from_offset(1_700_000_000_000_000_000), node_salt: 1 };
    let mut sink = LakeSink::open(&cfg, ctx).unwrap();
    let mut id =
        Identity { container_id: Some("abc"), pod: Some("p"), process_exe: Some(b"/bin/x"), ..Identity::default() };
    id.ancestors[0] = Some(Ancestor { pid: 1, exe: b"/bin/sh", args: b"sh\0-c\0x\0" });
    let remote = Endpoint { addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], port: 443 };
    let bodies = [
        (
            Kind::Exec,
            Body::Exec {
                exe: b"/bin/x\xff",
                args: b"x\0-v\0\xfe\0",
                cwd: b"/",
                exe_ino: 1,
                exe_dev: 2,
                exe_nlink: 1,
                // A terminal's name and a socket's peer are formatted per row: on the stack.
                launch: Some(Launch {
                    session: Session { tty: 136 << 20 | 5, sid: 1, leader: true },
                    stdio: [Fd { fd_type: FdType::Socket, family: 2, protocol: 6, remote, rdev: 0 }; 3],
                }),
            },
        ),
        (
            Kind::FileOpen,
            Body::File {
                ret: 3,
                path: b"/etc/x",
                path2: b"",
                ino: 1,
                dev: 2,
                open_flags: 1,
                mode: 0,
                owner_uid: 0,
                owner_gid: 0,
            },
        ),
        (
            Kind::NetConnect,
            Body::Net {
                ret: 0,
                family: 2,
                protocol: 6,
                local: remote,
                remote,
                unix_path: b"",
                bytes_sent: 0,
                bytes_received: 0,
            },
        ),
        (Kind::Mount, Body::Syscall { nr: 165, ret: 0, args: [0; 6], str1: b"a", str2: b"/b", str3: b"ext4" }),
    ];
    let n = 200_000u64;
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in 0..n {
        let (kind, body) = bodies[(i % 4) as usize];
        let ev = Event {
            kind,
            subject: Subject { ktime_ns: i, pid: 5, tgid: 5, ..Subject::default() },
            flags: 1,
            count: 1,
            aggregate: None,
            body,
        };
        sink.push_with(&ev, &id);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    // Doubling growth of a few hundred builders: thousands in all, far below one per event.
    assert!(allocs < n / 20, "{allocs} allocations for {n} events");
    assert_eq!(sink.buffered_rows() as u64, n, "nothing flushed meanwhile");
    eprintln!("{allocs} allocations for {n} events");
}
