//! Real files, read back by an independent reader: scripts/check_lake.py
//! (python3 + pyarrow, installed by scripts/setup.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tracelake_model::json::{Ancestor, Identity, JsonContext, event_id};
use tracelake_model::{Aggregate, Body, BootClock, Endpoint, Event, Kind, OwnedBody, OwnedEvent, Subject, flags};

use super::ownership::{OwnershipRow, ownership_batch};
use super::*;

const HOUR: i128 = 3_600_000_000_000;
const SALT: u64 = 7;

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// Events at `ktime` map to `base_wall + ktime`.
fn ctx(base_wall: i128) -> JsonContext<'static> {
    JsonContext { node: "node-a", clock: BootClock::from_offset(base_wall), node_salt: SALT }
}

/// A test config: no retention, no compaction unless a test asks.
fn cfg(dir: &Path) -> LakeConfig {
    LakeConfig {
        dir: dir.to_path_buf(),
        retention: Duration::ZERO,
        compact_min_files: usize::MAX,
        maintenance_interval: Duration::from_secs(3600),
        ..LakeConfig::default()
    }
}

fn owned(kind: Kind, ktime: u64, pid: u32, body: OwnedBody, strings: [&[u8]; 3]) -> OwnedEvent {
    OwnedEvent {
        kind,
        subject: Subject {
            ktime_ns: ktime,
            cgroup_id: 4242,
            proc_start_ns: 17,
            pid,
            tgid: pid,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            pidns: 4026531836,
            mntns: 4026531841,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            ..Subject::default()
        },
        flags: 0,
        count: 1,
        aggregate: None,
        body,
        strings: strings.map(<[u8]>::to_vec),
    }
}

fn net(remote_port: u16, v6: bool) -> OwnedBody {
    let mut remote = Endpoint { addr: [0; 16], port: remote_port };
    let family = if v6 {
        remote.addr = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        10
    } else {
        remote.addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        2
    };
    let local = Endpoint { addr: [192, 168, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], port: 40000 };
    OwnedBody::Net { ret: 0, family, protocol: 17, local, remote, bytes_sent: 10, bytes_received: 20 }
}

/// A shell whose stdin and stdout are a TCP connection to 10.9.8.7:4444, stderr a terminal.
fn reverse_shell() -> tracelake_model::Launch {
    use tracelake_model::{Fd, FdType, Launch, Session};
    let mut sock = Fd { fd_type: FdType::Socket, family: 2, protocol: 6, ..Fd::default() };
    sock.remote = Endpoint { addr: [10, 9, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], port: 4444 };
    let tty = Fd { fd_type: FdType::Tty, rdev: 136 << 20 | 3, ..Fd::default() };
    Launch { session: Session { tty: 136 << 20 | 3, sid: 9, leader: false }, stdio: [sock, sock, tty] }
}

/// One event of `kind` at `ktime`, with a plausible body.
fn event_of(kind: Kind, ktime: u64, pid: u32) -> OwnedEvent {
    let file = OwnedBody::File { ret: 3, ino: 99, dev: 8, open_flags: 0o101, mode: 0o644, owner_uid: 0, owner_gid: 0 };
    let sys = OwnedBody::Syscall { nr: 165, ret: 0, args: [1, 2, 3, 4, 5, 6] };
    match kind {
        Kind::Exec => owned(
            kind,
            ktime,
            pid,
            OwnedBody::Exec { exe_ino: 5, exe_dev: 8, exe_nlink: 1, launch: Some(reverse_shell()) },
            [b"/usr/bin/curl", b"curl\0-s\0http://10.0.0.1/\0", b"/"],
        ),
        Kind::ProcessSnapshot => {
            owned(kind, ktime, pid, OwnedBody::Snapshot { launch: None }, [b"/bin/sh", b"sh\0", b"/root"])
        }
        Kind::Fork => owned(kind, ktime, pid, OwnedBody::Fork { child_pid: pid + 1, child_start_ns: 5 }, [b""; 3]),
        Kind::Exit => owned(kind, ktime, pid, OwnedBody::Exit { exit_code: 1, signal: 9, core_dump: false }, [b""; 3]),
        Kind::CloneThread => owned(kind, ktime, pid, OwnedBody::Threads, [b""; 3]),
        Kind::FileOpen | Kind::FileRename | Kind::FileUnlink | Kind::FileChmod | Kind::FileChown => {
            owned(kind, ktime, pid, file, [b"/etc/passwd", b"/etc/passwd.new", b""])
        }
        Kind::NetConnect | Kind::NetAccept | Kind::NetListen | Kind::NetClose | Kind::NetBind => {
            owned(kind, ktime, pid, net(443, ktime.is_multiple_of(2)), [b""; 3])
        }
        Kind::NetUdpSend => owned(kind, ktime, pid, net(53, false), [b""; 3]),
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
        | Kind::PivotRoot => owned(kind, ktime, pid, sys, [b"/dev/sda1", b"/host", b"ext4"]),
    }
}

