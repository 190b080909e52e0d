//! Identity from a container's first event, with real containerd containers labelled as kubelet labels them:
//! containers whose whole life is one short command, under load, are named in every lake row; and a runtime
//! that starts after the agent, then goes away and comes back, is followed.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};

use common::tracelake;

fn pod_spec(id: &str, pod: &str, args: &[&str]) -> ContainerSpec {
    ContainerSpec::new(id, args.iter().copied())
        .label("io.kubernetes.pod.name", pod)
        .label("io.kubernetes.pod.namespace", "batch")
        .label("io.kubernetes.pod.uid", format!("uid-{pod}"))
        .label("io.kubernetes.container.name", "main")
}

fn cid(tag: u128, n: u128) -> String {
    format!("{:064x}", (tag << 80) | n << 64 | u128::from(std::process::id()))
}

/// process_activity rows of the lake as (container_id, pod, kind), read by pyarrow.
fn lake_rows(lake: &std::path::Path) -> Vec<(String, Option<String>, String)> {
    let py = "import sys, json, pyarrow.dataset as ds\n\
              t = ds.dataset(sys.argv[1] + '/process_activity', format='parquet', partitioning='hive').to_table()\n\
              print(json.dumps(list(zip(t['container_id'].to_pylist(), t['pod'].to_pylist(), t['kind'].to_pylist()))))";
    let out = Command::new("python3").args(["-c", py]).arg(lake).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<(Option<String>, Option<String>, String)> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter().filter_map(|(c, p, k)| c.map(|c| (c, p, k))).collect()
}

/// Twelve Job-like containers, each living for one short command, started while the host makes thousands of
/// execs a second: every row of theirs in the lake names its pod, the entrypoint's exec included.
#[test]
fn short_lived_containers_under_load_are_named_in_every_lake_row() {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let lake = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cmd = tracelake();
    cmd.args(["run", "--for", "120s", "--lake"])
        .arg(lake.path())
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()))
        .env("TRACELAKE__ENRICHER__STATE_DIR", format!("{:?}", state.path().display().to_string()));
    let running = common::start(cmd);
    // Load on the host: an exec storm for as long as the containers start.
    let mut load = Command::new("sh")
        .args(["-c", "i=0; while [ $i -lt 20000 ]; do /bin/true; i=$((i+1)); done"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut expected = Vec::new();
    for n in 0..12u128 {
        let id = cid(0x5e, n);
        let pod = format!("report-2912345{}-x7k2p", n % 10);
        let args = ["sh", "-c", "cat /etc/hostname >/dev/null; ls / >/dev/null; echo done"];
        let c = lab.run(&pod_spec(&id, &pod, &args)).unwrap();
        expected.push((id, pod, c));
    }
    let _ = load.kill();
    let _ = load.wait();
    std::thread::sleep(Duration::from_millis(500));
    let stopped = running.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let rows = lake_rows(lake.path());
    for (id, pod, _) in &expected {
        let mine: Vec<_> = rows.iter().filter(|(c, _, _)| c == id).collect();
        assert!(mine.iter().any(|(_, _, k)| k == "exec"), "{pod}: its exec in the lake; log:\n{}", stopped.log);
        for (_, p, k) in &mine {
            assert_eq!(p.as_deref(), Some(pod.as_str()), "{k} row of {pod} without its pod; log:\n{}", stopped.log);
        }
    }
    drop(expected);
}

/// The agent starts before the runtime (no socket yet), the runtime appears, goes away and a new one comes up
/// on the same path: containers started after each are named, and the log says what happened.
#[test]
fn runtime_started_after_the_agent_and_restarted_is_followed() {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let socket = dir.path().join("runtime.sock");
    let mut cmd = tracelake();
    cmd.args(["run", "--stdout", "--for", "120s"])
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", socket.display().to_string()))
        .env("TRACELAKE__ENRICHER__STATE_DIR", format!("{:?}", state.path().display().to_string()));
    let running = common::start(cmd);

    // The runtime appears at the configured path.
    let first = Lab::start().unwrap();
    std::os::unix::fs::symlink(first.address(), &socket).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (id1, id2) = (cid(0x7e, 1), cid(0x7e, 2));
    let c1 = first.run(&pod_spec(&id1, "first-6c8f9d7b5b-q8x2m", &["sh", "-c", "echo one"])).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // It goes away; another comes up on the same path.
    drop(c1);
    drop(first);
    std::fs::remove_file(&socket).unwrap();
    let second = Lab::start().unwrap();
    std::os::unix::fs::symlink(second.address(), &socket).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let c2 = second.run(&pod_spec(&id2, "second-6c8f9d7b5b-q8x2m", &["sh", "-c", "echo two"])).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let stopped = running.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    let events = stopped.events();
    for (id, pod) in [(&id1, "first-6c8f9d7b5b-q8x2m"), (&id2, "second-6c8f9d7b5b-q8x2m")] {
        let mine: Vec<&Value> = events.iter().filter(|v| v["container_id"] == id.as_str()).collect();
        assert!(mine.iter().any(|v| v["kind"] == "exec"), "{pod}: exec seen; log:\n{log}");
        for v in mine {
            assert_eq!(v["pod"], pod, "{v}\nlog:\n{log}");
        }
    }
    assert!(log.contains("no container runtime socket (yet)"), "{log}");
    assert!(log.contains("container runtime reachable again"), "{log}");
    drop(c2);
}

/// Pods created through the CRI API as kubelet creates them (containerd's CRI plugin), metadata read through
/// CRI (`enricher.runtime_api = "cri"`, as on CRI-O or k3s): the entrypoint's exec names pod, namespace,
/// container and workload.
#[test]
fn cri_pods_are_named_through_the_cri_api() {
    use tracelake_testkit::cri_lab::{CriLab, PodSpec, fresh_uid};
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = CriLab::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cmd = tracelake();
    cmd.args(["run", "--stdout", "--for", "120s"])
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()))
        .env("TRACELAKE__ENRICHER__RUNTIME_API", "\"cri\"")
        .env("TRACELAKE__ENRICHER__STATE_DIR", format!("{:?}", state.path().display().to_string()));
    let running = common::start(cmd);
    let uid = fresh_uid();
    let spec = PodSpec::new("checkout-7d4b9c8f6d-x2x9z", "shop", uid.as_str()).label("pod-template-hash", "7d4b9c8f6d");
    let pod = lab.run_pod(&spec).unwrap();
    let ct = lab.start_container(&pod, "app", &["sh", "-c", "cat /etc/hostname >/dev/null; sleep 1"]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let stopped = running.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    assert!(log.contains("api=\"cri\"") || log.contains("api=cri"), "connected through CRI: {log}");
    let events = stopped.events();
    let mine: Vec<&Value> = events.iter().filter(|v| v["container_id"] == ct.id.as_str()).collect();
    let exec = mine
        .iter()
        .find(|v| v["kind"] == "exec" && v["args"][0] == "sh")
        .unwrap_or_else(|| panic!("the entrypoint's exec; log:\n{log}"));
    assert_eq!(exec["pod"], "checkout-7d4b9c8f6d-x2x9z", "{exec}");
    assert_eq!(exec["namespace"], "shop", "{exec}");
    assert_eq!(exec["container_name"], "app", "{exec}");
    assert_eq!(exec["pod_uid"], uid.as_str(), "{exec}");
    assert_eq!((&exec["workload_kind"], &exec["workload"]), (&"Deployment".into(), &"checkout".into()), "{exec}");
    for v in &mine {
        assert_eq!(v["pod"], "checkout-7d4b9c8f6d-x2x9z", "{v}");
    }
}
