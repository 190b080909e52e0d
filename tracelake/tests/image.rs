//! The enricher issue's end-to-end identity, with real parts only: a lab
//! container created from a real image (so containerd has its name and
//! digest), with real pod networking (CNI) and kubelet's labels, watched by
//! `tracelake run --stdout`. A process run in it comes out with container,
//! image, image digest, pod, namespace, workload and pod IP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::time::{Duration, Instant};

use tracelake_testkit::lab::{ContainerSpec, IMAGE_REF, Lab, lab_available};

/// Deletes the container's record from containerd while its task runs on.
/// `ctr` refuses this, the API does not: afterwards containerd answers "not
/// found" for the container, yet its processes still run and emit events.
fn forget_in_containerd(lab: &Lab, id: &str) {
    use containerd_client::services::v1::DeleteContainerRequest;
    use containerd_client::services::v1::containers_client::ContainersClient;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = containerd_client::connect(lab.address()).await.unwrap();
        let mut req = containerd_client::tonic::Request::new(DeleteContainerRequest { id: id.to_string() });
        req.metadata_mut().insert("containerd-namespace", lab.namespace().parse().unwrap());
        ContainersClient::new(channel).delete(req).await.unwrap();
    });
}

use common::tracelake;

/// Waits until the persisted IP history says `pod` holds `ip` now: the
/// node observer has read the container's namespace.
fn wait_for_owner(state: &std::path::Path, ip: &str, pod: &str) {
    let t = Instant::now();
    loop {
        let out = tracelake().args(["whois", ip, "--json", "--at", "now", "--state-dir"]).arg(state).output().unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if rows[0]["pod"] == pod {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{pod} never recorded for {ip}: {rows}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn exec_in_a_deployment_pod_from_an_image_carries_full_identity() {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let image = lab.image().unwrap();
    let state = tempfile::tempdir().unwrap();
    let id = format!("{:064x}", 0x1a6e_u128 << 64 | u128::from(std::process::id()));
    let (pod, uid) = ("checkout-7d9f8b6c5d-x2k4q", "5f0c2a8e-3b1d-4c6e-9a7f-2d4b6c8e0a1f");

    let mut cmd = tracelake();
    cmd.args(["run", "--stdout", "--for", "90s"])
        .env("TRACELAKE__ENRICHER__CONTAINERD_SOCKET", format!("{:?}", lab.address().display().to_string()))
        .env("TRACELAKE__ENRICHER__STATE_DIR", format!("{:?}", state.path().display().to_string()));
    let running = common::start(cmd);

    // The init waits for the word that containerd forgot it, then runs one last command. The word
    // is a signal, not a file: once containerd forgets the container it may garbage-collect the
    // writable snapshot under the running process, and a file written there is not found.
    let init = "trap 'go=1' USR1; until [ -n \"$go\" ]; do sleep 0.05; done; exec cat /proc/version";
    let spec = ContainerSpec::new(id.clone(), ["sh", "-c", init])
        .image()
        .network()
        .label("io.kubernetes.pod.name", pod)
        .label("io.kubernetes.pod.namespace", "shop")
        .label("io.kubernetes.pod.uid", uid)
        .label("io.kubernetes.container.name", "checkout");
    let c = lab.run(&spec).unwrap();
    let ip = c.ip().unwrap().to_string();
    // The container's first events queue the runtime lookup and hand it to the node observer.
    assert!(c.exec("first", &["true"]).unwrap().status.success());
    wait_for_owner(state.path(), &ip, pod);
    let out = c.exec("probe", &["cat", "/etc/hostname"]).unwrap();
    assert!(out.status.success(), "{out:?}");

    // Container gone: containerd no longer knows it when its init runs the last command.
    forget_in_containerd(&lab, &id);
    let listed = lab.ctr().args(["containers", "ls", "-q"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&id), "{listed:?}");
    // SAFETY: plain kill(2) on the container's init, which is alive (it is waiting for this).
    // A pid namespace's init gets signals from outside only for handlers it set: it trapped USR1.
    assert_eq!(unsafe { libc::kill(c.pid() as i32, libc::SIGUSR1) }, 0);
    let t = Instant::now();
    while std::path::Path::new(&format!("/proc/{}", c.pid())).exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "init never ran its last command");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let stopped = running.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    let events = stopped.events();
    let ours: Vec<&serde_json::Value> = events.iter().filter(|v| v["container_id"] == id.as_str()).collect();

    let cat = ours
        .iter()
        .find(|v| v["kind"] == "exec" && v["args"][0] == "cat" && v["args"][1] == "/etc/hostname")
        .unwrap_or_else(|| panic!("exec of cat in the container among {ours:#?}\nlog:\n{log}"));
    assert_eq!(cat["container"], true, "{cat}");
    assert_eq!(cat["container_runtime"], "containerd", "{cat}");
    assert_eq!(cat["containerd_namespace"], lab.namespace(), "{cat}");
    assert_eq!(cat["image"], IMAGE_REF, "{cat}");
    assert_eq!(cat["image_digest"], image.digest.as_str(), "{cat}");
    assert_eq!(cat["pod"], pod, "{cat}");
    assert_eq!(cat["namespace"], "shop", "{cat}");
    assert_eq!(cat["pod_uid"], uid, "{cat}");
    assert_eq!(cat["container_name"], "checkout", "{cat}");
    assert_eq!(cat["workload_kind"], "Deployment", "{cat}");
    assert_eq!(cat["workload"], "checkout", "{cat}");
    assert_eq!(cat["workload_source"], "inferred", "{cat}");
    assert_eq!(cat["pod_ip"], ip.as_str(), "{cat}");
    assert!(cat.get("enrichment").is_none(), "complete: {cat}");

    // Events that happened only after containerd had forgotten the container
    // (the signal that released them was sent after the deletion) still name it.
    let late = ours
        .iter()
        .find(|v| v["kind"] == "exec" && v["args"][0] == "cat" && v["args"][1] == "/proc/version")
        .unwrap_or_else(|| panic!("the init's last exec among {ours:#?}"));
    let exit = ours
        .iter()
        .find(|v| v["kind"] == "exit" && v["pid"] == late["pid"] && v["comm"] == "cat")
        .unwrap_or_else(|| panic!("the init's exit among {ours:#?}"));
    // (The exit is the cgroup emptying: the node observer may release the pod IP at once.)
    assert_eq!(late["pod_ip"], ip.as_str(), "{late}");
    for ev in [late, exit] {
        for field in ["image", "image_digest", "pod", "namespace", "pod_uid", "workload_kind", "workload"] {
            assert_eq!(ev[field], cat[field], "{field} of {ev}");
        }
        assert!(ev.get("enrichment").is_none(), "complete: {ev}");
    }
    drop(c);
}