fn identity() -> Identity<'static> {
    let mut id = Identity {
        container_id: Some("c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"),
        container_runtime: Some("containerd"),
        pod_uid: Some("0f1e2d3c-aaaa-bbbb-cccc-000000000001"),
        pod: Some("api-7d9f-x2"),
        namespace: Some("payments"),
        container_name: Some("api"),
        image: Some("registry.example/api:1.2"),
        workload_kind: Some("Deployment"),
        workload: Some("api"),
        workload_source: Some("api"),
        image_digest: Some("sha256:4f1f2b0a9c7d6e5f4f1f2b0a9c7d6e5f4f1f2b0a9c7d6e5f4f1f2b0a9c7d6e5f"),
        pod_ip: Some("10.42.1.7"),
        peer_pod: Some("kube-dns-5d4b-q8x2m"),
        peer_namespace: Some("kube-system"),
        peer_workload_kind: Some("Deployment"),
        peer_workload: Some("coredns"),
        process_exe: Some(b"/usr/bin/curl"),
        ..Identity::default()
    };
    id.ancestors[0] = Some(Ancestor { pid: 1, exe: b"/bin/sh", args: b"sh\0-c\0curl x\0" });
    id.ancestors[1] = Some(Ancestor { pid: 0, exe: b"/usr/bin/containerd-shim-runc-v2", args: b"shim\0" });
    id
}

