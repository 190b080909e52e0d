//! Identity as deployed: `tracelake run` and `tracelake agent` holding exactly the capabilities the agent's
//! DaemonSet grants (uid 0, a bounding set of exactly those, nothing inheritable or ambient, as a container that
//! drops ALL and adds them), with real containerd containers labelled as kubelet labels them, and a real Kafka
//! broker for the agent.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tracelake_testkit::broker::Broker;
use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};

use common::tracelake;

/// What this test grants: the capability list of `deploy/daemonset.yaml`, checked below to be exactly that.
const TESTED: [(&str, u32); 2] = [("BPF", 39), ("PERFMON", 38)];

fn chart_capabilities() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/daemonset.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = &doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"];
    assert_eq!(c["drop"][0], "ALL");
    let mut add: Vec<String> = c["add"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
    add.sort();
    add
}

/// A capability mask line of /proc/<pid>/status.
fn status_mask(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap();
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// The granted set: the chart's, less what this sandbox's own bounding set lacks (CAP_SYS_RESOURCE here).
fn granted() -> u64 {
    let mut tested: Vec<String> = TESTED.iter().map(|(n, _)| (*n).to_string()).collect();
    tested.sort();
    assert_eq!(chart_capabilities(), tested, "the chart's capability list and the tested list differ");
    let own = status_mask(std::process::id(), "CapBnd:");
    let mut mask = 0;
    for (name, bit) in TESTED {
        if own & (1 << bit) == 0 {
            eprintln!("CAP_{name} is not in this sandbox's bounding set: it cannot be granted here; tested without it");
        } else {
            mask |= 1 << bit;
        }
    }
    mask
}

/// Makes `cmd` run as uid 0 with exactly `keep`: bounding set cut to it, inheritable and ambient sets cleared,
/// so execve gives permitted = effective = `keep`.
fn with_capabilities(cmd: &mut Command, keep: u64) {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap().trim().parse().unwrap();
    // SAFETY: only prctl and capset, async-signal-safe syscalls on the child's own credentials; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            for cap in 0..=last {
                if keep & (1 << cap) == 0 && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            #[repr(C)]
            struct Header {
                version: u32,
                pid: i32,
            }
            #[repr(C)]
            #[derive(Clone, Copy)]
            struct Data {
                effective: u32,
                permitted: u32,
                inheritable: u32,
            }
            let mut h = Header { version: 0x2008_0522, pid: 0 };
            let mut d = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
            if libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            d[0].inheritable = 0;
            d[1].inheritable = 0;
            if libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn pod_spec(id: &str, pod: &str, uid: &str, args: &[&str]) -> ContainerSpec {
    ContainerSpec::new(id, args.iter().copied())
        .label("io.kubernetes.pod.name", pod)
        .label("io.kubernetes.pod.namespace", "shop")
        .label("io.kubernetes.pod.uid", uid)
        .label("io.kubernetes.container.name", "main")
}

/// Runs `mode` (run or agent) with the chart's capabilities while lab pods start, talk and exit; checks that
/// their events carry the whole identity.
fn identity_under_chart_capabilities(mode: &str) {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let keep = granted();
    let lab = Lab::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let broker = (mode == "agent").then(|| Broker::start().unwrap());
    let tag = if mode == "agent" { 0xa6 } else { 0x70 };
    let id = |n: u128| format!("{:064x}", (tag << 72) | n << 64 | u128::from(std::process::id()));
    let (id_a, id_b, id_job) = (id(0xa), id(0xb), id(0xc));

    let mut cmd = tracelake();
    cmd.args([mode, "--stdout", "--for", "60s"])
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()))
        .env("TRACELAKE__ENRICHER__STATE_DIR", format!("{:?}", state.path().display().to_string()))
        .env("TRACELAKE__KAFKA__SPOOL__DIR", format!("{:?}", spool.path().display().to_string()));
    if let Some(b) = &broker {
        cmd.args(["--brokers", &b.addr()]);
    }
    with_capabilities(&mut cmd, keep);
    let running = common::start(cmd);
    let pid = running.child.id();
    assert_eq!(status_mask(pid, "CapEff:"), keep, "the agent runs with exactly the granted capabilities");
    assert_eq!(status_mask(pid, "CapPrm:"), keep);
    assert_eq!(status_mask(pid, "CapBnd:"), keep);
    assert_eq!(status_mask(pid, "CapInh:"), 0);

    let server = ["sh", "-c", "while true; do echo hello-from-b | nc -l -p 8080; done"];
    let b = lab.run(&pod_spec(&id_b, "api-6c8f9d7b5b-q8x2m", "uid-b", &server).network()).unwrap();
    let a = lab.run(&pod_spec(&id_a, "web-7d9f8b6c5d-x2k4q", "uid-a", &["sleep", "120"]).network()).unwrap();
    let (ip_a, ip_b) = (a.ip().unwrap().to_string(), b.ip().unwrap().to_string());
    // A Job whose whole life is one short command: its entrypoint's exec is its only chance to be named.
    let job = lab
        .run(&pod_spec(&id_job, "report-29123456-x7k2p", "uid-job", &["sh", "-c", "echo tracelake-job-ran"]))
        .unwrap();
    // The observer learns pod IPs off the event path; give it a moment before A talks to B.
    std::thread::sleep(Duration::from_secs(2));
    common::connect_until_reply(&a, &ip_b);
    let later = a.exec("later", &["cat", "/etc/hostname"]).unwrap();
    assert!(later.status.success(), "{later:?}");
    std::thread::sleep(Duration::from_millis(500));

    let stopped = running.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    let events = stopped.events();
    let of = |cid: &str| -> Vec<&Value> { events.iter().filter(|v| v["container_id"] == cid).collect() };

    // A process started afterwards in A: container id, pod, namespace, workload and pod IP.
    let cat = of(&id_a)
        .into_iter()
        .find(|v| v["kind"] == "exec" && v["args"][0] == "cat")
        .unwrap_or_else(|| panic!("A's cat exec; log:\n{log}"));
    assert_eq!(cat["pod"], "web-7d9f8b6c5d-x2k4q", "{cat}");
    assert_eq!(cat["namespace"], "shop", "{cat}");
    assert_eq!((&cat["workload_kind"], &cat["workload"]), (&"Deployment".into(), &"web".into()), "{cat}");
    assert_eq!(cat["pod_ip"], ip_a.as_str(), "{cat}");
    assert!(cat.get("enrichment").is_none(), "complete identity: {cat}");

    // The connect from A to B names both ends.
    let connect = of(&id_a)
        .into_iter()
        .find(|v| v["kind"] == "net_connect" && v["remote_ip"] == ip_b.as_str() && v["remote_port"] == 8080)
        .unwrap_or_else(|| panic!("A's connect to B; log:\n{log}"));
    assert_eq!(connect["pod"], "web-7d9f8b6c5d-x2k4q", "{connect}");
    assert_eq!(connect["peer_pod"], "api-6c8f9d7b5b-q8x2m", "{connect}");
    assert_eq!(connect["peer_namespace"], "shop", "{connect}");
    assert_eq!(connect["peer_container_id"], id_b.as_str(), "{connect}");
    assert_eq!(connect["peer_workload"], "api", "{connect}");

    // Every event of every lab container names its pod, from the first one on (the entrypoint's exec).
    for (cid, pod) in
        [(&id_a, "web-7d9f8b6c5d-x2k4q"), (&id_b, "api-6c8f9d7b5b-q8x2m"), (&id_job, "report-29123456-x7k2p")]
    {
        let evs = of(cid);
        assert!(evs.iter().any(|v| v["kind"] == "exec"), "{pod}: its exec seen; log:\n{log}");
        for v in evs {
            assert_eq!(v["pod"], pod, "{v}");
            assert_eq!(v["namespace"], "shop", "{v}");
        }
    }
    let job_exec = of(&id_job).into_iter().find(|v| v["kind"] == "exec").unwrap();
    assert_eq!((&job_exec["workload_kind"], &job_exec["workload"]), (&"CronJob".into(), &"report".into()));
    drop((a, b, job));
}

#[test]
fn run_names_pods_with_only_the_charts_capabilities() {
    identity_under_chart_capabilities("run");
}

#[test]
fn agent_names_pods_with_only_the_charts_capabilities() {
    identity_under_chart_capabilities("agent");
}
