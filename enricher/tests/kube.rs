//! kube-rs watches against recorded API server responses.
//!
//! There is no Kubernetes API server on this machine, so a fake one (the
//! one mock of these tests) serves list and watch responses recorded in
//! the shape a real API server sends (tests/fixtures/kube/: `PodList` with
//! `metadata.resourceVersion`, metadata-only `PartialObjectMetadataList`s,
//! watch events as newline-delimited JSON ending in a BOOKMARK) to a real
//! `kube::Client` over real HTTP on a local socket.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tracelake_enricher::kube::{KubeMeta, KubernetesConfig, PodChange, WorkloadSource};
use tracelake_enricher::{ContainerMeta, Resolved};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Serves `<resource>-list.json` to lists and `<resource>-watch.jsonl` to
/// the first watch of each resource (pods only once `release_pod_watch` is
/// notified), then holds later watches open without events.
struct FakeApiServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    release_pod_watch: Arc<Notify>,
}

impl FakeApiServer {
    async fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let watched = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let (reqs, rel) = (Arc::clone(&requests), Arc::clone(&release));
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let (reqs, rel, watched) = (Arc::clone(&reqs), Arc::clone(&rel), Arc::clone(&watched));
                tokio::spawn(async move { serve(sock, reqs, rel, watched).await });
            }
        });
        FakeApiServer { url, requests, release_pod_watch: release }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut sock: TcpStream,
    reqs: Arc<Mutex<Vec<String>>>,
    release: Arc<Notify>,
    watched: Arc<Mutex<std::collections::HashSet<&'static str>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let accept = head.lines().find_map(|l| l.strip_prefix("accept: ").or(l.strip_prefix("Accept: "))).unwrap_or("");
    reqs.lock().unwrap().push(format!("{target} accept={accept}"));
    let path = target.split('?').next().unwrap_or("");
    let resource = match path {
        "/api/v1/pods" => "pods",
        "/apis/apps/v1/replicasets" => "replicasets",
        "/apis/batch/v1/jobs" => "jobs",
        "/api/v1/services" => "services",
        _ => {
            let _ = sock.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            return;
        }
    };
    if !target.contains("watch=true") {
        let body = fixture(&format!("{resource}-list.json"));
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(&body).await;
        return;
    }
    let _ = sock
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        .await;
    let first = watched.lock().unwrap().insert(resource);
    if first {
        if resource == "pods" {
            release.notified().await;
        }
        // One chunk per event, as the API server flushes them.
        for line in fixture(&format!("{resource}-watch.jsonl")).split_inclusive(|&b| b == b'\n') {
            let _ = sock.write_all(format!("{:x}\r\n", line.len()).as_bytes()).await;
            let _ = sock.write_all(line).await;
            let _ = sock.write_all(b"\r\n").await;
        }
    }
    // Held open like a watch with nothing to say, until the client goes.
    let _ = sock.read(&mut buf).await;
}

fn client(url: &str) -> kube::Client {
    let mut cfg = kube::Config::new(url.parse().unwrap());
    cfg.connect_timeout = Some(Duration::from_secs(2));
    kube::Client::try_from(cfg).unwrap()
}