/// Expected row of the python check: `column` of the row with `ev`'s id, as hex of its bytes.
fn value(table: Table, ev: &Event<'_>, column: &str, v: Value) -> Value {
    json!({"table": table.name(), "event_id": format!("{:016x}", event_id(SALT, ev)), "column": column, "hex": v})
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs the independent reader; returns its summary.
fn check(dir: &Path, expect: Option<&Value>, extra: &[&str]) -> Result<Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_lake.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(extra).arg(dir);
    let tmp = tempfile::NamedTempFile::new().unwrap();
    if let Some(e) = expect {
        std::fs::write(tmp.path(), e.to_string()).unwrap();
        cmd.arg(tmp.path());
    }
    let out = cmd.output().expect("python3 (scripts/setup.sh installs pyarrow)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn expect_of(events: &[OwnedEvent], values: Vec<Value>) -> Value {
    let mut rows = serde_json::Map::new();
    let mut ids = serde_json::Map::new();
    for t in Table::EVENT_TABLES {
        let of: Vec<String> = events
            .iter()
            .filter(|e| Table::of(&e.as_event()) == t)
            .map(|e| format!("{:016x}", event_id(SALT, &e.as_event())))
            .collect();
        rows.insert(t.name().into(), json!(of.len()));
        ids.insert(t.name().into(), json!(of));
    }
    json!({"rows": rows, "event_ids": ids, "values": values})
}

#[test]
fn events_of_every_kind_round_trip_through_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    // 11:30 UTC on 2024-02-29: the events cross into the next hour partition.
    let base = 1_709_206_200_000_000_000i128;
    let mut c = cfg(dir.path());
    c.rotate_bytes = 512 * 1024;
    c.row_group_rows = 1000;
    let mut sink = LakeSink::open(&c, ctx(base)).unwrap();
    let n = 6000u64;
    let mut events = Vec::new();
    for i in 0..n {
        // Out of order within a flush (a permutation), 1.2 s apart: 2 hours in all.
        let t = (i * 2719 % n) * 1_200_000_000;
        events.push(event_of(Kind::ALL[i as usize % Kind::ALL.len()], t, 1000 + (i % 50) as u32));
    }
    // The hard values: non-UTF-8, newlines, a 1 MiB argument.
    let big = vec![b'A'; 1 << 20];
    let mut args = b"sh\0-c\0echo a\nb\0\xff\xfeok\0".to_vec();
    args.extend_from_slice(&big);
    args.push(0);
    let mut exec = event_of(Kind::Exec, 77, 31337);
    exec.strings = [b"/tmp/\xffbin\nx".to_vec(), args.clone(), b"/w\xe9rk".to_vec()];
    exec.flags = flags::ARGS_TRUNCATED | flags::EXE_DELETED;
    // Valid UTF-8 (checked once for the whole argv): an empty argument, a multi-byte character.
    let mut env = event_of(Kind::Exec, 78, 31341);
    env.strings[1] = "env\0\0A=\u{e9}\0".into();
    let mut bare = event_of(Kind::Exec, 80, 31342);
    bare.strings[1] = Vec::new();
    let mut open = event_of(Kind::FileOpen, 79, 31337);
    open.strings[0] = b"/tmp/new\nline".to_vec();
    // Keyed like `exe`: a path that is not UTF-8 keeps its bytes in `path_raw`.
    let mut odd = event_of(Kind::FileOpen, 82, 31343);
    odd.strings[0] = b"/data/\xffx".to_vec();
    let mut summary = event_of(Kind::FileOpen, 81, 31338);
    summary.count = 1_000_000;
    summary.aggregate = Some(Aggregate { first_ns: 10, last_ns: 81 });
    let dns = event_of(Kind::NetUdpSend, 83, 31339);
    let mut mount = event_of(Kind::Mount, 85, 31340);
    mount.body = OwnedBody::Syscall { nr: 165, ret: 0, args: [0, 0, 0, 4096, 0, 0] };
    let arg_items: Vec<Value> = [&b"sh"[..], b"-c", b"echo a\nb", "\u{fffd}\u{fffd}ok".as_bytes(), &big]
        .iter()
        .map(|a| json!(hex(a)))
        .collect();
    let (e, o, s, d, m) = (exec.as_event(), open.as_event(), summary.as_event(), dns.as_event(), mount.as_event());
    let (v, b, x) = (env.as_event(), bare.as_event(), odd.as_event());
    // Each kind's numbers, and nulls for the numbers of other kinds.
    let of = |k: Kind| events.iter().find(|e| e.kind == k).unwrap().as_event();
    let (fork, exit, rename, chown, close) =
        (of(Kind::Fork), of(Kind::Exit), of(Kind::FileRename), of(Kind::FileChown), of(Kind::NetClose));
    let snap = of(Kind::ProcessSnapshot);
    let numbers = [
        value(Table::ProcessActivity, &e, "exe_ino", json!(5)),
        value(Table::ProcessActivity, &e, "child_pid", Value::Null),
        value(Table::ProcessActivity, &fork, "child_pid", json!(fork.subject.pid + 1)),
        value(Table::ProcessActivity, &fork, "child_start_ns", json!(5)),
        value(Table::ProcessActivity, &fork, "exe_ino", Value::Null),
        value(Table::ProcessActivity, &fork, "fileless", Value::Null),
        value(Table::ProcessActivity, &exit, "exit_code", json!(1)),
        value(Table::ProcessActivity, &exit, "signal", json!(9)),
        value(Table::ProcessActivity, &exit, "core_dump", json!(false)),
        value(Table::ProcessActivity, &exit, "cmdline", Value::Null),
        value(Table::ProcessActivity, &e, "sid", json!(9)),
        value(Table::ProcessActivity, &e, "session_leader", json!(false)),
        value(Table::ProcessActivity, &e, "stdio_remote_port", json!(4444)),
        value(Table::ProcessActivity, &fork, "sid", Value::Null),
        value(Table::ProcessActivity, &fork, "session_leader", Value::Null),
        value(Table::ProcessActivity, &fork, "stdio_remote_port", Value::Null),
        value(Table::ProcessActivity, &snap, "sid", Value::Null),
        value(Table::FileActivity, &rename, "rename_flags", json!(0o101)),
        value(Table::FileActivity, &rename, "path2", json!(hex(b"/etc/passwd.new"))),
        value(Table::FileActivity, &rename, "open_flags", Value::Null),
        value(Table::FileActivity, &rename, "ino", Value::Null),
        value(Table::FileActivity, &chown, "owner_uid", json!(0)),
        value(Table::FileActivity, &chown, "mode", Value::Null),
        value(Table::FileActivity, &o, "mode", json!(0o644)),
        value(Table::FileActivity, &o, "ino", json!(99)),
        value(Table::FileActivity, &o, "ret", json!(3)),
        value(Table::NetworkActivity, &close, "bytes_sent", json!(10)),
        value(Table::NetworkActivity, &close, "bytes_received", json!(20)),
        value(Table::NetworkActivity, &close, "local_port", json!(40000)),
        value(Table::DnsActivity, &d, "bytes_sent", Value::Null),
    ];
    let values = vec![
        value(Table::ProcessActivity, &v, "args", json!([hex(b"env"), hex(b""), hex("A=\u{e9}".as_bytes())])),
        value(Table::ProcessActivity, &v, "cmdline", json!(hex("env  A=\u{e9}".as_bytes()))),
        value(Table::ProcessActivity, &v, "args_raw", Value::Null),
        value(Table::ProcessActivity, &b, "args", json!([])),
        value(Table::ProcessActivity, &b, "cmdline", json!(hex(b""))),
        value(Table::ProcessActivity, &e, "exe", json!(hex("/tmp/\u{fffd}bin\nx".as_bytes()))),
        value(Table::ProcessActivity, &e, "exe_raw", json!(hex(b"/tmp/\xffbin\nx"))),
        value(Table::ProcessActivity, &e, "args", json!(arg_items)),
        value(Table::ProcessActivity, &e, "args_raw", json!(hex(&args))),
        value(Table::ProcessActivity, &e, "cwd_raw", json!(hex(b"/w\xe9rk"))),
        value(Table::ProcessActivity, &e, "cwd", json!(hex("/w\u{fffd}rk".as_bytes()))),
        value(Table::ProcessActivity, &e, "fileless", json!(true)),
        value(Table::ProcessActivity, &e, "tty", json!(hex(b"pts/3"))),
        value(Table::ProcessActivity, &e, "stdin_type", json!(hex(b"socket"))),
        value(Table::ProcessActivity, &e, "stdout_type", json!(hex(b"socket"))),
        value(Table::ProcessActivity, &e, "stderr_type", json!(hex(b"tty"))),
        value(Table::ProcessActivity, &e, "stdio_protocol", json!(hex(b"tcp"))),
        value(Table::ProcessActivity, &e, "stdio_remote_ip", json!(hex(b"10.9.8.7"))),
        value(Table::ProcessActivity, &fork, "tty", Value::Null),
        value(Table::ProcessActivity, &fork, "stdin_type", Value::Null),
        value(Table::ProcessActivity, &fork, "stdio_remote_ip", Value::Null),
        value(Table::ProcessActivity, &snap, "stdin_type", Value::Null),
        value(Table::ProcessActivity, &e, "flags", json!([hex(b"args_truncated"), hex(b"exe_deleted")])),
        value(Table::ProcessActivity, &e, "workload_kind", json!(hex(b"Deployment"))),
        value(Table::ProcessActivity, &e, "workload", json!(hex(b"api"))),
        value(Table::ProcessActivity, &e, "parent_cmdline", json!(hex(b"sh -c curl x"))),
        value(Table::ProcessActivity, &e, "parent_exe", json!(hex(b"/bin/sh"))),
        value(Table::ProcessActivity, &e, "ancestor_pids", json!([1, 0])),
        value(Table::FileActivity, &o, "parent_cmdline", json!(hex(b"sh -c curl x"))),
        value(
            Table::ProcessActivity,
            &e,
            "ancestor_exes",
            json!([hex(b"/bin/sh"), hex(b"/usr/bin/containerd-shim-runc-v2")]),
        ),
        value(Table::FileActivity, &o, "path", json!(hex(b"/tmp/new\nline"))),
        value(Table::FileActivity, &o, "path_raw", Value::Null),
        value(Table::FileActivity, &x, "path", json!(hex("/data/\u{fffd}x".as_bytes()))),
        value(Table::FileActivity, &x, "path_raw", json!(hex(b"/data/\xffx"))),
        value(Table::FileActivity, &o, "open_flags", json!(0o101)),
        value(Table::FileActivity, &s, "count", json!(1_000_000)),
        value(Table::FileActivity, &s, "summary", json!(true)),
        value(Table::DnsActivity, &d, "remote_ip", json!(hex(b"10.1.2.3"))),
        value(Table::DnsActivity, &d, "remote_port", json!(53)),
        value(Table::DnsActivity, &d, "local_ip", json!(hex(b"192.168.0.9"))),
        value(Table::DnsActivity, &d, "family", json!(hex(b"inet"))),
        value(Table::DnsActivity, &d, "protocol", json!(hex(b"udp"))),
        value(Table::DnsActivity, &d, "peer_workload", json!(hex(b"coredns"))),
        value(Table::DnsActivity, &d, "peer_namespace", json!(hex(b"kube-system"))),
        value(Table::DnsActivity, &d, "pod_ip", json!(hex(b"10.42.1.7"))),
        value(
            Table::ProcessActivity,
            &e,
            "image_digest",
            json!(hex(b"sha256:4f1f2b0a9c7d6e5f4f1f2b0a9c7d6e5f4f1f2b0a9c7d6e5f4f1f2b0a9c7d6e5f")),
        ),
        value(Table::KernelActivity, &m, "target", json!(hex(b"/host"))),
        value(Table::KernelActivity, &m, "fstype", json!(hex(b"ext4"))),
        value(Table::KernelActivity, &m, "mount_flags", json!(4096)),
        value(Table::KernelActivity, &m, "class_uid", json!(1003)),
    ];
    let values: Vec<Value> = values.into_iter().chain(numbers).collect();
    events.extend([exec, env, bare, open, odd, summary, dns, mount]);
    let id = identity();
    for ev in &events {
        sink.push_with(&ev.as_event(), &id);
    }
    sink.flush().unwrap();
    let stats = sink.close(0, Duration::ZERO).unwrap();
    assert_eq!(stats.rows_written, events.len() as u64);
    assert_eq!((stats.rows_lost, stats.rows_pending, stats.write_errors), (0, 0, 0));
    let summary = check(dir.path(), Some(&expect_of(&events, values)), &[]).unwrap();
    assert!(summary["files"].as_u64().unwrap() > 10, "size rotation made several files: {summary}");
    assert!(summary["partitions"].as_u64().unwrap() >= 10, "2 hours x 5 tables: {summary}");
    assert_eq!(summary["event_ids"], json!(events.len()));
}

