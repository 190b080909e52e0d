#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::sync::Arc;

use arrow::array::{ArrayRef, ListBuilder, StringBuilder, TimestampNanosecondArray, UInt16Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::*;

const S: i64 = 1_000_000_000;

fn cfg() -> ProfileConfig {
    ProfileConfig {
        warmup: Duration::from_secs(10),
        quiet_period: Duration::from_secs(60),
        min_observation: Duration::from_secs(120),
        anomalies_per_minute: 3,
        ..ProfileConfig::default()
    }
}

/// An exec row: (time s, workload, exe, argv0).
type ExecRow<'a> = (i64, &'a str, &'a str, &'a str);

/// process_activity rows.
fn execs(rows: &[ExecRow<'_>]) -> (Table, RecordBatch) {
    let mut args = ListBuilder::new(StringBuilder::new());
    for (_, _, _, a0) in rows {
        args.values().append_value(a0);
        args.append(true);
    }
    let s = |f: &dyn Fn(&ExecRow<'_>) -> String| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let schema = Schema::new(vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("namespace", DataType::Utf8, true),
        Field::new("workload_kind", DataType::Utf8, true),
        Field::new("workload", DataType::Utf8, true),
        Field::new("container_name", DataType::Utf8, true),
        Field::new("pod", DataType::Utf8, true),
        Field::new("exe", DataType::Utf8, true),
        Field::new("args", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
    ]);
    let time = TimestampNanosecondArray::from(rows.iter().map(|r| r.0 * S).collect::<Vec<_>>()).with_timezone("UTC");
    let cols: Vec<ArrayRef> = vec![
        Arc::new(time),
        s(&|_| "exec".into()),
        s(&|r| format!("{:016x}", r.0)),
        s(&|_| "shop".into()),
        s(&|_| "Deployment".into()),
        s(&|r| r.1.into()),
        s(&|_| "main".into()),
        s(&|r| format!("{}-7d9f8b6c5d-x2k4q", r.1)),
        s(&|r| r.2.into()),
        Arc::new(args.finish()),
    ];
    (Table::ProcessActivity, RecordBatch::try_new(Arc::new(schema), cols).unwrap())
}

/// network_activity connects: (time s, workload, remote ip, port).
fn connects(rows: &[(i64, &str, &str, u16)]) -> (Table, RecordBatch) {
    let schema = Schema::new(vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("namespace", DataType::Utf8, true),
        Field::new("workload_kind", DataType::Utf8, true),
        Field::new("workload", DataType::Utf8, true),
        Field::new("container_name", DataType::Utf8, true),
        Field::new("remote_ip", DataType::Utf8, true),
        Field::new("remote_port", DataType::UInt16, true),
    ]);
    let st = |v: Vec<String>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let time = TimestampNanosecondArray::from(rows.iter().map(|r| r.0 * S).collect::<Vec<_>>()).with_timezone("UTC");
    let cols: Vec<ArrayRef> = vec![
        Arc::new(time),
        st(rows.iter().map(|_| "net_connect".to_string()).collect()),
        st(rows.iter().map(|_| "shop".to_string()).collect()),
        st(rows.iter().map(|_| "Deployment".to_string()).collect()),
        st(rows.iter().map(|r| r.1.to_string()).collect()),
        st(rows.iter().map(|_| "main".to_string()).collect()),
        st(rows.iter().map(|r| r.2.to_string()).collect()),
        Arc::new(UInt16Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
    ];
    (Table::NetworkActivity, RecordBatch::try_new(Arc::new(schema), cols).unwrap())
}

/// A workload's normal loop through warm-up and learning until stable; then a new tool and a new destination
/// are each one anomaly naming the workload, repeats of them none, and the normal loop none.
#[test]
fn a_stable_profile_flags_what_is_new_once() {
    let mut e = ProfileEngine::new(cfg(), Vec::new(), 25);
    let normal = |t: i64| {
        vec![
            execs(&[(t, "web", "/bin/busybox", "sh"), (t, "web", "/usr/bin/nginx", "nginx")]),
            connects(&[(t, "web", "10.0.0.5", 5432)]),
        ]
    };
    // Start-up: a migration tool runs once during warm-up, learnt, never flagged.
    assert!(e.observe(&[execs(&[(0, "web", "/usr/bin/migrate", "migrate")])]).is_empty());
    for t in (5..300).step_by(5) {
        assert!(e.observe(&normal(t)).is_empty(), "normal behaviour at {t}s");
    }
    let p = e.profiles().pop().unwrap();
    assert_eq!(p.key.to_string(), "shop/Deployment/web/main");
    assert_eq!(p.classes[&Class::Exec].state, State::Stable, "{p:?}");
    assert!(p.classes[&Class::Exec].items.contains("/usr/bin/migrate|migrate"));

    let new_tool = e.observe(&[execs(&[(301, "web", "/usr/bin/curl", "curl")])]);
    assert_eq!(new_tool.len(), 1, "{new_tool:?}");
    let f = &new_tool[0];
    assert_eq!((f.rule, f.rule_id.as_str()), (25, "TL-PROF-001"));
    assert_eq!(f.get("workload"), Some("web"));
    assert_eq!(f.get("namespace"), Some("shop"));
    assert_eq!(f.get("pod"), Some("web-7d9f8b6c5d-x2k4q"));
    assert!(f.message.contains("/usr/bin/curl|curl") && f.message.contains("generation 1"), "{}", f.message);
    assert_eq!(f.event_ids, [format!("{:016x}", 301)]);
    let new_peer = e.observe(&[connects(&[(302, "web", "203.0.113.9", 4444)])]);
    assert_eq!(new_peer.len(), 1);
    assert_eq!(new_peer[0].rule_id, "TL-PROF-002");
    assert!(new_peer[0].message.contains("203.0.113.9:4444"), "{}", new_peer[0].message);
    // Each reported once; the normal loop goes on without findings.
    assert!(e.observe(&[execs(&[(303, "web", "/usr/bin/curl", "curl")])]).is_empty());
    for t in (305..400).step_by(5) {
        assert!(e.observe(&normal(t)).is_empty());
    }
    assert_eq!(e.stats.anomalies, 2);
}

/// Learning never ends while new things keep coming (no false stability), a locked profile flags what it does
/// not list from the start, and the rate limit counts what it holds back.
#[test]
fn locked_profiles_and_the_rate_limit() {
    let mut e = ProfileEngine::new(cfg(), Vec::new(), 0);
    for t in 0..100 {
        let exe = format!("/tmp/gen-{t}");
        assert!(e.observe(&[execs(&[(t * 10, "ci", &exe, "x")])]).is_empty(), "still learning at {t}");
    }
    let mut locked = Profile::new(
        ProfileKey {
            namespace: "shop".into(),
            workload_kind: "Deployment".into(),
            workload: "api".into(),
            container: "main".into(),
        },
        None,
        0,
    );
    locked.locked = true;
    locked.class(Class::Exec).items.insert("/app/api|api".into());
    let mut e = ProfileEngine::new(cfg(), vec![locked], 0);
    assert!(e.observe(&[execs(&[(1, "api", "/app/api", "api")])]).is_empty());
    let rows: Vec<ExecRow<'_>> = [("/bin/a", "a"), ("/bin/b", "b"), ("/bin/c", "c"), ("/bin/d", "d"), ("/bin/e", "e")]
        .iter()
        .map(|(x, y)| (2, "api", *x, *y))
        .collect();
    let found = e.observe(&[execs(&rows)]);
    assert_eq!(found.len(), 3, "anomalies_per_minute");
    assert_eq!(e.stats.rate_limited, 2);
}

#[test]
fn paths_that_vary_are_generalised() {
    assert_eq!(generalise("/var/log/app/2026-12-07.log"), "/var/log/app/*");
    assert_eq!(generalise("/tmp/tmp.8f3a9c2e1b/x"), "/tmp/*/x");
    assert_eq!(generalise("/proc/12345/status"), "/proc/*/status");
    assert_eq!(generalise("/etc/nginx/nginx.conf"), "/etc/nginx/nginx.conf");
    assert_eq!(generalise("/data/v2/k8s"), "/data/v2/k8s");
}

/// Export, edit (lock, add an item) and import round-trip; a malformed file is an error naming the line.
#[test]
fn files_round_trip_and_bad_ones_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.yaml");
    let mut e = ProfileEngine::new(cfg(), Vec::new(), 0);
    e.observe(&[execs(&[(0, "web", "/usr/bin/nginx", "nginx")]), connects(&[(0, "web", "10.0.0.5", 5432)])]);
    save(&path, e.profiles()).unwrap();
    let loaded = load(&path).unwrap();
    assert_eq!(loaded, e.profiles());
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace("locked: false", "locked: true");
    assert_ne!(edited, text);
    std::fs::write(&path, &edited).unwrap();
    let after = load(&path).unwrap();
    assert!(after[0].locked);
    assert_eq!(diff(&loaded, &after), ["+ shop/Deployment/web/main locked"]);
    let bad = edited.replacen("state: warmup", "state: sleepy", 1);
    std::fs::write(&path, &bad).unwrap();
    let err = load(&path).unwrap_err().to_string();
    let line = bad.lines().position(|l| l.contains("sleepy")).unwrap() + 1;
    assert!(err.contains(&format!("line {line}")), "{err}");
    assert!(load(&dir.path().join("none.yaml")).unwrap().is_empty(), "no file yet: no profiles");
}
