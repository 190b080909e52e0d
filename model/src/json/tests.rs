#![allow(clippy::unwrap_used, reason = "test code")]

use super::*;
use crate::{Endpoint, Subject};

fn ctx() -> JsonContext<'static> {
    JsonContext { node: "node-1", clock: BootClock::from_offset(1_700_000_000_000_000_000), node_salt: 7 }
}

fn parse(ev: &Event<'_>) -> serde_json::Value {
    let mut out = Vec::new();
    write_event(&mut out, &ctx(), ev);
    assert_eq!(out.last(), Some(&b'\n'));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line per event");
    serde_json::from_slice(&out).unwrap()
}

fn subject() -> Subject {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"true");
    Subject { ktime_ns: 5, pid: 42, tgid: 42, ppid: 1, comm, ..Subject::default() }
}

#[test]
fn exec_with_hostile_args_round_trips() {
    let args = b"sh\0-c\0echo \"hi\"\nrm -rf /\0bad\xff\xfe\0";
    let ev = Event {
        kind: Kind::Exec,
        subject: subject(),
        flags: flags::ARGS_TRUNCATED | flags::EXE_MEMFD,
        count: 1,
        aggregate: None,
        body: Body::Exec {
            exe: b"/memfd:x",
            args,
            cwd: b"/tmp/\n",
            exe_ino: 1,
            exe_dev: 2,
            exe_nlink: 0,
            launch: None,
        },
    };
    let v = parse(&ev);
    assert_eq!(v["kind"], "exec");
    assert_eq!(v["class"], "process");
    assert_eq!(v["comm"], "true");
    assert_eq!(v["args"][0], "sh");
    assert_eq!(v["args"][2], "echo \"hi\"\nrm -rf /");
    assert_eq!(v["args"][3], "bad\u{fffd}\u{fffd}");
    assert_eq!(v["args_hex"].as_str().unwrap().len(), args.len() * 2);
    assert_eq!(v["cwd"], "/tmp/\n");
    assert_eq!(v["fileless"], true);
    assert_eq!(v["flags"], serde_json::json!(["args_truncated", "exe_memfd"]));
    assert_eq!(v["time"], "2023-11-14T22:13:20.000000005Z");
}

#[test]
fn terminal_session_and_standard_fds_are_written() {
    use crate::{Fd, FdType, Launch, Session};
    let mut sock = Fd { fd_type: FdType::Socket, family: 2, protocol: 6, ..Fd::default() };
    sock.remote = Endpoint { addr: [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], port: 4444 };
    let tty = Fd { fd_type: FdType::Tty, rdev: 136 << 20 | 4, ..Fd::default() };
    let launch = Launch { session: Session { tty: 136 << 20 | 4, sid: 42, leader: true }, stdio: [sock, sock, tty] };
    let mut ev = Event {
        kind: Kind::Exec,
        subject: subject(),
        flags: 0,
        count: 1,
        aggregate: None,
        body: Body::Exec {
            exe: b"/bin/sh",
            args: b"sh\0",
            cwd: b"/",
            exe_ino: 1,
            exe_dev: 2,
            exe_nlink: 1,
            launch: Some(launch),
        },
    };
    let v = parse(&ev);
    assert_eq!((&v["tty"], &v["sid"], &v["session_leader"]), (&"pts/4".into(), &42.into(), &true.into()));
    let socket = serde_json::json!({"type": "socket", "family": "inet", "protocol": "tcp", "remote_ip": "10.1.2.3", "remote_port": 4444});
    assert_eq!((&v["stdin"], &v["stdout"]), (&socket, &socket));
    assert_eq!(v["stderr"], serde_json::json!({"type": "tty", "tty": "pts/4"}));
    let script = Launch {
        session: Session { tty: 0, sid: 7, leader: false },
        stdio: [Fd { fd_type: FdType::Pipe, ..Fd::default() }; 3],
    };
    ev.body = Body::Snapshot { exe: b"/bin/sh", args: b"sh\0", cwd: b"/", launch: Some(script) };
    let v = parse(&ev);
    assert!(v.get("tty").is_none(), "no terminal, no field");
    assert_eq!(
        (&v["sid"], &v["session_leader"], &v["stdin"]),
        (&7.into(), &false.into(), &serde_json::json!({"type": "pipe"}))
    );
    ev.body = Body::Snapshot { exe: b"/bin/sh", args: b"sh\0", cwd: b"/", launch: None };
    let v = parse(&ev);
    assert!(v.get("sid").is_none() && v.get("stdin").is_none(), "unknown is left out");
}

#[test]
fn non_utf8_path_is_kept_in_hex() {
    let ev = Event {
        kind: Kind::FileOpen,
        subject: subject(),
        flags: 0,
        count: 1,
        aggregate: None,
        body: Body::File {
            ret: 3,
            path: b"/etc/\xc3\x28\0x",
            path2: b"",
            ino: 9,
            dev: 8,
            open_flags: 0o101,
            mode: 0o644,
            owner_uid: 0,
            owner_gid: 0,
        },
    };
    let v = parse(&ev);
    assert_eq!(v["path"], "/etc/\u{fffd}(\u{0}x");
    assert_eq!(v["path_hex"], "2f6574632fc3280078");
    assert!(v.get("flags").is_none());
}