#[test]
fn every_kind_has_an_event_table() {
    for k in Kind::ALL {
        let t = Table::of(&event_of(k, 1, 1).as_event());
        assert!(Table::EVENT_TABLES.contains(&t), "{k:?}");
    }
    assert_eq!(Table::of(&event_of(Kind::NetUdpSend, 1, 1).as_event()), Table::DnsActivity);
    assert_eq!(Table::of(&event_of(Kind::NetConnect, 1, 1).as_event()), Table::NetworkActivity);
}

#[test]
fn schema_doc_lists_every_column() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema.md")).unwrap();
    for t in Table::ALL {
        assert!(doc.contains(&format!("`{}`", t.name())), "table {} undocumented", t.name());
        for f in t.schema().fields() {
            let name = f.name().trim_end_matches("_raw");
            assert!(doc.contains(&format!("`{name}`")), "column {}.{} undocumented", t.name(), f.name());
        }
    }
}

#[test]
fn config_rejects_unknown_fields_and_zero_sizes() {
    let err = toml::from_str::<LakeConfig>("rotate_byte = 1").unwrap_err().to_string();
    assert!(err.contains("rotate_byte"), "{err}");
    let c: LakeConfig = toml::from_str("dir = \"/x\"\nrotate_age = \"5m\"\nretention = \"2d\"").unwrap();
    assert_eq!(c.rotate_age, Duration::from_secs(300));
    assert_eq!(c.retention, Duration::from_secs(2 * 86400));
    let dir = tempfile::tempdir().unwrap();
    let bad = LakeConfig { rotate_bytes: 0, ..cfg(dir.path()) };
    assert!(matches!(LakeSink::open(&bad, ctx(0)), Err(LakeError::Config(_))));
}

