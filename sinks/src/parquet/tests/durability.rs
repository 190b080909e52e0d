//! Crashes, full disks, retention and compaction, on real files.

use std::process::Stdio;

use super::*;

pub(super) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

fn is_temp(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Incompressible argv, so file sizes follow the number of events.
fn noisy_exec(i: u64, len: usize) -> OwnedEvent {
    let mut ev = event_of(Kind::Exec, i * 1000, 7);
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut args = b"noise\0".to_vec();
    args.extend((0..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b'a' + (x % 26) as u8
    }));
    args.push(0);
    ev.strings[1] = args;
    ev
}

/// Not a test on its own: the process `a_killed_writer_leaves_no_visible_partial_file` kills.
#[test]
#[ignore = "run as a child by a_killed_writer_leaves_no_visible_partial_file"]
fn crash_child() {
    let Some(dir) = std::env::var_os("TL_LAKE_CRASH_DIR") else { return };
    let mut c = cfg(Path::new(&dir));
    c.rotate_bytes = 8 << 20;
    let mut sink = LakeSink::open(&c, ctx(now_ns())).unwrap();
    for i in 0.. {
        sink.push(&noisy_exec(i, 64 * 1024).as_event());
    }
}

#[test]
fn a_killed_writer_leaves_no_visible_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut caught = false;
    for _attempt in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "parquet::tests::durability::crash_child", "--ignored", "--nocapture"])
            .env("TL_LAKE_CRASH_DIR", dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Kill it while a file is being written: a temporary file exists then.
        while std::time::Instant::now() < deadline {
            let files = files_under(dir.path());
            if files.iter().any(|p| !is_temp(p)) && files.iter().any(|p| is_temp(p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if files_under(dir.path()).iter().any(|p| is_temp(p)) {
            caught = true;
            break;
        }
    }
    assert!(caught, "never caught the writer mid-file");
    // Every visible file is complete; the partial one is hidden from readers.
    let before = check(dir.path(), None, &["--allow-temp"]).unwrap();
    assert!(before["temp_files"].as_u64().unwrap() >= 1, "{before}");
    assert!(before["files"].as_u64().unwrap() >= 1, "{before}");
    // A restart removes it.
    let sink = LakeSink::open(&cfg(dir.path()), ctx(now_ns())).unwrap();
    assert!(sink.stats().maintenance.temp_files_removed >= 1);
    let after = check(dir.path(), None, &[]).unwrap();
    assert_eq!(after["rows"], before["rows"], "visible rows unchanged");
}

#[test]
fn retention_drops_partitions_older_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ns();
    // ktime 0 is ten days ago; the second lot is an hour ago.
    let mut sink = LakeSink::open(&cfg(dir.path()), ctx(now - 240 * HOUR)).unwrap();
    let old: Vec<_> = (0..20).map(|i| event_of(Kind::Exec, i * 1000, 9)).collect();
    let recent: Vec<_> = (0..30).map(|i| event_of(Kind::FileOpen, (239 * HOUR) as u64 + i * 1000, 9)).collect();
    for e in old.iter().chain(&recent) {
        sink.push(&e.as_event());
    }
    sink.flush().unwrap();
    assert_eq!(check(dir.path(), None, &[]).unwrap()["partitions"], json!(2));
    drop(sink);
    let c = LakeConfig { retention: Duration::from_secs(7 * 86400), ..cfg(dir.path()) };
    // Opening runs retention at once.
    let sink = LakeSink::open(&c, ctx(0)).unwrap();
    assert_eq!(sink.stats().maintenance.partitions_dropped, 1);
    let s = check(dir.path(), Some(&expect_of(&recent, vec![])), &[]).unwrap();
    assert_eq!(s["partitions"], json!(1));
    assert!(!dir.path().join("process_activity").read_dir().unwrap().any(|_| true), "empty date folder removed");
}

#[test]
fn compaction_merges_small_files_and_recovers_from_a_crash_half_way() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ns();
    let hour_start = now - now.rem_euclid(HOUR) - 3 * HOUR;
    let mut sink = LakeSink::open(&cfg(dir.path()), ctx(hour_start)).unwrap();
    let mut events = Vec::new();
    for f in 0..6u64 {
        for i in 0..10u64 {
            // Later files hold earlier rows too: the merge must sort.
            let e = event_of(Kind::Exec, (60 - f * 10 - i) * 1_000_000 + f, 100 + f as u32);
            sink.push_with(&e.as_event(), &identity());
            events.push(e);
        }
        sink.flush().unwrap();
    }
    let part =
        dir.path().join("process_activity").join(super::super::writer::partition_dir((hour_start / HOUR) as i64));
    let sources = files_under(&part);
    assert_eq!(sources.len(), 6);
    let saved: Vec<_> = sources.iter().map(|p| (p.clone(), std::fs::read(p).unwrap())).collect();
    let mut sink = LakeSink::open(&LakeConfig { compact_min_files: 4, ..cfg(dir.path()) }, ctx(hour_start)).unwrap();
    let report = sink.stats().maintenance;
    assert_eq!((report.compactions, report.files_compacted), (1, 6));
    let merged = files_under(&part);
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert!(merged[0].file_name().unwrap().to_str().unwrap().starts_with("compact-"));
    check(dir.path(), Some(&expect_of(&events, vec![])), &[]).unwrap();
    // A crash after the merged file became visible, before its sources went:
    // readers would see every row twice, and the checker says so...
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    let err = check(dir.path(), None, &[]).unwrap_err();
    assert!(err.contains("appears twice"), "{err}");
    // ...until the next start finishes the compaction.
    sink.flush().unwrap();
    let sink = LakeSink::open(&cfg(dir.path()), ctx(hour_start)).unwrap();
    assert_eq!(sink.stats().maintenance.compacted_sources_removed, 6);
    check(dir.path(), Some(&expect_of(&events, vec![])), &[]).unwrap();
}

