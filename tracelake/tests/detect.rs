//! Detections end to end: `rules list|check`, `query`, `hunt` as a user runs
//! them, and a real container attacked under `tracelake run`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::process::Command;
use std::time::Duration;

mod common;
use common::tracelake;

#[test]
fn rules_list_and_check_the_builtin_pack() {
    let out = tracelake().args(["rules", "list"]).output().unwrap();
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.lines().count() >= 25, "{list}");
    assert!(list.contains("TL-K8S-006") && list.contains("Container service account"), "{list}");
    let out = tracelake().args(["rules", "check"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rules ok"));
}

#[test]
fn rules_check_names_file_and_line_of_each_error() {
    let dir = tempfile::tempdir().unwrap();
    let header = "-- id: MY-1\n-- title: t\n-- severity: high\n-- tactic: Execution\n-- technique: x\n-- mitre: T1609\n\
                  -- tables: process_activity\n-- description: d\n-- false_positives: none\n-- suppress: 5m\n\n";
    std::fs::write(
        dir.path().join("good.sql"),
        format!("{header}SELECT * FROM process_activity WHERE kind = 'exec'\n"),
    )
    .unwrap();
    // Line 14: unknown column.
    std::fs::write(
        dir.path().join("bad_column.sql"),
        format!("{}SELECT *\nFROM process_activity\nWHERE kindd = 'exec'\n", header.replace("MY-1", "MY-2")),
    )
    .unwrap();
    // Line 3: bad severity.
    std::fs::write(
        dir.path().join("bad_header.sql"),
        header.replace("MY-1", "MY-3").replace("high", "urgent") + "SELECT 1",
    )
    .unwrap();
    let out = tracelake().args(["rules", "check", "--only-dir", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let d = dir.path().display();
    assert!(err.contains(&format!("{d}/bad_column.sql:14: SQL")), "{err}");
    assert!(err.contains("kindd"), "{err}");
    assert!(err.contains(&format!("{d}/bad_header.sql:3: severity \"urgent\"")), "{err}");
    assert!(!err.contains("good.sql"), "{err}");
    assert!(err.contains("2 rule(s) with errors, 1 ok"), "{err}");
}

fn run_query(dir: &std::path::Path, sql: &str) -> Vec<serde_json::Value> {
    let out = tracelake().args(["query", "--format", "json", "--data-dir"]).arg(dir).arg(sql).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
}

#[test]
fn query_errors_list_tables_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let out = tracelake()
        .args(["query", "--data-dir"])
        .arg(dir.path())
        .arg("SELECT nope FROM file_activity")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("file_activity columns: time, event_id"), "{err}");
}

/// pyarrow (scripts/check_lake.py) reads every file; returns its summary.
fn check_lake(dir: &std::path::Path) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_lake.py");
    let out = Command::new("python3").arg(script).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A shell in a real container reads a service account token and connects to a NodePort: `tracelake run`
/// reports the three with pod and namespace, writes them to detection_finding, and `query` and `hunt` find them.
#[test]
fn attack_in_a_container_is_detected_live_and_in_the_lake() {
    use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let id = format!("{:064x}", 0xde7_u128 << 64 | u128::from(std::process::id()));
    let spec = ContainerSpec::new(id.clone(), ["sleep", "60"])
        .label("io.kubernetes.pod.name", "api-0")
        .label("io.kubernetes.pod.namespace", "payments")
        .label("io.kubernetes.container.name", "api");
    let container = lab.run(&spec).unwrap();
    let sa = container.rootfs().join("var/run/secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), "eyJhbGciOiJSUzI1NiJ9.test.token").unwrap();
    let lake = tempfile::tempdir().unwrap();
    let mut cmd = tracelake();
    cmd.args(["run", "--for", "10s", "--lake"])
        .arg(lake.path())
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()));
    let run = common::start(cmd);
    // The container's first event only queues the runtime lookup; the attack comes once it is answered.
    let out = container.exec("tl-detect-warm", &["cat", "/etc/hostname"]).unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(1500));
    let attack = "cat /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null; \
                  nc -w 1 127.0.0.1 30080 </dev/null; true";
    let out = container.exec("tl-detect-attack", &["sh", "-c", attack]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stopped = run.wait();
    let stderr = stopped.log;
    assert!(stopped.status.success(), "{stderr}");
    container.stop().unwrap();

    let detections: Vec<&str> = stderr.lines().filter(|l| l.contains("detection:")).collect();
    eprintln!("{}", detections.join("\n"));
    for rule in ["TL-K8S-001", "TL-K8S-006", "TL-K8S-025"] {
        let line = detections
            .iter()
            .find(|l| l.contains(&format!("rule={rule}")) && l.contains(&id))
            .unwrap_or_else(|| panic!("no live {rule} finding for the container in:\n{}", detections.join("\n")));
        assert!(line.contains("pod=\"api-0\"") && line.contains("namespace=\"payments\""), "{line}");
    }

    let rows = run_query(
        lake.path(),
        &format!(
            "SELECT rule_id, pod, namespace, container_id, severity, tactic, technique, event_ids, exe \
             FROM detection_finding WHERE container_id = '{id}' ORDER BY rule_id"
        ),
    );
    let rules: Vec<&str> = rows.iter().map(|r| r["rule_id"].as_str().unwrap()).collect();
    for rule in ["TL-K8S-001", "TL-K8S-006", "TL-K8S-025"] {
        assert!(rules.contains(&rule), "{rule} not in detection_finding: {rows:?}");
    }
    // Every finding names the pod, also the warm-up exec's (TL-K8S-002), which can come before the runtime
    // lookup answered: findings get the identity the node knows when the rule fires.
    for r in &rows {
        assert_eq!(r["pod"], "api-0", "{r}");
        assert_eq!(r["namespace"], "payments", "{r}");
        assert!(!r["event_ids"].as_array().unwrap().is_empty(), "{r}");
    }
    // The triggering events are in the lake under the ids the findings carry.
    let token = rows.iter().find(|r| r["rule_id"] == "TL-K8S-006").unwrap();
    let eid = token["event_ids"][0].as_str().unwrap();
    let ev = run_query(lake.path(), &format!("SELECT path, comm FROM file_activity WHERE event_id = '{eid}'"));
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(ev[0]["path"].as_str().unwrap().ends_with("/serviceaccount/token"), "{ev:?}");
    // pyarrow reads the findings table too.
    let summary = check_lake(lake.path());
    assert!(summary["rows"]["detection_finding"].as_u64().unwrap() >= 3, "{summary}");
    // Back-testing over the lake finds the same thing.
    let out = tracelake()
        .args(["hunt", "--rule", "TL-K8S-006", "--since", "1h", "--format", "json", "--data-dir"])
        .arg(lake.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hunt = String::from_utf8_lossy(&out.stdout);
    assert!(hunt.contains(&id) && hunt.contains("\"pod\":\"api-0\""), "{hunt}");
}

/// A windowed rule counts across rounds in the real detection thread: three files written 1.2 s apart land in
/// three rounds (the interval is 1 s), so only the rule's staged window sees all three. Its finding comes at its
/// cadence or at the flush on shutdown, and names the lake row it counted.
#[test]
fn windowed_rule_counts_events_of_several_rounds() {
    let (rules, lake, marker_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let prefix = marker_dir.path().join(format!("tl-window-{}-", std::process::id()));
    std::fs::write(
        rules.path().join("window.sql"),
        format!(
            "-- id: TL-TEST-WINDOW\n-- title: Three marker files written\n-- severity: low\n-- tactic: Impact\n\
             -- technique: Data manipulation\n-- mitre: T1565\n-- tables: file_activity\n\
             -- description: Three of the test's marker files were opened within the window.\n\
             -- false_positives: none\n-- suppress: 1h\n-- window: 30s\n\n\
             SELECT min(time) AS time, array_agg(event_id) AS event_ids, min(exe) AS exe, count(*) AS opens\n\
             FROM file_activity WHERE kind = 'file_open' AND starts_with(path, '{}')\nHAVING count(*) >= 3\n",
            prefix.display()
        ),
    )
    .unwrap();
    let mut cmd = tracelake();
    cmd.args(["run", "--for", "7s", "--lake"])
        .arg(lake.path())
        .env("TRACELAKE__DETECTIONS__RULE_DIRS", format!("[{:?}]", rules.path().display().to_string()));
    let run = common::start(cmd);
    for i in 0..3 {
        // Other paths each time: the kernel would aggregate repeated opens of one path into one event.
        std::fs::write(format!("{}{i}", prefix.display()), "x").unwrap();
        std::thread::sleep(Duration::from_millis(1200));
    }
    let stopped = run.wait();
    assert!(stopped.status.success(), "{}", stopped.log);
    let found: Vec<&str> = stopped.log.lines().filter(|l| l.contains("rule=TL-TEST-WINDOW")).collect();
    assert_eq!(found.len(), 1, "one finding for the three writes:\n{}", stopped.log);
    assert!(found[0].contains("opens=3"), "{}", found[0]);
    let rows = run_query(
        lake.path(),
        "SELECT rule_id, cardinality(event_ids) AS n FROM detection_finding WHERE rule_id = 'TL-TEST-WINDOW'",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["n"], 3, "{rows:?}");
}
