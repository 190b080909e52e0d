//! `tracelake agent` and `tracelake lake` as processes against a real
//! Kafka-protocol broker (tansu on loopback, from testkit), the lake read back
//! by pyarrow (scripts/check_lake.py).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracelake_model::json::{Identity, JsonContext};
use tracelake_model::{BootClock, Kind, OwnedBody, OwnedEvent, Subject};
use tracelake_sinks::kafka::{KafkaConfig, KafkaSink, SpoolConfig};
use tracelake_testkit::broker::Broker;

mod common;
use common::tracelake;

/// `tracelake lake` writing `dir`, its log in `log`.
fn start_lake(broker: &Broker, dir: &Path, rejected: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    tracelake()
        .args(["lake", "--brokers", &broker.addr(), "--lake"])
        .arg(dir)
        .env("TRACELAKE__LAKE_SERVICE__FILE_AGE", "\"500ms\"")
        .env("TRACELAKE__LAKE_SERVICE__REJECTED_DIR", format!("{:?}", rejected.display().to_string()))
        .env("TRACELAKE__SINKS__LAKE__RETENTION", "\"0s\"")
        .env("TRACELAKE__KAFKA__PARTITIONS", "3")
        // Static membership: the restarted process takes its partitions back at once (tansu, unlike Kafka,
        // was not seen to evict a SIGKILLed dynamic member after its session timeout).
        .env("TRACELAKE__LAKE_SERVICE__INSTANCE_ID", "lake-0")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap()
}

fn sigterm(child: &mut Child) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "lake exited with {status:?}");
}

