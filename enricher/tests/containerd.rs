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

/// A runtime that accepts connections and never answers: lookups end after the runtime timeout with the reason
/// counted and warned about, and later asks return at once (events are never held up by it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_never_answers_times_out_with_its_reason() {
    use tracelake_enricher::{MetaState, Reason, RuntimeApi, RuntimeOptions, Unresolved};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    // Accepts and holds every connection, reading nothing: a hung runtime.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let unresolved = Unresolved::new();
    let meta = ContainerdMeta::start_with(RuntimeOptions {
        socket: socket.clone(),
        timeout: Duration::from_millis(300),
        capacity: 10,
        ttl: Duration::from_secs(60),
        watch_events: true,
        api: RuntimeApi::Auto,
        search_known: false,
        unresolved: unresolved.clone(),
    });
    let id = "a".repeat(64);
    let t = Instant::now();
    assert!(matches!(meta.state("k8s.io", &id), MetaState::Pending));
    assert!(t.elapsed() < Duration::from_millis(50), "asking never waits for the runtime");
    let reason = loop {
        match meta.state("k8s.io", &id) {
            MetaState::Missing(r) => break r,
            MetaState::Pending => {}
            MetaState::Found(m) => panic!("a silent runtime answered {m:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "the lookup ends after the timeout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(matches!(reason, Reason::RuntimeTimeout | Reason::RuntimeUnreachable), "{reason:?}");
    assert!(!meta.connected());
    silent.abort();
}
