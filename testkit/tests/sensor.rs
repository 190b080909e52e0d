//! End-to-end sensor tests: the real eBPF programs loaded into this kernel,
//! real processes doing real things, events read back from the ring buffer.
//! Needs root (as every test of this project does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::field_reassign_with_default, reason = "test code")]

mod common;

use std::time::Duration;

use common::{act, capture, of_pid};
use tracelake_model::{Kind, OwnedBody, flags};
use tracelake_sensor::SensorConfig;
use tracelake_sensor::config::FileAction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_exit_of_a_child_are_reported_with_argv_and_code() {
    let (events, pids) = capture(SensorConfig::default(), || {
        let t = std::process::Command::new("/bin/true").args(["first", "second arg"]).spawn().unwrap();
        let e = act(&["exit", "3"]);
        vec![common::wait(t), common::wait(e)]
    })
    .await;
    let true_events = of_pid(&events, pids[0]);
    let exec = true_events.iter().find(|e| e.kind == Kind::Exec).expect("exec of /bin/true");
    assert!(exec.text(0).ends_with("/true"), "exe {}", exec.text(0));
    let args: Vec<_> = exec.as_event().args().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    assert_eq!(args, ["/bin/true", "first", "second arg"]);
    assert!(!exec.text(2).is_empty(), "cwd is reported");
    assert_eq!(exec.subject.tgid, pids[0]);
    assert_eq!(exec.subject.ppid, std::process::id());
    let exit = true_events.iter().find(|e| e.kind == Kind::Exit).expect("exit of /bin/true");
    assert_eq!(exit.body, OwnedBody::Exit { exit_code: 0, signal: 0, core_dump: false });
    let exit3 = of_pid(&events, pids[1]).into_iter().find(|e| e.kind == Kind::Exit).expect("exit of tl-act");
    assert_eq!(exit3.body, OwnedBody::Exit { exit_code: 3, signal: 0, core_dump: false });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_argv_is_cut_and_flagged() {
    let mut cfg = SensorConfig::default();
    cfg.argv_max = 256;
    let long = "x".repeat(1000);
    let (events, pids) = capture(cfg, move || {
        vec![common::wait(
            std::process::Command::new("/bin/echo").arg(&long).stdout(std::process::Stdio::null()).spawn().unwrap(),
        )]
    })
    .await;
    let exec = of_pid(&events, pids[0]).into_iter().find(|e| e.kind == Kind::Exec).expect("exec");
    assert!(exec.flags & flags::ARGS_TRUNCATED != 0);
    assert_eq!(exec.strings[1].len(), 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_a_watched_prefix_are_seen_and_ignored_prefix_is_not() {
    let root = tempfile::tempdir().unwrap();
    let watched = root.path().join("watched");
    let ignored = root.path().join("watched/ignored");
    std::fs::create_dir_all(&ignored).unwrap();
    let mut cfg = SensorConfig::default();
    cfg.file.default = FileAction::Ignore;
    cfg.file.watch_writes = vec![format!("{}/", watched.display())];
    cfg.file.ignore = vec![format!("{}/", ignored.display())];
    let (w2, i2) = (watched.clone(), ignored.clone());
    let (events, pids) = capture(cfg, move || {
        vec![
            common::wait(act(&["write-rename", w2.to_str().unwrap()])),
            common::wait(act(&["write-rename", i2.to_str().unwrap()])),
        ]
    })
    .await;
    let seen = of_pid(&events, pids[0]);
    let w = watched.display().to_string();
    let open = seen.iter().find(|e| e.kind == Kind::FileOpen).expect("write open");
    assert_eq!(open.text(0), format!("{w}/new"));
    match open.body {
        OwnedBody::File { open_flags, ret, .. } => {
            assert!(open_flags & (libc::O_WRONLY | libc::O_CREAT) as u32 != 0);
            assert!(ret >= 0);
        }
        ref other => panic!("{other:?}"),
    }
    let rename = seen.iter().find(|e| e.kind == Kind::FileRename).expect("rename");
    assert_eq!((rename.text(0), rename.text(1)), (format!("{w}/new"), format!("{w}/renamed")));
    assert!(seen.iter().any(|e| e.kind == Kind::FileUnlink && e.text(0) == format!("{w}/renamed")));
    let chmod = seen.iter().find(|e| e.kind == Kind::FileChmod).expect("chmod");
    assert!(matches!(chmod.body, OwnedBody::File { mode: 0o600, ret: 0, .. }), "{chmod:?}");
    assert_eq!(chmod.text(0), format!("{w}/new"));
    let chown = seen.iter().find(|e| e.kind == Kind::FileChown).expect("chown");
    assert!(matches!(chown.body, OwnedBody::File { owner_uid: 0, owner_gid: 0, ret: 0, .. }), "{chown:?}");
    let in_ignored: Vec<_> =
        of_pid(&events, pids[1]).into_iter().filter(|e| e.kind.class() == tracelake_model::Class::File).collect();
    assert!(in_ignored.is_empty(), "ignored prefix produced {in_ignored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connect_and_accept_on_loopback_carry_both_ports() {
    let (events, pids) = capture(SensorConfig::default(), || {
        let out = act(&["tcp"]).wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        common::remember(&text);
        vec![common::last_pid()]
    })
    .await;
    let text = common::remembered();
    let port: u16 = text.split_whitespace().find_map(|w| w.strip_prefix("port=")).unwrap().parse().unwrap();
    let client: u16 = text.split_whitespace().find_map(|w| w.strip_prefix("client=")).unwrap().trim().parse().unwrap();
    let mine = of_pid(&events, pids[0]);
    let net = |kind| mine.iter().find(|e| e.kind == kind).unwrap_or_else(|| panic!("{kind:?} in {mine:?}"));
    let endpoints = |e: &tracelake_model::OwnedEvent| match e.body {
        OwnedBody::Net { local, remote, protocol, .. } => {
            (local.port, remote.port, remote.addr[..4].to_vec(), protocol)
        }
        ref other => panic!("{other:?}"),
    };
    assert_eq!(endpoints(net(Kind::NetConnect)), (client, port, vec![127, 0, 0, 1], 6));
    assert_eq!(endpoints(net(Kind::NetAccept)), (port, client, vec![127, 0, 0, 1], 6));
    assert_eq!(endpoints(net(Kind::NetListen)).0, port);
    assert!(mine.iter().any(|e| e.kind == Kind::NetClose), "close of the tracked connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setuid_unshare_and_module_load_attempt_are_reported() {
    let (events, pids) = capture(SensorConfig::default(), || vec![common::wait(act(&["priv"]))]).await;
    let mine = of_pid(&events, pids[0]);
    let unshare = mine.iter().find(|e| e.kind == Kind::Unshare).expect("unshare");
    let setuid = mine.iter().find(|e| e.kind == Kind::Setuid).expect("setuid");
    let module = mine.iter().find(|e| e.kind == Kind::ModuleLoad).expect("finit_module attempt");
    assert_eq!(module.text(0), "tl_param=1");
    match (&unshare.body, &setuid.body) {
        (OwnedBody::Syscall { args: ua, ret: ur, .. }, OwnedBody::Syscall { args: sa, ret: sr, .. }) => {
            assert_eq!(ua[0], libc::CLONE_NEWUTS as u64);
            assert_eq!(sa[0], 65534);
            assert_eq!((*ur, *sr), (0, 0));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_identical_opens_arrive_as_a_handful_of_records_with_exact_counts() {
    const N: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, b"s").unwrap();
    let mut cfg = SensorConfig::default();
    cfg.file.watch_reads = vec![format!("{}/", dir.path().display())];
    cfg.aggregation.interval = Duration::from_millis(500);
    let f2 = file.clone();
    let (events, pids) =
        capture(cfg, move || vec![common::wait(act(&["open-flood", f2.to_str().unwrap(), &N.to_string()]))]).await;
    let opens: Vec<_> = of_pid(&events, pids[0])
        .into_iter()
        .filter(|e| e.kind == Kind::FileOpen && e.text(0) == file.display().to_string())
        .collect();
    let total: u64 = opens.iter().map(|e| e.count).sum();
    assert_eq!(total, N, "counts of {} records add up", opens.len());
    assert!(opens.len() < 40, "{} records for {N} opens", opens.len());
    assert!(opens.iter().any(|e| e.aggregate.is_some()), "summaries carry the repeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_are_counted_not_emitted() {
    let (events, pids) = capture(SensorConfig::default(), || vec![common::wait(act(&["threads", "200"]))]).await;
    let mine = of_pid(&events, pids[0]);
    let threads: u64 = mine.iter().filter(|e| e.kind == Kind::CloneThread).map(|e| e.count).sum();
    assert_eq!(threads, 200);
    assert!(mine.iter().filter(|e| e.kind == Kind::CloneThread).count() <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_from_a_memfd_is_flagged_fileless() {
    let (events, pids) = capture(SensorConfig::default(), || vec![common::wait(act(&["memfd-exec"]))]).await;
    let mine = of_pid(&events, pids[0]);
    let execs: Vec<_> = mine.iter().filter(|e| e.kind == Kind::Exec).collect();
    let fileless =
        execs.iter().find(|e| e.flags & flags::EXE_MEMFD != 0).unwrap_or_else(|| panic!("no memfd exec in {execs:?}"));
    assert!(fileless.text(0).contains("memfd:tl-fileless"), "exe {}", fileless.text(0));
    assert!(fileless.as_event().fileless());
    assert!(
        mine.iter().any(|e| e.kind == Kind::MemfdCreate && e.text(0) == "tl-fileless"),
        "memfd_create reported with its name"
    );
    // The regular exec of tl-act itself is not fileless.
    assert!(execs.iter().any(|e| !e.as_event().fileless()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_connects_to_one_peer_are_aggregated_with_exact_counts() {
    const N: u64 = 500;
    // A port nobody listens on: every connect is refused, quickly.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = SensorConfig::default();
    cfg.aggregation.interval = Duration::from_millis(300);
    let (events, pids) =
        capture(cfg, move || vec![common::wait(act(&["connect-flood", &port.to_string(), &N.to_string()]))]).await;
    let connects: Vec<_> = of_pid(&events, pids[0]).into_iter().filter(|e| e.kind == Kind::NetConnect).collect();
    assert_eq!(connects.iter().map(|e| e.count).sum::<u64>(), N);
    assert!(connects.len() < 30, "{} records", connects.len());
    for c in &connects {
        match c.body {
            OwnedBody::Net { remote, ret, .. } => {
                assert_eq!(remote.port, port, "summaries keep the peer ({c:?})");
                assert_eq!(ret, -i64::from(libc::ECONNREFUSED));
            }
            ref other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_datagram_leaving_is_reported_with_its_destination() {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let (events, pids) =
        capture(SensorConfig::default(), move || vec![common::wait(act(&["udp", &port.to_string()]))]).await;
    let send = of_pid(&events, pids[0]).into_iter().find(|e| e.kind == Kind::NetUdpSend).expect("udp send");
    match send.body {
        OwnedBody::Net { remote, protocol, ret, .. } => {
            assert_eq!((remote.port, &remote.addr[..4], protocol, ret), (port, &[127u8, 0, 0, 1][..], 17, 12));
        }
        ref other => panic!("{other:?}"),
    }
}

/// A reader that falls behind: the ring buffer overflows, and every lost
/// record is counted, so delivered + dropped is exactly what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_buffer_overflow_is_counted_not_silent() {
    struct Slow(Vec<tracelake_model::OwnedEvent>);
    impl tracelake_sensor::EventHandler for Slow {
        fn handle(&mut self, ev: &tracelake_model::Event<'_>) {
            if self.0.is_empty() {
                std::thread::sleep(Duration::from_millis(500));
            }
            self.0.push(tracelake_model::OwnedEvent::from_event(ev));
        }
    }
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let mut cfg = SensorConfig::default();
    cfg.classes = [tracelake_sensor::config::ClassName::File].into();
    cfg.file.default = FileAction::Ignore;
    cfg.file.watch_reads = vec![format!("{}/", dir.path().display())];
    cfg.aggregation.enabled = false;
    cfg.ring_buffer_bytes = 4096;
    let mut sensor = tracelake_sensor::Sensor::start(&cfg).unwrap();
    let path = file.to_str().unwrap().to_string();
    let flood = std::thread::spawn(move || common::wait(act(&["open-flood", &path, &N.to_string()])));
    let mut slow = Slow(Vec::new());
    let summary = sensor
        .run(&mut slow, async move {
            while !flood.is_finished() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap();
    let delivered =
        slow.0.iter().filter(|e| e.kind == Kind::FileOpen && e.text(0) == file.display().to_string()).count() as u64;
    let dropped = summary.stats.dropped.iter().find(|(k, _)| *k == Kind::FileOpen).map_or(0, |(_, n)| *n);
    assert!(dropped > 0, "a 4 KiB ring and a stalled reader must overflow");
    assert_eq!(delivered + dropped, N, "delivered {delivered} + dropped {dropped}");
}

/// The sensor records every cgroup v2 directory's path when it is made, and keeps it after the directory is
/// gone: what names a container's cgroup without CAP_DAC_READ_SEARCH, before its first process runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_cgroups_are_recorded_by_id_and_outlive_their_directory() {
    use std::os::unix::fs::MetadataExt;
    let root = tracelake_testkit::lab::unified_root().unwrap();
    let sensor = tracelake_sensor::Sensor::start(&SensorConfig::default()).unwrap();
    let recorded = sensor.recorded_cgroups().expect("tp_btf/cgroup_mkdir attaches on this kernel");
    let name = format!("tracelake-record-{}", std::process::id());
    let dir = root.join(&name);
    let child = dir.join("kubepods-besteffort-pod1234.slice");
    std::fs::create_dir_all(&child).unwrap();
    let (id, child_id) = (std::fs::metadata(&dir).unwrap().ino(), std::fs::metadata(&child).unwrap().ino());
    std::fs::remove_dir(&child).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    assert_eq!(recorded.path(id).as_deref(), Some(format!("/{name}").as_str()));
    assert_eq!(recorded.path(child_id).as_deref(), Some(format!("/{name}/kubepods-besteffort-pod1234.slice").as_str()));
    // A cgroup made before the sensor started is not in the record (the enricher walks the tree for those).
    let own = tracelake_testkit::lab::unified_cgroup(std::process::id()).unwrap().1;
    assert_eq!(recorded.path(own), None);
    drop(sensor);
}
