//! A process inside a real container (containerd + runc, busybox rootfs) is
//! seen by the real sensor with the container's own cgroup and namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::field_reassign_with_default, reason = "test code")]

mod common;

use std::os::unix::fs::MetadataExt;

use common::capture;
use tracelake_model::Kind;
use tracelake_sensor::SensorConfig;
use tracelake_sensor::config::Scope;
use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_process_has_its_own_cgroup_and_scope_containers_skips_the_host() {
    lab_available().expect("the container lab needs root, containerd, runc and busybox (scripts/setup.sh)");
    let lab = Lab::start().expect("containerd starts");
    let container = lab
        .run(&ContainerSpec::new("tl-sensor-e2e", ["sleep", "30"]).label("io.kubernetes.pod.name", "web-0"))
        .expect("container runs");
    let (cg, init_pid) = (container.cgroup_id(), container.pid());
    // Other tests exec `cat` in their own containers at the same time: this
    // container's processes are the ones in its mount namespace.
    let mntns = std::fs::metadata(format!("/proc/{init_pid}/ns/mnt")).unwrap().ino() as u32;
    let mut cfg = SensorConfig::default();
    cfg.scope = Scope::Containers;
    let (events, pids) = capture(cfg, move || {
        let host = std::process::Command::new("/bin/true").spawn().unwrap();
        let host_pid = common::wait(host);
        let out = container.exec("tl-e2e-cat", &["cat", "/etc/hostname"]).expect("exec into the container");
        assert!(out.status.success(), "{out:?}");
        container.stop().expect("container stops");
        vec![host_pid]
    })
    .await;
    let own_cgroup = tracelake_testkit::lab::unified_cgroup(std::process::id()).unwrap().1;
    assert_ne!(cg, own_cgroup, "the container has a cgroup of its own");
    let cat = events
        .iter()
        .find(|e| {
            e.kind == Kind::Exec && e.subject.mntns == mntns && e.as_event().args().next() == Some(b"cat".as_slice())
        })
        .unwrap_or_else(|| {
            panic!(
                "exec of cat in the container: {:?}",
                events.iter().filter(|e| e.kind == Kind::Exec).collect::<Vec<_>>()
            )
        });
    assert_eq!(cat.subject.cgroup_id, cg, "cgroup id of the container");
    let host_mntns = std::fs::metadata("/proc/self/ns/mnt").unwrap().ino() as u32;
    assert_ne!(mntns, host_mntns, "container mount namespace");
    assert_ne!(
        cat.subject.pidns,
        std::fs::metadata("/proc/self/ns/pid").unwrap().ino() as u32,
        "container pid namespace"
    );
    assert!(cat.text(0).starts_with("/bin/"), "exe in the container's view: {}", cat.text(0));
    assert!(events.iter().any(|e| e.kind == Kind::Exit && e.subject.tgid == init_pid), "container init exit seen");
    assert!(events.iter().all(|e| e.subject.tgid != pids[0]), "scope=containers leaves host processes out");
}
