//! End to end with real parts: containers with real pod networking
//! (CNI), labelled as kubelet labels pods, `tracelake run` watching them.
//! A's connect to B names B as the peer; when B is gone and C takes its IP,
//! `tracelake whois` answers B for a time during B and C for now.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};

use common::tracelake;

fn pod_spec(id: &str, pod: &str, uid: &str, args: &[&str]) -> ContainerSpec {
    ContainerSpec::new(id, args.iter().copied())
        .label("io.kubernetes.pod.name", pod)
        .label("io.kubernetes.pod.namespace", "shop")
        .label("io.kubernetes.pod.uid", uid)
        .label("io.kubernetes.container.name", "main")
}

fn whois(state: &std::path::Path, ip: &str, at: Option<&str>) -> Vec<serde_json::Value> {
    let mut cmd = tracelake();
    cmd.args(["whois", ip, "--json", "--state-dir"]).arg(state);
    if let Some(at) = at {
        cmd.args(["--at", at]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "whois: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

/// Waits until the persisted history says `pod` holds `ip` now.
fn wait_for_owner(state: &std::path::Path, ip: &str, pod: &str) {
    let t = Instant::now();
    loop {
        let rows = whois(state, ip, Some("now"));
        if rows.first().is_some_and(|r| r["pod"] == pod) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{pod} never recorded for {ip}: {rows:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn connect_names_the_peer_pod_and_whois_follows_ip_reuse() {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let lake = tempfile::tempdir().unwrap();
    let id = |n: u128| format!("{:064x}", n << 64 | u128::from(std::process::id()));
    let (id_a, id_b, id_c) = (id(0xa1), id(0xb1), id(0xc1));

    let mut cmd = tracelake();
    cmd.args(["run", "--stdout", "--for", "90s", "--lake"])
        .arg(lake.path())
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()))
        .env("TRACELAKE__ENRICHER__STATE_DIR", format!("{:?}", state.path().display().to_string()));
    let running = common::start(cmd);

    let server = ["sh", "-c", "while true; do echo hello-from-b | nc -l -p 8080; done"];
    let b = lab.run(&pod_spec(&id_b, "api-6c8f9d7b5b-q8x2m", "uid-b", &server).network()).unwrap();
    let a = lab.run(&pod_spec(&id_a, "web-7d9f8b6c5d-x2k4q", "uid-a", &["sleep", "120"]).network()).unwrap();
    let ip_b = b.ip().unwrap().to_string();
    let ip_a = a.ip().unwrap().to_string();
    wait_for_owner(state.path(), &ip_b, "api-6c8f9d7b5b-q8x2m");
    wait_for_owner(state.path(), &ip_a, "web-7d9f8b6c5d-x2k4q");
    common::connect_until_reply(&a, &ip_b);
    let during_b = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(50));

    // B goes away; C gets the very same address.
    b.stop().unwrap();
    let c = lab.run(&pod_spec(&id_c, "billing-5b7c9d8f6d-z9w7v", "uid-c", &server).network_ip(ip_b.clone())).unwrap();
    assert_eq!(c.ip(), Some(ip_b.as_str()));
    wait_for_owner(state.path(), &ip_b, "billing-5b7c9d8f6d-z9w7v");
    // A's ARP cache still maps the address to B's MAC for up to ~45 s (this
    // bridge plugin sends no gratuitous ARP for C): forget it.
    let netns_a = a.netns().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let flush = Command::new("ip").args(["-n", &netns_a, "neigh", "flush", "all"]).output().unwrap();
    assert!(flush.status.success(), "{flush:?}");
    // A connects to the same IP again: now the peer is C.
    common::connect_until_reply(&a, &ip_b);
    std::thread::sleep(Duration::from_millis(500));

    let stopped = running.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    let events = stopped.events();
    let connects: Vec<&serde_json::Value> = events
        .iter()
        .filter(|v| v["kind"] == "net_connect" && v["remote_ip"] == ip_b.as_str() && v["remote_port"] == 8080)
        .collect();
    assert!(!connects.is_empty(), "A's connects to {ip_b} seen; log:\n{log}");
    for c in &connects {
        assert_eq!(c["container_id"], id_a.as_str(), "{c}");
    }
    let to_b: Vec<_> = connects.iter().filter(|v| v["peer_pod"] == "api-6c8f9d7b5b-q8x2m").collect();
    let to_c: Vec<_> = connects.iter().filter(|v| v["peer_pod"] == "billing-5b7c9d8f6d-z9w7v").collect();
    let first = to_b.first().unwrap_or_else(|| panic!("a connect with peer b-0: {connects:#?}"));
    assert_eq!(first["pod"], "web-7d9f8b6c5d-x2k4q");
    assert_eq!(first["namespace"], "shop");
    assert_eq!(first["pod_ip"], ip_a.as_str());
    assert_eq!(first["peer_namespace"], "shop");
    assert_eq!(first["peer_container_id"], id_b.as_str());
    // Both ends name their workload (inferred from the Deployment-style pod names).
    assert_eq!((&first["workload_kind"], &first["workload"]), (&"Deployment".into(), &"web".into()), "{first}");
    assert_eq!(
        (&first["peer_workload_kind"], &first["peer_workload"]),
        (&"Deployment".into(), &"api".into()),
        "{first}"
    );
    let later = to_c.first().unwrap_or_else(|| panic!("a connect with peer c-0 after the reuse: {connects:#?}"));
    assert_eq!(later["peer_container_id"], id_c.as_str());
    assert_eq!(later["peer_workload"], "billing", "{later}");
    assert!(later["ts_ns"].as_u64() > first["ts_ns"].as_u64());
    // Every connect names a peer: the IP was always known to be held by someone.
    assert_eq!(to_b.len() + to_c.len(), connects.len(), "{connects:#?}");

    // The persisted history, read by the CLI after the agent stopped.
    let then = whois(state.path(), &ip_b, Some(&during_b));
    assert_eq!(then.len(), 1, "{then:?}");
    assert_eq!(then[0]["pod"], "api-6c8f9d7b5b-q8x2m");
    assert_eq!(then[0]["container_id"], id_b.as_str());
    assert_eq!(then[0]["source"], "node");
    assert!(then[0]["valid_to"].is_string(), "B's interval is closed: {then:?}");
    let now = whois(state.path(), &ip_b, Some("now"));
    assert_eq!(now[0]["pod"], "billing-5b7c9d8f6d-z9w7v", "{now:?}");
    let all = whois(state.path(), &ip_b, None);
    let pods: Vec<&str> = all.iter().map(|r| r["pod"].as_str().unwrap()).collect();
    assert_eq!(pods, ["api-6c8f9d7b5b-q8x2m", "billing-5b7c9d8f6d-z9w7v"], "{all:?}");
    assert!(all[0]["valid_to_ns"].as_i64() <= all[1]["valid_from_ns"].as_i64(), "{all:?}");
    let table = tracelake().args(["whois", &ip_b, "--state-dir"]).arg(state.path()).output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.starts_with("FROM")
            && table.contains("api-6c8f9d7b5b-q8x2m")
            && table.contains("billing-5b7c9d8f6d-z9w7v"),
        "{table}"
    );
    // The history also reached the lake's ip_ownership table, read by pyarrow.
    let py = "import sys, pyarrow.dataset as ds\n\
              t = ds.dataset(sys.argv[1] + '/ip_ownership', format='parquet', partitioning='hive').to_table()\n\
              rows = zip(t['ip'].to_pylist(), t['pod'].to_pylist())\n\
              print(' '.join(sorted({p for ip, p in rows if ip == sys.argv[2] and p})))";
    let out = Command::new("python3").args(["-c", py]).arg(lake.path()).arg(&ip_b).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "api-6c8f9d7b5b-q8x2m billing-5b7c9d8f6d-z9w7v");
    drop((a, c));
}

#[test]
fn whois_rejects_bad_input_clearly() {
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = tracelake().arg("whois").args(args).arg("--state-dir").arg(state.path()).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["10.0.0.300"]).contains("not an IP address: \"10.0.0.300\""));
    assert!(run(&["10.0.0.1", "--at", "last tuesday"]).contains("RFC 3339"));
    let missing = run(&["10.0.0.1"]);
    assert!(missing.contains("no IP history under"), "{missing}");
}