mod constant_chunk;
mod dict_chunk;
mod durability;

/// IP history intervals go to `ip_ownership`, partitioned by `valid_from`,
/// and read back by pyarrow with the table's types.
#[test]
fn ip_ownership_rows_round_trip_through_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_709_206_200_000_000_000i64;
    let mut sink = LakeSink::open(&cfg(dir.path()), ctx(i128::from(base))).unwrap();
    let a = OwnershipRow {
        ip: "10.42.1.7",
        valid_from: base,
        valid_to: Some(base + 60_000_000_000),
        pod: Some("web-7d9f8b6c5d-aaaaa"),
        container_id: Some("c0ffee"),
        source: "node",
        seq: 1,
        ..OwnershipRow::default()
    };
    let b = OwnershipRow {
        valid_from: base + 3_600_000_000_000,
        valid_to: None,
        pod: Some("api-6c8f9d7b5b-bbbbb"),
        workload_kind: Some("Deployment"),
        workload: Some("api"),
        source: "kube",
        seq: 2,
        ..a.clone()
    };
    let svc = OwnershipRow { ip: "10.96.0.10", service: Some("kube-dns"), namespace: Some("kube-system"), ..b.clone() };
    sink.push_batch(Table::IpOwnership, ownership_batch(&[a, b, svc]).unwrap());
    let stats = sink.close(0, Duration::ZERO).unwrap();
    assert_eq!(stats.rows_written, 3);
    let summary = check(dir.path(), None, &[]).unwrap();
    assert_eq!(summary["rows"]["ip_ownership"], 3, "{summary}");
    assert_eq!(summary["partitions"], 2, "two hours of valid_from: {summary}");
}