/// Distinct event ids and rows in the visible files of the event tables, counted by pyarrow (findings the
/// agent's live detections sent are in detection_finding, which has no event_id).
fn pyarrow_count(dir: &Path) -> (u64, u64) {
    let script = format!(
        "import os, pyarrow.parquet as pq\n\
         ids = set(); rows = 0\n\
         for d, _, fs in os.walk({:?}):\n\
         \x20   if 'detection_finding' in d or 'ip_ownership' in d: continue\n\
         \x20   for f in fs:\n\
         \x20       if f.endswith('.parquet') and not f.startswith('.'):\n\
         \x20           c = pq.read_table(os.path.join(d, f), columns=['event_id']).column(0).to_pylist()\n\
         \x20           rows += len(c); ids.update(c)\n\
         print(len(ids), rows)",
        dir.display().to_string()
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Waits until pyarrow sees `n` distinct events; returns the last (distinct, rows).
fn wait_for(dir: &Path, n: u64, timeout: Duration) -> (u64, u64) {
    let deadline = Instant::now() + timeout;
    loop {
        let c = pyarrow_count(dir);
        if c.0 >= n || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn check_lake(dir: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_lake.py");
    let out = Command::new("python3").arg(script).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn event(i: u64) -> OwnedEvent {
    OwnedEvent {
        kind: Kind::FileOpen,
        subject: Subject {
            ktime_ns: 1_000_000 + i * 1000,
            cgroup_id: 1,
            proc_start_ns: 1,
            pid: 100 + (i % 1000) as u32,
            tgid: 100,
            ppid: 1,
            pidns: 1,
            mntns: 1,
            comm: *b"cat\0\0\0\0\0\0\0\0\0\0\0\0\0",
            ..Subject::default()
        },
        flags: 0,
        count: 1,
        aggregate: None,
        body: OwnedBody::File { ret: 3, ino: i, dev: 8, open_flags: 0, mode: 0o644, owner_uid: 0, owner_gid: 0 },
        strings: [format!("/data/file-{i}").into_bytes(), Vec::new(), Vec::new()],
    }
}

/// The lake service SIGKILLed twice while it writes, restarted each time:
/// still exactly N events, each once, and every visible file readable.
#[test]
fn lake_killed_mid_write_and_restarted_still_exactly_n() {
    let broker = Broker::start().unwrap();
    let (lake, rejected, spool, logs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log = logs.path().join("lake.log");
    let mut lake_proc = start_lake(&broker, lake.path(), rejected.path(), &log);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128;
    let ctx = JsonContext { node: "node-z", clock: BootClock::from_offset(now), node_salt: 3 };
    let cfg = KafkaConfig {
        brokers: broker.addr(),
        partitions: 3,
        linger: Duration::from_millis(100),
        batch_max_rows: 500,
        spool: SpoolConfig { dir: spool.path().to_path_buf(), ..SpoolConfig::default() },
        ..KafkaConfig::default()
    };
    let mut sink = KafkaSink::open(&cfg, ctx).unwrap();
    let n = 60_000u64;
    let ids = [
        Identity { namespace: Some("a"), workload: Some("x"), ..Identity::default() },
        Identity { namespace: Some("b"), workload: Some("y"), ..Identity::default() },
        Identity::default(),
    ];
    let mut kills = 0;
    for i in 0..n {
        sink.push_with(&event(i).as_event(), &ids[(i % 3) as usize]);
        if i % 1000 == 999 {
            std::thread::sleep(Duration::from_millis(150));
            sink.tick();
        }
        // Killed twice while files are being written (one every 500 ms), restarted after a pause.
        if i == 20_000 || i == 40_000 {
            // Only once it consumes: killed in the middle of joining the group (before its SyncGroup answer),
            // it can leave tansu 0.6's group stuck for good with the dead member as leader, and the next
            // process never gets partitions (seen under load; docs/kafka.md).
            let joined = Instant::now();
            while std::fs::read_to_string(&log).unwrap_or_default().matches("lake: partitions assigned").count()
                <= kills
            {
                assert!(joined.elapsed() < Duration::from_secs(60), "lake {kills} never got partitions");
                std::thread::sleep(Duration::from_millis(100));
            }
            lake_proc.kill().unwrap();
            lake_proc.wait().unwrap();
            kills += 1;
            std::thread::sleep(Duration::from_secs(1));
            lake_proc = start_lake(&broker, lake.path(), rejected.path(), &log);
        }
    }
    assert!(sink.flush(Duration::from_secs(60)));
    let _ = sink.close(Duration::from_secs(5)).unwrap();
    let (distinct, rows) = wait_for(lake.path(), n, Duration::from_secs(120));
    // Anything late (a duplicate) would land within a few file periods.
    std::thread::sleep(Duration::from_secs(3));
    sigterm(&mut lake_proc);
    assert_eq!(kills, 2);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!((distinct, rows), (n, n), "lake log:\n{}", &text[text.len().saturating_sub(4000)..]);
    // Every visible file is readable, sorted, no event id twice, no temporary file left.
    let summary = check_lake(lake.path());
    assert_eq!(summary["event_ids"].as_u64().unwrap(), n, "{summary}");
    assert!(std::fs::read_dir(rejected.path()).map_or(0, Iterator::count) == 0, "nothing rejected");
}

/// The real sensor on this host through `tracelake agent` → broker → `tracelake lake`: every event the agent
/// delivered is in the lake once, this test's own process among them.
#[test]
fn agent_events_reach_the_lake_through_kafka() {
    let broker = Broker::start().unwrap();
    let (lake, rejected, spool, logs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log = logs.path().join("lake.log");
    let mut lake_proc = start_lake(&broker, lake.path(), rejected.path(), &log);
    let out = tracelake()
        .args(["agent", "--for", "4s", "--brokers", &broker.addr()])
        // This test counts the sensor's rows; ip_ownership's travel is tested on its own below.
        .env("TRACELAKE__ENRICHER__IP_HISTORY__ENABLED", "false")
        .env("TRACELAKE__KAFKA__SPOOL__DIR", format!("{:?}", spool.path().display().to_string()))
        .env("TRACELAKE__KAFKA__PARTITIONS", "3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let delivered = logged(&stderr, "stopped", "delivered");
    // The agent's live detections send their findings through Kafka too.
    let findings = logged(&stderr, "detections stopped", "findings");
    assert_eq!(logged(&stderr, "kafka status", "delivered_rows"), delivered + findings, "{stderr}");
    assert_eq!(logged(&stderr, "kafka status", "spool_messages"), 0);
    let (distinct, rows) = wait_for(lake.path(), delivered, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    sigterm(&mut lake_proc);
    assert_eq!((distinct, rows), (delivered, delivered), "{}", std::fs::read_to_string(&log).unwrap());
    check_lake(lake.path());
    let script = format!(
        "import pyarrow.dataset as ds, pyarrow.compute as pc\n\
         t = ds.dataset('{}/process_activity', partitioning='hive').to_table()\n\
         m = pc.and_(pc.equal(t['kind'], 'process_snapshot'), pc.equal(t['pid'], {}))\n\
         print(t.filter(m).num_rows)",
        lake.path().display(),
        std::process::id()
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", String::from_utf8_lossy(&out.stderr));
}

/// `key=<n>` from the last matching log line.
fn logged(stderr: &str, line: &str, key: &str) -> u64 {
    let l = stderr.lines().rev().find(|l| l.contains(line)).unwrap_or_else(|| panic!("no '{line}' in {stderr}"));
    let v = l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap();
    v.parse().unwrap()
}

/// `tracelake config` shows the Kafka sections and never a secret.
#[test]
fn config_shows_the_kafka_sections_with_secrets_redacted() {
    let out = tracelake().arg("config").env("TRACELAKE__KAFKA__SASL__PASSWORD", "hunter2").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for section in ["[kafka]", "[kafka.spool]", "[kafka.sasl]", "[lake_service]"] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("<redacted>"));
    let bad = tracelake().arg("config").env("TRACELAKE__KAFKA__SPOOL__POLICY", "drop_all").output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("drop_all"));
}

/// Kills the child if the test fails before stopping it.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Live detections in agent mode: a rule fires on the agent, its finding travels through Kafka like the
/// events, and the lake service writes it into detection_finding, where pyarrow reads it next to the event
/// that triggered it. Every finding the agent logged arrives, once.
#[test]
fn agent_findings_reach_detection_finding_through_kafka() {
    let broker = Broker::start().unwrap();
    let (lake, rejected, spool, logs, rules, marker_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let marker = marker_dir.path().join(format!("tl-kafka-finding-{}", std::process::id()));
    std::fs::write(&marker, "x").unwrap();
    std::fs::write(
        rules.path().join("marker.sql"),
        format!(
            "-- id: TL-TEST-KAFKA\n-- title: Marker file opened\n-- severity: high\n-- tactic: Collection\n\
             -- technique: Data from local system\n-- mitre: T1005\n-- tables: file_activity\n\
             -- description: The test's marker file was opened.\n-- false_positives: none\n-- suppress: 1h\n\n\
             SELECT * FROM file_activity WHERE kind = 'file_open' AND path = '{}'\n",
            marker.display()
        ),
    )
    .unwrap();
    let log = logs.path().join("lake.log");
    let mut lake_proc = Reap(start_lake(&broker, lake.path(), rejected.path(), &log));
    let mut cmd = tracelake();
    cmd.args(["agent", "--for", "8s", "--brokers", &broker.addr()])
        .env("TRACELAKE__KAFKA__SPOOL__DIR", format!("{:?}", spool.path().display().to_string()))
        .env("TRACELAKE__KAFKA__PARTITIONS", "3")
        .env("TRACELAKE__DETECTIONS__RULE_DIRS", format!("[{:?}]", rules.path().display().to_string()));
    let agent = common::start(cmd);
    // Written: the sensor reports write opens of any path by default (read-only opens only under watched ones).
    for i in 0..3 {
        std::fs::write(&marker, format!("{i}")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = agent.wait();
    let stderr = stopped.log;
    assert!(stopped.status.success(), "{stderr}");
    let detections: Vec<&str> = stderr.lines().filter(|l| l.contains("detection:")).collect();
    assert!(detections.iter().any(|l| l.contains("rule=TL-TEST-KAFKA")), "no live finding for the marker:\n{stderr}");
    assert_eq!(logged(&stderr, "kafka status", "spool_messages"), 0, "{stderr}");
    assert_eq!(logged(&stderr, "kafka status", "rejected_rows"), 0, "{stderr}");

    // pyarrow reads the findings the lake service wrote, and the event each one names.
    let script = format!(
        "import json, os, pyarrow.dataset as ds, pyarrow.compute as pc\n\
         root = {:?}\n\
         if not os.path.isdir(os.path.join(root, 'detection_finding')):\n\
         \x20   print(json.dumps({{'findings': [], 'events': []}})); raise SystemExit\n\
         f = ds.dataset(os.path.join(root, 'detection_finding'), partitioning='hive').to_table()\n\
         rows = f.select(['finding_id', 'rule_id', 'node', 'severity', 'event_ids']).to_pylist()\n\
         ids = [i for r in rows if r['rule_id'] == 'TL-TEST-KAFKA' for i in r['event_ids']]\n\
         ev = []\n\
         if ids and os.path.isdir(os.path.join(root, 'file_activity')):\n\
         \x20   e = ds.dataset(os.path.join(root, 'file_activity'), partitioning='hive').to_table()\n\
         \x20   ev = e.filter(pc.is_in(e['event_id'], value_set=__import__('pyarrow').array(ids))).select(['event_id', 'path']).to_pylist()\n\
         print(json.dumps({{'findings': rows, 'events': ev}}, default=str))",
        lake.path().display().to_string()
    );
    let read = || -> serde_json::Value {
        let out = Command::new("python3").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = read();
    while (got["findings"].as_array().unwrap().len() < detections.len() || got["events"].as_array().unwrap().is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_secs(1));
        got = read();
    }
    // Anything late (a duplicate) would land within a few file periods.
    std::thread::sleep(Duration::from_secs(2));
    got = read();
    sigterm(&mut lake_proc.0);
    let lake_log = std::fs::read_to_string(&log).unwrap();
    let findings = got["findings"].as_array().unwrap();
    assert_eq!(
        findings.len(),
        detections.len(),
        "agent logged:\n{}\nlake has: {got}\n{lake_log}",
        detections.join("\n")
    );
    let ids: std::collections::BTreeSet<&str> = findings.iter().map(|f| f["finding_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), findings.len(), "a finding twice: {got}");
    let mine: Vec<&serde_json::Value> = findings.iter().filter(|f| f["rule_id"] == "TL-TEST-KAFKA").collect();
    assert_eq!(mine.len(), 1, "suppressed within the hour: {got}");
    assert_eq!(mine[0]["severity"], "high");
    assert!(!mine[0]["node"].as_str().unwrap_or("").is_empty(), "{got}");
    let events = got["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{got}");
    assert_eq!(events[0]["path"].as_str().unwrap(), marker.display().to_string());
    assert!(std::fs::read_dir(rejected.path()).map_or(0, Iterator::count) == 0, "nothing rejected");
    check_lake(lake.path());
}

/// Two nodes' IP history through Kafka into the central lake: node-a's pod held 10.42.1.7 first (its interval
/// sent open, again open (a replay) and then closed), node-b's pod took the address later. `tracelake whois
/// --lake` names the right owner at both times, the replayed version is kept once, and the `connections` view
/// runs on the central lake.
#[test]
fn two_nodes_ip_history_reaches_the_central_lake_and_whois_answers_from_it() {
    use tracelake_sinks::parquet::{OwnershipRow, Table, ownership_batch};
    let broker = Broker::start().unwrap();
    let (lake, rejected, spool_a, spool_b, logs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log = logs.path().join("lake.log");
    let mut lake_proc = Reap(start_lake(&broker, lake.path(), rejected.path(), &log));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let t0 = now - 600 * 1_000_000_000;
    let s = 1_000_000_000i64;
    let sink = |node: &'static str, spool: &Path| {
        let ctx = JsonContext { node, clock: BootClock::from_offset(i128::from(now)), node_salt: 9 };
        let cfg = KafkaConfig {
            brokers: broker.addr(),
            partitions: 3,
            linger: Duration::from_millis(50),
            spool: SpoolConfig { dir: spool.to_path_buf(), ..SpoolConfig::default() },
            ..KafkaConfig::default()
        };
        KafkaSink::open(&cfg, ctx).unwrap()
    };
    let a_open = OwnershipRow {
        ip: "10.42.1.7",
        valid_from: t0,
        node: Some("node-a"),
        namespace: Some("shop"),
        pod: Some("web-7d9f8b6c5d-x2k4q"),
        pod_uid: Some("uid-a"),
        workload_kind: Some("Deployment"),
        workload: Some("web"),
        container_id: Some("c-a"),
        source: "node",
        seq: 1,
        ..OwnershipRow::default()
    };
    let a_closed = OwnershipRow { valid_to: Some(t0 + 60 * s), seq: 2, ..a_open.clone() };
    let b_open = OwnershipRow {
        valid_from: t0 + 120 * s,
        node: Some("node-b"),
        pod: Some("api-6c8f9d7b5b-q8x2m"),
        pod_uid: Some("uid-b"),
        workload: Some("api"),
        container_id: Some("c-b"),
        seq: 1,
        ..a_open.clone()
    };
    let mut a = sink("node-a", spool_a.path());
    let mut b = sink("node-b", spool_b.path());
    a.push_batch(Table::IpOwnership, "node-a", ownership_batch(std::slice::from_ref(&a_open)).unwrap());
    // The same version again, as an agent restarting re-sends its current intervals.
    a.push_batch(Table::IpOwnership, "node-a", ownership_batch(std::slice::from_ref(&a_open)).unwrap());
    a.push_batch(Table::IpOwnership, "node-a", ownership_batch(std::slice::from_ref(&a_closed)).unwrap());
    b.push_batch(Table::IpOwnership, "node-b", ownership_batch(std::slice::from_ref(&b_open)).unwrap());
    for k in [&mut a, &mut b] {
        k.tick();
        assert!(k.flush(Duration::from_secs(60)));
    }
    let _ = (a.close(Duration::from_secs(5)).unwrap(), b.close(Duration::from_secs(5)).unwrap());

    let whois = |at: Option<i64>| -> Vec<serde_json::Value> {
        let mut cmd = tracelake();
        cmd.args(["whois", "10.42.1.7", "--json", "--lake"]).arg(lake.path());
        if let Some(t) = at {
            let at = humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + Duration::from_nanos(t as u64));
            cmd.args(["--at", &at.to_string()]);
        }
        let out = cmd.output().unwrap();
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let rows = whois(None);
        if rows.len() == 2 && rows[0]["valid_to"].is_string() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "history never complete: {rows:?}\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(all[0]["pod"], "web-7d9f8b6c5d-x2k4q");
    assert_eq!(all[0]["node"], "node-a");
    assert_eq!(all[1]["pod"], "api-6c8f9d7b5b-q8x2m");
    assert_eq!(all[1]["node"], "node-b");
    assert!(all[1]["valid_to"].is_null(), "node-b's pod still holds it: {all:?}");
    let then = whois(Some(t0 + 30 * s));
    assert_eq!(then.len(), 1, "{then:?}");
    assert_eq!(then[0]["pod"], "web-7d9f8b6c5d-x2k4q");
    let later = whois(Some(t0 + 150 * s));
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(later[0]["pod"], "api-6c8f9d7b5b-q8x2m");
    assert!(whois(Some(t0 + 90 * s)).is_empty(), "nobody held it between the two");

    // Three versions in the table: the replay was dropped by its event_id.
    let q = |sql: &str| {
        let out =
            tracelake().args(["query", "--format", "json", "--data-dir"]).arg(lake.path()).arg(sql).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let count = q("SELECT count(*) AS n FROM ip_ownership");
    assert!(count.contains("\"n\":3"), "{count}");
    q("SELECT * FROM connections LIMIT 1");
    sigterm(&mut lake_proc.0);
}

/// Pods too short-lived for any namespace scan (one `nc` each, well under a second) are in the history: their
/// own connect tells the agent which IP they had. Through `tracelake agent` → Kafka → `tracelake lake`,
/// `whois --lake` names each of them, and so does the node's own history.
#[test]
fn short_lived_pods_ips_reach_the_central_history_from_their_own_connects() {
    use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let broker = Broker::start().unwrap();
    let (lake, rejected, spool, logs, state) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log = logs.path().join("lake.log");
    let mut lake_proc = Reap(start_lake(&broker, lake.path(), rejected.path(), &log));
    let pod = |id: &str, name: &str, args: &[&str]| {
        ContainerSpec::new(id, args.iter().copied())
            .label("io.kubernetes.pod.name", name)
            .label("io.kubernetes.pod.namespace", "jobs")
            .label("io.kubernetes.pod.uid", format!("uid-{name}"))
            .label("io.kubernetes.container.name", "main")
            .network()
    };
    let server = ["sh", "-c", "while true; do echo ok | nc -l -p 8080; done"];
    let b = lab
        .run(&pod(&format!("{:064x}", 0xb5_u128 << 64 | u128::from(std::process::id())), "sink-0", &server))
        .unwrap();
    let ip_b = b.ip().unwrap().to_string();
    let mut cmd = tracelake();
    cmd.args(["agent", "--for", "60s", "--brokers", &broker.addr()])
        .env("TRACELAKE__KAFKA__SPOOL__DIR", format!("{:?}", spool.path().display().to_string()))
        .env("TRACELAKE__KAFKA__PARTITIONS", "3")
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()))
        .env("TRACELAKE__ENRICHER__STATE_DIR", format!("{:?}", state.path().display().to_string()));
    let agent = common::start(cmd);
    let mut short = Vec::new();
    for n in 0..5u128 {
        let id = format!("{:064x}", (0x5100 + n) << 64 | u128::from(std::process::id()));
        let name = format!("ping-2912345{n}-x7k2p");
        let c = lab.run(&pod(&id, &name, &["sh", "-c", &format!("echo hi | nc -w 1 {ip_b} 8080")])).unwrap();
        short.push((c.ip().unwrap().to_string(), name, c));
    }
    std::thread::sleep(Duration::from_secs(1));
    let stopped = agent.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let whois = |ip: &str, from: &[&str]| -> Vec<serde_json::Value> {
        let out = tracelake().args(["whois", ip, "--json"]).args(from).output().unwrap();
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
    };
    let (lake_dir, state_dir) = (lake.path().display().to_string(), state.path().display().to_string());
    for (ip, name, _) in &short {
        let node = whois(ip, &["--state-dir", &state_dir]);
        assert!(
            node.iter().any(|r| r["pod"] == name.as_str()),
            "{name} ({ip}) in the node's history: {node:?}\n{}",
            stopped.log
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rows = whois(ip, &["--lake", &lake_dir]);
            if rows.iter().any(|r| r["pod"] == name.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "{name} ({ip}) never in the central history: {rows:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    sigterm(&mut lake_proc.0);
    drop((short, b));
}