fn config() -> KubernetesConfig {
    KubernetesConfig { node_name: Some("node-a".into()), ..KubernetesConfig::default() }
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn workload(meta: &KubeMeta, uid_suffix: &str) -> (String, String, WorkloadSource) {
    let p = meta.lookup_pod(&format!("7f1c2a6e-1111-4a1b-9c1d-00000000000{uid_suffix}")).unwrap();
    (p.workload.kind.as_str().to_string(), p.workload.name.to_string(), p.workload.source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resolve_workloads_follow_deletes_and_name_services() {
    let server = FakeApiServer::start().await;
    let meta = KubeMeta::new(Duration::from_millis(300), 64);
    let mut changes = meta.subscribe();
    meta.spawn(client(&server.url), &config());
    until("first lists", || meta.stats().synced.then_some(())).await;

    let api = WorkloadSource::Api;
    assert_eq!(workload(&meta, "1"), ("Deployment".into(), "web".into(), api), "through its ReplicaSet");
    assert_eq!(workload(&meta, "2"), ("StatefulSet".into(), "db".into(), api));
    assert_eq!(workload(&meta, "3"), ("DaemonSet".into(), "fluent-bit".into(), api));
    assert_eq!(workload(&meta, "4"), ("CronJob".into(), "backup".into(), api), "through its Job");
    assert_eq!(workload(&meta, "5"), ("Job".into(), "migrate".into(), api), "a Job no CronJob owns");
    assert_eq!(workload(&meta, "6"), ("Pod".into(), "debug".into(), api), "bare pod");
    assert_eq!(workload(&meta, "7"), ("ReplicaSet".into(), "legacy-6b5f9c7d8".into(), api), "bare ReplicaSet");

    let web = meta.lookup_pod_by_name("shop", "web-7d9f8b6c5d-x2k4q").unwrap();
    assert_eq!(&*web.uid, "7f1c2a6e-1111-4a1b-9c1d-000000000001");
    let ips: Vec<IpAddr> = vec!["10.244.1.10".parse().unwrap(), "fd00:10:244:1::a".parse().unwrap()];
    assert_eq!(&*web.ips, &ips[..]);
    assert_eq!(web.phase.as_deref(), Some("Running"));
    assert_eq!(web.node.as_deref(), Some("node-a"));
    assert!(web.start_time.is_some() && !web.deleted && !web.host_network);
    let labels: BTreeMap<&str, &str> = web.labels.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(labels.get("app"), Some(&"web"));
    assert!(meta.lookup_pod_by_name("logging", "fluent-bit-8xk2p").unwrap().host_network);

    // Services: dual-stack cluster IPs both name the service; headless ones have none.
    let web_svc = meta.lookup_service("10.96.12.34".parse().unwrap()).unwrap();
    assert_eq!((&*web_svc.namespace, &*web_svc.name), ("shop", "web"));
    let v6 = meta.lookup_service("fd00:10:96::1234".parse().unwrap()).unwrap();
    assert_eq!(&*v6.name, "web");
    assert_eq!(&*meta.lookup_service("10.96.0.1".parse().unwrap()).unwrap().name, "kubernetes");
    assert!(meta.lookup_service("10.244.1.11".parse().unwrap()).is_none());
    // A service added by the watch.
    let api_svc = until("service from the watch", || meta.lookup_service("10.96.40.7".parse().unwrap())).await;
    assert_eq!(&*api_svc.name, "api");

    // Only this node's pods were asked for; ReplicaSets and Jobs as metadata only.
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .filter(|r| r.starts_with("/api/v1/pods"))
            .all(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .filter(|r| r.starts_with("/apis/apps/v1/replicasets"))
            .all(|r| r.contains("as=PartialObjectMetadata")),
        "{reqs:?}"
    );

    // Now the pod watch: api pod added (its ReplicaSet came in the RS watch), debug deleted.
    assert!(!meta.lookup_pod_by_name("default", "debug").unwrap().deleted);
    server.release_pod_watch.notify_one();
    let api_pod = until("api pod running", || {
        meta.lookup_pod_by_name("shop", "api-5c8d7b9f4-kq9zt")
            .filter(|p| p.phase.as_deref() == Some("Running") && p.workload.source == WorkloadSource::Api)
    })
    .await;
    assert_eq!((api_pod.workload.kind.as_str(), &*api_pod.workload.name), ("Deployment", "api"));
    assert_eq!(&*api_pod.ips, &["10.244.1.16".parse::<IpAddr>().unwrap()][..]);
    let dead = meta.lookup_pod("7f1c2a6e-1111-4a1b-9c1d-000000000006").unwrap();
    assert!(dead.deleted, "a deleted pod stays as a tombstone for late events");
    assert_eq!(dead.phase.as_deref(), Some("Succeeded"), "the final state came with the delete");
    assert!(dead.deletion_time.is_some());
    until("tombstone expiry", || meta.lookup_pod("7f1c2a6e-1111-4a1b-9c1d-000000000006").is_none().then_some(())).await;
    assert!(meta.lookup_pod_by_name("default", "debug").is_none());
    assert!(meta.lookup_pod("7f1c2a6e-1111-4a1b-9c1d-000000000001").is_some(), "live pods stay");

    // Subscribers saw every pod, the IPs of the new one, and the delete.
    let mut seen = Vec::new();
    while let Ok(c) = changes.try_recv() {
        seen.push(c);
    }
    let applied = |name: &str| seen.iter().any(|c| matches!(c, PodChange::Applied(p) if &*p.name == name));
    for name in ["web-7d9f8b6c5d-x2k4q", "db-0", "debug", "api-5c8d7b9f4-kq9zt"] {
        assert!(applied(name), "{name}: {seen:?}");
    }
    assert!(
        seen.iter()
            .any(|c| matches!(c, PodChange::Applied(p) if !p.ips.is_empty() && &*p.name == "api-5c8d7b9f4-kq9zt"))
    );
    assert!(seen.iter().any(|c| matches!(c, PodChange::Deleted(p) if &*p.name == "debug" && p.deleted)));
    assert_eq!(meta.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_server_leaves_inferred_workloads() {
    // A port nobody listens on: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let meta = KubeMeta::new(Duration::from_secs(60), 64);
    meta.spawn(client(&format!("http://127.0.0.1:{port}")), &config());
    until("a failed watch", || (meta.stats().errors > 0).then_some(())).await;
    let stats = meta.stats();
    assert!(!stats.synced && stats.pods == 0, "{stats:?}");

    // What the enricher does for an event of a container kubelet labelled:
    // the API has no answer, the name does.
    let labels: BTreeMap<String, String> = [
        ("io.kubernetes.pod.name", "web-7d9f8b6c5d-x2k4q"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.uid", "7f1c2a6e-1111-4a1b-9c1d-000000000001"),
        ("io.kubernetes.container.name", "nginx"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let container = Arc::new(ContainerMeta::from_labels("c0ffee", "nginx:1.27".into(), labels));
    // Lookups are plain reads while the watcher is backing off.
    for _ in 0..1000 {
        assert!(meta.lookup_pod("7f1c2a6e-1111-4a1b-9c1d-000000000001").is_none());
        assert!(meta.lookup_pod_by_name("shop", "web-7d9f8b6c5d-x2k4q").is_none());
    }
    let r = Resolved {
        meta: Some(container),
        pod: meta.lookup_pod("7f1c2a6e-1111-4a1b-9c1d-000000000001"),
        ..Resolved::default()
    };
    let id = r.identity();
    assert_eq!(
        (id.workload_kind, id.workload, id.workload_source),
        (Some("Deployment"), Some("web"), Some("inferred"))
    );
    assert_eq!((id.pod, id.namespace), (Some("web-7d9f8b6c5d-x2k4q"), Some("shop")));
    assert!(id.pod_labels.is_none());
}