/// Identity and lineage columns are interned per batch: rows of many identities, in
/// turn, some sharing strings, one whose strings change in place (same
/// address, other content), must each read back with their own values.
#[test]
fn interleaved_identities_read_back_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_709_206_200_000_000_000i128;
    let mut c = cfg(dir.path());
    c.rotate_bytes = 64 * 1024;
    let mut sink = LakeSink::open(&c, ctx(base)).unwrap();
    let pods: Vec<String> = (0..7).map(|i| format!("web-{i}")).collect();
    let mut reused = String::from("job-aaaa");
    let mut parent_args = b"sh\0-c\0job-a\xff\0".to_vec();
    let mut events = Vec::new();
    let mut values = Vec::new();
    for i in 0..3000u64 {
        let ev = event_of(Kind::ALL[i as usize % Kind::ALL.len()], i * 1_000_000, 1000 + (i % 50) as u32);
        let table = Table::of(&ev.as_event());
        let mut id = identity();
        let pod = match i % 9 {
            // Host process: no identity at all.
            0 => None,
            // Same address as the last time, other bytes.
            8 => {
                let b = if i % 2 == 0 { "job-bbbb" } else { "job-cccc" };
                reused.replace_range(.., b);
                parent_args[10] = if i % 2 == 0 { b'b' } else { b'c' };
                Some(reused.as_str())
            }
            k => Some(pods[k as usize % pods.len()].as_str()),
        };
        if i % 9 == 8 {
            id.ancestors[0] = Some(Ancestor { pid: 7, exe: b"/bin/sh", args: &parent_args });
        } else if i % 5 == 0 {
            id.ancestors = Default::default();
        }
        if pod.is_none() {
            id = Identity { process_exe: id.process_exe, ancestors: id.ancestors, ..Identity::default() };
        } else {
            id.pod = pod;
            id.peer_pod = if i % 3 == 0 { None } else { pod };
        }
        sink.push_with(&ev.as_event(), &id);
        let e = ev.as_event();
        let h = |s: Option<&str>| s.map_or(Value::Null, |s| json!(hex(s.as_bytes())));
        if i % 17 == 0 || i % 9 == 8 || i % 9 == 0 {
            values.push(value(table, &e, "pod", h(pod)));
            values.push(value(table, &e, "peer_pod", h(id.peer_pod)));
            values.push(value(table, &e, "namespace", h(id.namespace)));
            values.push(value(table, &e, "container", json!(id.container_id.is_some())));
            let cmdline = id.ancestors[0].map(|p| {
                let args: Vec<String> =
                    super::columns::split_args(p.args).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                args.join(" ")
            });
            values.push(value(table, &e, "parent_cmdline", h(cmdline.as_deref())));
            values.push(value(
                table,
                &e,
                "ancestor_pids",
                json!(id.ancestors.iter().map_while(|a| a.map(|a| a.pid)).collect::<Vec<_>>()),
            ));
        }
        events.push(ev);
    }
    let stats = sink.close(0, Duration::ZERO).unwrap();
    assert_eq!(stats.rows_written, events.len() as u64);
    let summary = check(dir.path(), Some(&expect_of(&events, values)), &[]).unwrap();
    assert!(summary["files"].as_u64().unwrap() > 5, "several batches: {summary}");
    assert_eq!(summary["event_ids"], json!(events.len()));
}