#[test]
fn network_addresses_render() {
    let mut remote = Endpoint { port: 443, ..Endpoint::default() };
    remote.addr[..4].copy_from_slice(&[10, 42, 1, 7]);
    let ev = Event {
        kind: Kind::NetConnect,
        subject: subject(),
        flags: flags::AGGREGATED,
        count: 3,
        aggregate: Some(crate::Aggregate { first_ns: 1, last_ns: 2 }),
        body: Body::Net {
            ret: -115,
            family: 2,
            protocol: 6,
            local: Endpoint::default(),
            remote,
            unix_path: b"",
            bytes_sent: 0,
            bytes_received: 0,
        },
    };
    let v = parse(&ev);
    assert_eq!(v["remote_ip"], "10.42.1.7");
    assert_eq!(v["remote_port"], 443);
    assert_eq!(v["protocol"], "tcp");
    assert_eq!(v["summary"], true);
    assert_eq!(v["count"], 3);
    assert!(v.get("peer_pod").is_none(), "no peer fields without a known peer");

    let id = Identity {
        pod_ip: Some("10.42.1.9"),
        peer_pod: Some("db-0"),
        peer_namespace: Some("pay\"ments\n"),
        peer_workload_kind: Some("StatefulSet"),
        peer_workload: Some("db"),
        peer_container_id: Some("abc"),
        peer_service: Some("db-svc"),
        ..Identity::default()
    };
    let mut out = Vec::new();
    write_event_with(&mut out, &ctx(), &ev, &id);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["pod_ip"], "10.42.1.9");
    assert_eq!(v["peer_pod"], "db-0");
    assert_eq!(v["peer_namespace"], "pay\"ments\n", "escaped and read back");
    assert_eq!(v["peer_workload_kind"], "StatefulSet");
    assert_eq!(v["peer_workload"], "db");
    assert_eq!(v["peer_container_id"], "abc");
    assert_eq!(v["peer_service"], "db-svc");
}

#[test]
fn event_ids_are_stable_and_distinct() {
    let a = Event { kind: Kind::Exit, subject: subject(), flags: 0, count: 1, aggregate: None, body: Body::Threads };
    let mut b = a;
    b.subject.ktime_ns += 1;
    assert_eq!(event_id(1, &a), event_id(1, &a));
    assert_ne!(event_id(1, &a), event_id(1, &b));
    assert_ne!(event_id(1, &a), event_id(2, &a));
}

#[test]
fn time_format_matches_humantime_across_dates() {
    let mut ns: u64 = 0;
    for _ in 0..20_000 {
        let mut out = Vec::new();
        write_time(&mut out, i128::from(ns));
        let expected =
            humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)).to_string();
        assert_eq!(String::from_utf8(out).unwrap(), expected, "at {ns} ns");
        // Steps that hit leap years, month ends and every field's carry.
        ns = ns.wrapping_add(86_399_999_999_937 * 3 + 7_777);
        if ns > 4_000_000_000_000_000_000 {
            ns %= 4_000_000_000_000_000_000;
        }
    }
}

#[test]
fn workload_and_pod_labels_render_escaped() {
    let ev = Event {
        kind: Kind::Exit,
        subject: subject(),
        flags: 0,
        count: 1,
        aggregate: None,
        body: Body::Exit { exit_code: 0, signal: 0, core_dump: false },
    };
    let labels: Vec<(Box<str>, Box<str>)> = vec![
        ("app".into(), "web".into()),
        ("odd\"key".into(), "line\nbreak\\ \u{1}".into()),
        ("pod-template-hash".into(), "7d9f8b6c5d".into()),
    ];
    let id = Identity {
        pod: Some("web-7d9f8b6c5d-x2k4q"),
        namespace: Some("shop"),
        workload_kind: Some("Deployment"),
        workload: Some("web"),
        workload_source: Some("api"),
        pod_labels: Some(&labels),
        ..Identity::default()
    };
    let mut out = Vec::new();
    write_event_with(&mut out, &ctx(), &ev, &id);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line per event");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (&v["workload_kind"], &v["workload"], &v["workload_source"]),
        (&"Deployment".into(), &"web".into(), &"api".into())
    );
    let l = v["pod_labels"].as_object().unwrap();
    assert_eq!(l.len(), 3);
    assert_eq!(l["app"], "web");
    assert_eq!(l["odd\"key"], "line\nbreak\\ \u{1}");

    // Unknown workload: the fields are left out, not empty.
    let mut out = Vec::new();
    write_event_with(&mut out, &ctx(), &ev, &Identity::default());
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v.get("workload").is_none() && v.get("workload_kind").is_none() && v.get("pod_labels").is_none());
}
