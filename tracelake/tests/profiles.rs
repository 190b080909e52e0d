//! Behaviour profiles with real containers: a lab workload's normal loop is learnt until stable; then a tool it
//! never ran, a connect to a new destination and a binary dropped into it and run are each one anomaly naming
//! its pod, namespace and workload, while the normal loop goes on producing none. The profile is written to
//! the node's file, exported, locked by an edit and imported back.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::time::Duration;

use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};

use common::tracelake;

#[test]
fn a_stable_profile_flags_new_tools_destinations_and_dropped_binaries_once() {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let profiles = state.path().join("profiles.yaml");
    let id = |n: u128| format!("{:064x}", (0x9f << 72) | n << 64 | u128::from(std::process::id()));
    let pod = |cid: &str, name: &str, args: &[&str]| {
        ContainerSpec::new(cid, args.iter().copied())
            .label("io.kubernetes.pod.name", name)
            .label("io.kubernetes.pod.namespace", "shop")
            .label("io.kubernetes.pod.uid", format!("uid-{name}"))
            .label("io.kubernetes.container.name", "main")
            .network()
    };
    let mut cmd = tracelake();
    cmd.args(["run", "--stdout", "--for", "120s"])
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()))
        .env("TRACELAKE__ENRICHER__STATE_DIR", format!("{:?}", state.path().display().to_string()))
        .env("TRACELAKE__DETECTIONS__PROFILES__WARMUP", "\"1s\"")
        .env("TRACELAKE__DETECTIONS__PROFILES__QUIET_PERIOD", "\"3s\"")
        .env("TRACELAKE__DETECTIONS__PROFILES__MIN_OBSERVATION", "\"4s\"");
    let running = common::start(cmd);
    let server = ["sh", "-c", "while true; do echo ok | nc -l -p 8080; done"];
    let b = lab.run(&pod(&id(0xb), "peer-5d8f7c9b4d-q8x2m", &server)).unwrap();
    let normal = ["sh", "-c", "while true; do cat /etc/hostname >/dev/null; sleep 0.3; done"];
    let a = lab.run(&pod(&id(0xa), "worker-6c8f9d7b5b-x2k4q", &normal)).unwrap();
    // Learning, then stable: nothing new for the quiet period.
    std::thread::sleep(Duration::from_secs(9));
    // A tool the workload never ran, twice (one anomaly), a connect to a destination it never reached, and a
    // binary written into the container at runtime and run.
    for n in 0..2 {
        let out = a.exec(&format!("new-tool-{n}"), &["head", "-c", "1", "/etc/hostname"]).unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let ip_b = b.ip().unwrap().to_string();
    let _ = a.exec("new-peer", &["sh", "-c", &format!("echo hi | nc -w 1 {ip_b} 8080")]).unwrap();
    let dropped =
        a.exec("drop", &["sh", "-c", "mkdir -p /tmp/dl && cp /bin/busybox /tmp/dl/true && /tmp/dl/true"]).unwrap();
    assert!(dropped.status.success(), "{dropped:?}");
    std::thread::sleep(Duration::from_secs(4));
    let stopped = running.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    let ours: Vec<&str> =
        log.lines().filter(|l| l.contains("rule=TL-PROF-") && l.contains("worker-6c8f9d7b5b-x2k4q")).collect();
    let count = |item: &str| ours.iter().filter(|l| l.contains(item)).count();
    let all = ours.join("\n");
    assert_eq!(count("|head\""), 1, "one anomaly for the new tool:\n{all}");
    assert_eq!(count("/tmp/dl/true|true\""), 1, "one for the dropped binary:\n{all}");
    assert_eq!(count("rule=TL-PROF-002"), 1, "one for the new destination ({ip_b}:8080):\n{all}");
    assert!(count(":8080\"") == 1, "the destination is named with its port:\n{all}");
    for l in &ours {
        assert!(l.contains("namespace=\"shop\"") && l.contains("workload=\"worker\""), "{l}");
    }
    // Nothing else: the loop itself (cat, sleep) and the exec sessions' shells were learnt or are the anomalies.
    let other: Vec<&&str> = ours
        .iter()
        .filter(|l| {
            !["|head\"", "/tmp/dl/true|true\"", "|mkdir\"", ":8080\"", "|nc\"", "|cp\"", "\"/tmp/dl/true\""]
                .iter()
                .any(|i| l.contains(i))
        })
        .collect();
    assert!(other.is_empty(), "unexpected anomalies:\n{other:#?}");

    // The node wrote the profile; export, lock by an edit, import: the file now says locked.
    let export = tracelake().args(["profile", "export", "--file"]).arg(&profiles).output().unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let yaml = String::from_utf8(export.stdout).unwrap();
    assert!(yaml.contains("workload: worker") && yaml.contains("state: stable"), "{yaml}");
    assert!(yaml.contains("|cat"), "the loop's executable was learnt: {yaml}");
    let edited = state.path().join("edited.yaml");
    std::fs::write(&edited, yaml.replacen("locked: false", "locked: true", 1)).unwrap();
    let import = tracelake().args(["profile", "import"]).arg(&edited).arg("--file").arg(&profiles).output().unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let diff = tracelake().args(["profile", "diff"]).arg(&edited).arg(&profiles).output().unwrap();
    assert!(diff.status.success());
    let bad = state.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nprofiles:\n  - key: {namespace: a}\n").unwrap();
    let refused = tracelake().args(["profile", "import"]).arg(&bad).arg("--file").arg(&profiles).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("line 3"), "{err}");
    drop((a, b));
}