/// Batches built elsewhere (the live detector's) and rows pushed one by one share a table's next file: every
/// event is written once, read back by pyarrow with its own values, and the file is sorted by time. The
/// batches come with their keys (as the detector hands them over: their keyed columns encoded from the keys
/// merged with the pushed rows') or without.
#[test]
fn built_batches_and_pushed_rows_share_the_next_file() {
    for keyed in [true, false] {
        built_and_pushed(keyed);
    }
}

fn built_and_pushed(keyed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_709_206_200_000_000_000i128;
    let c = cfg(dir.path());
    let context = ctx(base);
    let mut sink = LakeSink::open(&c, context).unwrap();
    let mut builders: Vec<BatchBuilder> = Table::EVENT_TABLES.into_iter().filter_map(BatchBuilder::new).collect();
    let pods: Vec<String> = (0..5).map(|i| format!("pod-{i}")).collect();
    let mut events = Vec::new();
    let mut values = Vec::new();
    for i in 0..2000u64 {
        // Descending times: the file must still come out sorted.
        let mut ev = event_of(Kind::ALL[i as usize % Kind::ALL.len()], (2000 - i) * 1_000_000, 1000 + (i % 50) as u32);
        if let OwnedBody::File { .. } = ev.body {
            ev.strings[0] = format!("/srv/data-{}", i % 7).into_bytes();
        }
        let mut id = identity();
        // Each batch holds some pods the others do not: merged keys must not mix them up.
        id.pod = Some(pods[(i as usize / 300 + i as usize % 2) % pods.len()].as_str());
        let e = ev.as_event();
        let table = Table::of(&e);
        if i % 3 == 0 {
            sink.push_with(&e, &id);
        } else {
            builders.iter_mut().find(|b| b.table() == table).unwrap().append(&context, &e, &id);
        }
        if i % 7 == 0 {
            values.push(value(table, &e, "pod", json!(hex(id.pod.unwrap().as_bytes()))));
            values.push(value(table, &e, "pid", json!(e.subject.pid)));
            values.push(value(table, &e, "kind", json!(hex(e.kind.name().as_bytes()))));
            if let Body::File { path, .. } = e.body {
                values.push(value(table, &e, "path", json!(hex(path))));
            }
        }
        if i % 500 == 499 {
            for b in builders.iter_mut().filter(|b| !b.is_empty()) {
                if keyed {
                    let (batch, keys) = b.finish_with_keys().unwrap();
                    sink.push_built_keyed(b.table(), batch, keys);
                } else {
                    sink.push_built(b.table(), b.finish().unwrap());
                }
            }
        }
        events.push(ev);
    }
    assert_eq!(sink.buffered_rows(), events.len());
    let stats = sink.close(0, Duration::ZERO).unwrap();
    assert_eq!((stats.rows_buffered, stats.rows_written), (events.len() as u64, events.len() as u64));
    let summary = check(dir.path(), Some(&expect_of(&events, values)), &[]).unwrap();
    assert_eq!(summary["event_ids"], json!(events.len()));
    assert_eq!(summary["files"], json!(Table::EVENT_TABLES.len()), "one file per table: {summary}");
}
