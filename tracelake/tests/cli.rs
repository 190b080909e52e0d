//! The binary as a user runs it: real sensor, real output, real errors.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::process::Command;

use common::tracelake;

#[test]
fn run_stdout_for_emits_json_lines_and_exits_cleanly() {
    let out = tracelake()
        .args(["run", "--stdout", "--for", "2s"])
        .env("TRACELAKE__SENSOR__STATUS_INTERVAL", "\"1s\"")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    // The /proc walk alone reports this test process.
    let me = std::process::id();
    assert!(lines.iter().any(|v| v["kind"] == "process_snapshot" && v["pid"] == me), "own snapshot missing");
    for v in &lines {
        for field in ["time", "event_id", "kind", "class", "pid", "cgroup_id", "comm", "count"] {
            assert!(v.get(field).is_some(), "{field} missing in {v}");
        }
    }
    assert!(stderr.contains("sensor status"), "status line logged: {stderr}");
}

#[test]
fn bad_config_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[sensor]\nring_buffer_bytes = 1000\n").unwrap();
    let out = tracelake().args(["run", "--stdout", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sensor.ring_buffer_bytes"), "{err}");
    assert!(out.stdout.is_empty(), "nothing runs on a bad config");

    std::fs::write(&path, "[sensor.file]\nwatch_reads = [\"relative/path\"]\n").unwrap();
    let out = tracelake().args(["config", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sensor.file.watch_reads"));
}

/// The JSON of a process in a real container names the container.
#[test]
fn events_from_a_container_carry_its_identity() {
    use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let id = format!("{:064x}", 0xc11_u128 << 64 | u128::from(std::process::id()));
    let spec = ContainerSpec::new(id.clone(), ["sleep", "30"])
        .label("io.kubernetes.pod.name", "api-0")
        .label("io.kubernetes.pod.namespace", "payments")
        .label("io.kubernetes.container.name", "api");
    let container = lab.run(&spec).unwrap();
    let mut cmd = tracelake();
    cmd.args(["run", "--stdout", "--for", "6s"])
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()));
    // Act only once the sensor says it is attached and has walked /proc.
    let running = common::start(cmd);
    let out = container.exec("tl-cli-e2e", &["cat", "/etc/hostname"]).unwrap();
    assert!(out.status.success());
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let out = container.exec("tl-cli-e2e-2", &["cat", "/etc/hosts"]).unwrap();
    assert!(out.status.success());
    let stopped = running.wait();
    assert!(stopped.status.success(), "{}", stopped.log);
    let lines = stopped.events();
    // Other tests exec the same commands in their own containers at the same time.
    let ours: Vec<&serde_json::Value> = lines.iter().filter(|v| v["container_id"] == id.as_str()).collect();
    let cat = ours
        .iter()
        .find(|v| v["kind"] == "exec" && v["args"][0] == "cat" && v["args"][1] == "/etc/hostname")
        .unwrap_or_else(|| panic!("exec of cat in the container among {ours:#?}"));
    assert_eq!(cat["container"], true);
    assert_eq!(cat["container_runtime"], "containerd");
    // The container started before the sensor: its first event queued the runtime lookup and waited for the
    // answer (enricher.hold_new_containers), so even the first one names the pod.
    let first = lines.iter().find(|v| v["container_id"] == id.as_str()).expect("an event of the container");
    assert_eq!(first["pod"], "api-0", "{first}");
    assert!(first.get("enrichment").is_none(), "{first}");
    assert_eq!(cat["pod"], "api-0", "{cat}");
    assert_eq!(cat["containerd_namespace"], lab.namespace());
    let later = ours
        .iter()
        .find(|v| v["kind"] == "exec" && v["args"][0] == "cat" && v["args"][1] == "/etc/hosts")
        .expect("second exec in the container");
    assert_eq!(later["pod"], "api-0");
    assert!(later.get("enrichment").is_none(), "complete once containerd answered");
    assert_eq!(later["namespace"], "payments");
    assert_eq!(later["container_name"], "api");
    assert_eq!(later["container_id"], id.as_str());
    // Lineage: an exec into a container descends from the runtime shim, not from the entrypoint.
    assert!(later["process_exe"].as_str().is_some_and(|e| e.starts_with("/bin/")), "{later}");
    let ancestors = later["ancestors"].as_array().unwrap_or_else(|| {
        let related: Vec<_> = lines
            .iter()
            .filter(|v| v["pid"] == later["pid"] || v["pid"] == later["ppid"] || v["child_pid"] == later["pid"])
            .collect();
        panic!("no ancestors in {later}\nrelated: {related:#?}")
    });
    assert!(
        ancestors.iter().any(|a| a["exe"].as_str().is_some_and(|e| e.ends_with("containerd-shim-runc-v2"))),
        "{ancestors:?}"
    );
    let host = lines.iter().find(|v| v["kind"] == "process_snapshot" && v["pid"] == 1).expect("init snapshot");
    assert_eq!(host["container"], false);
    container.stop().unwrap();
}

/// `key=<n>` from the run's log.
fn logged(stderr: &str, line: &str, key: &str) -> u64 {
    let l = stderr.lines().rev().find(|l| l.contains(line)).unwrap_or_else(|| panic!("no '{line}' in {stderr}"));
    let v = l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap();
    v.parse().unwrap()
}

/// pyarrow (scripts/check_lake.py) reads every file; returns its summary.
fn check_lake(dir: &std::path::Path) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_lake.py");
    let out = Command::new("python3").arg(script).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Rows of the event tables (live detections may add detection_finding rows of their own).
fn lake_rows(summary: &serde_json::Value) -> u64 {
    let rows = summary["rows"].as_object().unwrap();
    rows.iter().filter(|(t, _)| *t != "detection_finding").map(|(_, v)| v.as_u64().unwrap()).sum()
}

/// Without a sink flag, `run` writes the lake (dir from the config), every delivered event exactly once.
#[test]
fn run_writes_the_lake_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = tracelake()
        .args(["run", "--for", "3s"])
        .env("TRACELAKE__SINKS__LAKE__DIR", format!("{:?}", dir.path().display().to_string()))
        // Rows are counted against delivered events: no ip_ownership rows from containers of other tests.
        .env("TRACELAKE__ENRICHER__IP_HISTORY__ENABLED", "false")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(out.stdout.is_empty(), "no JSON lines unless asked");
    let delivered = logged(&stderr, "stopped", "delivered");
    assert_eq!(logged(&stderr, "lake flushed", "rows"), delivered);
    let summary = check_lake(dir.path());
    assert_eq!(lake_rows(&summary), delivered, "{summary}");
    assert_eq!(summary["event_ids"].as_u64().unwrap(), delivered, "each event once: {summary}");
    // The /proc walk reports this test process.
    let script = format!(
        "import pyarrow.dataset as ds, pyarrow.compute as pc\n\
         t = ds.dataset('{}/process_activity', partitioning='hive').to_table()\n\
         m = pc.and_(pc.equal(t['kind'], 'process_snapshot'), pc.equal(t['pid'], {}))\n\
         print(t.filter(m).num_rows)",
        dir.path().display(),
        std::process::id()
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", String::from_utf8_lossy(&out.stderr));
}

/// SIGTERM flushes the lake; `--stdout --lake DIR` writes both, the same events.
#[test]
fn sigterm_flushes_the_lake_and_stdout_alongside() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tracelake();
    cmd.args(["run", "--stdout", "--lake"]).arg(dir.path()).env("TRACELAKE__ENRICHER__IP_HISTORY__ENABLED", "false");
    let running = common::start(cmd);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let stopped = running.stop();
    let stderr = &stopped.log;
    assert!(stopped.status.success(), "{stderr}");
    let lines = stopped.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    let summary = check_lake(dir.path());
    assert_eq!(lake_rows(&summary), lines, "{summary}");
    assert_eq!(logged(stderr, "stopped", "delivered"), lines);
}
