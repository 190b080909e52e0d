#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use super::*;
use crate::EnricherConfig;

const MS: u64 = 1_000_000;

/// An enricher whose containerd metadata arrives by `prime`, as a watch would bring it: no containerd answers
/// on its socket.
fn primed_enricher() -> (Enricher, Arc<ContainerdMeta>) {
    let ttl = Duration::from_secs(60);
    let meta = ContainerdMeta::start("/nonexistent/containerd.sock".into(), Duration::from_millis(100), 100, ttl);
    let e = Enricher::new(&EnricherConfig::default().cgroup_root(), 100, ttl).unwrap().with_containerd(meta.clone());
    (e, meta)
}

/// The front answers repeats without moka, and an incomplete answer (runtime
/// metadata not there yet) is asked for again once the recheck time passes.
#[tokio::test]
async fn metadata_that_arrives_later_reaches_the_front_after_a_recheck() {
    let (mut e, meta) = primed_enricher();
    let id = format!("{:064x}", 0xf0_u128);
    let cgroup = 1 << 50;
    e.remember_cgroup(cgroup, &format!("/kubepods/besteffort/pod0b6f3f4c-7a0e-4d7e-9b5a-1c2d3e4f5a6b/{id}"));

    let first = e.resolve(cgroup, 1000 * MS);
    assert!(first.partial && first.meta.is_none());
    assert!(first.pending, "a lookup is in flight: the pipeline may hold the event");
    assert_eq!(first.cgroup.as_ref().unwrap().container.as_ref().unwrap().container_id, id);
    // The runtime is not there: the lookup ends, and says why.
    let t = std::time::Instant::now();
    while matches!(meta.state("k8s.io", &id), crate::MetaState::Pending) {
        assert!(t.elapsed() < Duration::from_secs(5), "the lookup ends");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let settled = e.resolve(cgroup, 1000 * MS);
    assert!(settled.partial && !settled.pending, "a pending answer is asked for again on the next event");
    assert_eq!(settled.missing, Some(Reason::RuntimeUnreachable));
    meta.prime(ContainerMeta {
        id: id.clone(),
        pod_name: Some("web-0".into()),
        pod_namespace: Some("shop".into()),
        ..ContainerMeta::default()
    });
    let soon = e.resolve(cgroup, 1050 * MS);
    assert!(soon.partial, "within the recheck time the front's answer stands");
    let later = e.resolve(cgroup, 1000 * MS + crate::front::RECHECK_NS + 1);
    assert!(!later.partial);
    assert_eq!(later.identity().pod, Some("web-0"));
    assert_eq!(later.identity().namespace, Some("shop"));
    assert_eq!(later.missing, None);
    let c = e.counters.read();
    assert_eq!((c.hits, c.misses), (1, 3), "one answer from the front: {c:?}");
    // Complete answers stay in the front for good.
    let again = e.resolve(cgroup, u64::MAX / 2);
    assert!(!again.partial && again.meta.is_some());
    assert_eq!(e.counters.read().hits, 2);
}

/// Host cgroups (no container) are complete answers: never partial, never rechecked.
#[tokio::test]
async fn host_processes_are_not_partial() {
    let ttl = Duration::from_secs(60);
    let meta = ContainerdMeta::start("/nonexistent/containerd.sock".into(), Duration::from_millis(100), 100, ttl);
    let mut e = Enricher::new(&EnricherConfig::default().cgroup_root(), 100, ttl).unwrap().with_containerd(meta);
    e.remember_cgroup(7 << 50, "/system.slice/sshd.service");
    for t in [1, 10 * crate::front::RECHECK_NS] {
        let r = e.resolve(7 << 50, t);
        assert!(!r.partial && r.meta.is_none());
        assert_eq!(r.identity().cgroup, Some("/system.slice/sshd.service"));
    }
    assert_eq!(e.counters.read().hits, 1);
}

/// Answers built from the same shared values carry equal stamps (the lake interns by them); new metadata makes
/// another stamp; what `keep` returns holds the values alive.
#[tokio::test]
async fn answers_from_the_same_values_share_a_stamp() {
    let (mut e, meta) = primed_enricher();
    let id = format!("{:064x}", 0xf1_u128);
    let cgroup = 1 << 51;
    e.remember_cgroup(cgroup, &format!("/kubepods/besteffort/pod0b6f3f4c-7a0e-4d7e-9b5a-1c2d3e4f5a6c/{id}"));
    let first = e.resolve(cgroup, 1000 * MS);
    let again = e.resolve(cgroup, 1001 * MS);
    assert!(first.identity().stamp.is_some());
    assert_eq!(first.identity().stamp, again.identity().stamp);
    meta.prime(ContainerMeta { id: id.clone(), pod_name: Some("web-1".into()), ..ContainerMeta::default() });
    let later = e.resolve(cgroup, 1000 * MS + crate::front::RECHECK_NS + 1);
    assert_eq!(later.identity().pod, Some("web-1"));
    assert_ne!(first.identity().stamp, later.identity().stamp, "new metadata, new stamp");
    let m = later.meta.clone().unwrap();
    let before = Arc::strong_count(&m);
    let kept = later.keep();
    assert_eq!(Arc::strong_count(&m), before + 1);
    drop(kept);
    assert_eq!(Arc::strong_count(&m), before);
    assert_eq!(Resolved::default().parts(), [0; 6]);
}
