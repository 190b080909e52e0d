//! Container and pod metadata from a real containerd (the test lab's own
//! instance), with kubelet's labels on a real container.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::time::{Duration, Instant};

use tracelake_enricher::ContainerdMeta;
use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_labels_become_pod_identity_and_misses_never_block() {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let id = format!("{:064x}", 0x3e7a_u128 << 64 | u128::from(std::process::id()));
    let spec = ContainerSpec::new(id.clone(), ["sleep", "30"])
        .label("io.kubernetes.pod.name", "web-7d4b9c-x2x9z")
        .label("io.kubernetes.pod.namespace", "shop")
        .label("io.kubernetes.pod.uid", "0b6f3f4c-7a0e-4d7e-9b5a-1c2d3e4f5a6b")
        .label("io.kubernetes.container.name", "nginx");
    let c = lab.run(&spec).unwrap();
    let meta = ContainerdMeta::start(lab.address().to_path_buf(), Duration::from_secs(2), 100, Duration::from_secs(60));

    // The first ask is a miss that returns at once and queues a lookup.
    let t = Instant::now();
    assert!(meta.get(lab.namespace(), &id).is_none());
    assert!(t.elapsed() < Duration::from_millis(50), "a miss does not wait for containerd");
    let found = loop {
        if let Some(m) = meta.get(lab.namespace(), &id) {
            break m;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "lookup finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(found.pod_name.as_deref(), Some("web-7d4b9c-x2x9z"));
    assert_eq!(found.pod_namespace.as_deref(), Some("shop"));
    assert_eq!(found.container_name.as_deref(), Some("nginx"));
    assert_eq!(found.pod_uid.as_deref(), Some("0b6f3f4c-7a0e-4d7e-9b5a-1c2d3e4f5a6b"));

    // Removed from containerd, still known from the cache (tombstone).
    c.stop().unwrap();
    assert_eq!(meta.get(lab.namespace(), &id).unwrap().pod_name.as_deref(), Some("web-7d4b9c-x2x9z"));

    // An unknown container and a runtime that is not there both end as misses.
    assert!(meta.get(lab.namespace(), &"f".repeat(64)).is_none());
    let dead = ContainerdMeta::start(
        "/nonexistent/containerd.sock".into(),
        Duration::from_millis(200),
        10,
        Duration::from_secs(1),
    );
    assert!(dead.get("k8s.io", &id).is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(dead.get("k8s.io", &id).is_none(), "an absent runtime leaves events partially enriched");
}