/// A 1 MiB tmpfs, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tl-lake-test"]).arg(dir.path()).status();
        assert!(st.unwrap().success(), "mount tmpfs (needs root)");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_keeps_the_rows_and_retries_them() {
    let fs = Tmpfs::mount();
    let filler = fs.0.path().join("filler");
    std::fs::write(&filler, vec![0u8; 400 * 1024]).unwrap();
    let mut c = cfg(&fs.0.path().join("lake"));
    c.rotate_bytes = 40 * 1024;
    let mut sink = LakeSink::open(&c, ctx(now_ns())).unwrap();
    let mut events = Vec::new();
    let id = identity();
    for i in 0..200 {
        let e = noisy_exec(i, 8 * 1024);
        sink.push_with(&e.as_event(), &id);
        events.push(e);
        if sink.stats().write_errors > 0 {
            break;
        }
    }
    // Batches rotated while earlier ones wait for a retry are kept behind them, in order.
    let kept = sink.stats().rows_pending;
    for i in 1000..1008 {
        let e = noisy_exec(i, 8 * 1024);
        sink.push_with(&e.as_event(), &id);
        events.push(e);
    }
    let s = sink.stats();
    assert!(s.write_errors > 0 && s.rows_pending > kept, "the disk filled up and stayed full: {s:?}");
    assert_eq!(s.rows_lost, 0);
    let err = sink.flush().unwrap_err();
    let msg = error_chain(&err);
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(msg.contains("still pending"), "{msg}");
    // What is visible is whole, and no temporary file is left behind.
    let partial = check(&c.dir, None, &[]).unwrap();
    assert_eq!(partial["rows"]["process_activity"].as_u64().unwrap_or(0), sink.stats().rows_written);
    // Space comes back: the kept rows go out, each exactly once.
    std::fs::remove_file(&filler).unwrap();
    sink.flush().unwrap();
    let s = sink.close(0, Duration::ZERO).unwrap();
    assert_eq!((s.rows_written, s.rows_pending, s.rows_lost), (events.len() as u64, 0, 0));
    // Retried rows went through the Arrow writer: their keyed columns (placeholders in the sink's batch) were
    // gathered from the keys first.
    let values = events
        .iter()
        .flat_map(|e| {
            let e = e.as_event();
            [
                value(Table::ProcessActivity, &e, "kind", json!(hex(b"exec"))),
                value(Table::ProcessActivity, &e, "node", json!(hex(b"node-a"))),
                value(Table::ProcessActivity, &e, "pod", json!(hex(b"api-7d9f-x2"))),
                value(Table::ProcessActivity, &e, "peer_service", Value::Null),
                value(Table::ProcessActivity, &e, "parent_cmdline", json!(hex(b"sh -c curl x"))),
                value(Table::ProcessActivity, &e, "cmdline", json!(hex(&e.args().collect::<Vec<_>>().join(&b' ')))),
            ]
        })
        .collect();
    check(&c.dir, Some(&expect_of(&events, values)), &[]).unwrap();
}

#[test]
fn rows_beyond_the_retry_bound_are_counted_as_lost() {
    let fs = Tmpfs::mount();
    std::fs::write(fs.0.path().join("filler"), vec![0u8; 1000 * 1024]).unwrap();
    let mut c = cfg(&fs.0.path().join("lake"));
    c.rotate_bytes = 40 * 1024;
    c.retry_max_bytes = 1;
    let mut sink = LakeSink::open(&c, ctx(now_ns())).unwrap();
    for i in 0..60 {
        sink.push(&noisy_exec(i, 8 * 1024).as_event());
    }
    let s = sink.stats();
    assert!(s.rows_lost > 0, "{s:?}");
    assert_eq!(s.rows_written + s.rows_lost + s.rows_pending + sink.buffered_rows() as u64, 60, "{s:?}");
    let err = sink.close(2, Duration::from_millis(10)).unwrap_err();
    let LakeError::Unwritten { lost, pending, .. } = err else { panic!("{err}") };
    assert_eq!(pending, 0);
    assert!(lost >= s.rows_lost);
    check(&c.dir, None, &[]).unwrap();
}
