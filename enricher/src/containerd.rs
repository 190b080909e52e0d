//! Container and pod metadata from containerd, looked up off the hot path.
//!
//! Events only probe a cache. A miss queues the container for a background
//! task that asks containerd (with a timeout) and fills the cache, so a slow
//! or absent runtime never stalls the event stream: events go on partially
//! enriched until the answer is there. Kubelet's labels on the container
//! give the pod (io.kubernetes.pod.name / namespace / uid) and container
//! name (io.kubernetes.container.name).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest};
use containerd_client::tonic::Request;
use containerd_client::tonic::transport::Channel;
use moka::sync::Cache;
use tokio::sync::mpsc;

use crate::kube::{Workload, infer};
use crate::metrics::{self, CacheCounters};

/// What containerd knows of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    pub id: String,
    pub image: String,
    pub container_name: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The image's content digest, when the runtime still has the image.
    pub image_digest: Option<String>,
    /// The pod's workload guessed from its name and these labels, once per
    /// container (the API server's answer, when there is one, wins).
    pub workload: Option<Workload>,
}

impl ContainerMeta {
    /// Metadata from a container's labels (kubelet's `io.kubernetes.*`).
    pub fn from_labels(id: &str, image: String, labels: BTreeMap<String, String>) -> ContainerMeta {
        let get = |k: &str| labels.get(k).cloned();
        let workload = labels.get("io.kubernetes.pod.name").and_then(|pod| infer(pod, &labels));
        ContainerMeta {
            id: id.to_string(),
            image,
            container_name: get("io.kubernetes.container.name"),
            pod_name: get("io.kubernetes.pod.name"),
            pod_namespace: get("io.kubernetes.pod.namespace"),
            pod_uid: get("io.kubernetes.pod.uid"),
            labels,
            image_digest: None,
            workload,
        }
    }
}

/// Cached containerd metadata with background lookups.
#[derive(Debug)]
pub struct ContainerdMeta {
    found: Cache<String, Arc<ContainerMeta>>,
    /// Ids containerd did not know (or could not be asked about), briefly.
    missing: Cache<String, ()>,
    queued: Mutex<HashSet<String>>,
    tx: mpsc::UnboundedSender<(String, String)>,
    counters: Arc<CacheCounters>,
}

/// Counts for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LookupStats {
    pub hits: u64,
    pub misses: u64,
}

impl ContainerdMeta {
    /// Starts the background lookup task on the current tokio runtime.
    /// `ttl`: how long metadata of removed containers is kept.
    pub fn start(socket: PathBuf, timeout: Duration, capacity: u64, ttl: Duration) -> Arc<ContainerdMeta> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, String)>();
        let counters = Arc::<CacheCounters>::default();
        let me = Arc::new(ContainerdMeta {
            found: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(ttl)
                .eviction_listener(metrics::listener(&counters))
                .build(),
            missing: Cache::builder().max_capacity(capacity).time_to_live(Duration::from_secs(5)).build(),
            queued: Mutex::new(HashSet::new()),
            tx,
            counters,
        });
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            let mut client = None;
            while let Some((namespace, id)) = rx.recv().await {
                let Some(me) = weak.upgrade() else { break };
                let result = tokio::time::timeout(timeout, lookup(&socket, &mut client, &namespace, &id)).await;
                match result {
                    Ok(Ok(Some(meta))) => {
                        me.found.insert(id.clone(), Arc::new(meta));
                    }
                    Ok(Ok(None)) => me.missing.insert(id.clone(), ()),
                    Ok(Err(e)) => {
                        tracing::warn!(container = %id, error = %e, "containerd lookup failed");
                        client = None;
                        me.missing.insert(id.clone(), ());
                    }
                    Err(_) => {
                        tracing::warn!(container = %id, ?timeout, "containerd lookup timed out");
                        client = None;
                        me.missing.insert(id.clone(), ());
                    }
                }
                if let Ok(mut q) = me.queued.lock() {
                    q.remove(&id);
                }
            }
        });
        me
    }

    /// Hit, miss and eviction counts of the metadata cache.
    pub fn counters(&self) -> &Arc<CacheCounters> {
        &self.counters
    }

    /// Seeds the cache with metadata learned elsewhere (a runtime event
    /// stream, the Kubernetes watch), so no lookup is needed.
    pub fn prime(&self, meta: ContainerMeta) {
        self.found.insert(meta.id.clone(), Arc::new(meta));
    }

    /// What is cached for container `id`, without asking containerd.
    pub fn cached(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        self.found.get(id)
    }

    /// Cached metadata, or None (and a background lookup queued) on a miss.
    pub fn get(&self, namespace: &str, id: &str) -> Option<Arc<ContainerMeta>> {
        if let Some(m) = self.found.get(id) {
            self.counters.hit();
            return Some(m);
        }
        self.counters.miss();
        if self.missing.contains_key(id) {
            return None;
        }
        // Events of a container whose lookup is in flight find it queued
        // without allocating; only the first miss copies the id.
        if let Ok(mut q) = self.queued.lock()
            && !q.contains(id)
        {
            q.insert(id.to_string());
            let _ = self.tx.send((namespace.to_string(), id.to_string()));
        }
        None
    }
}

async fn lookup(
    socket: &std::path::Path,
    channel: &mut Option<Channel>,
    namespace: &str,
    id: &str,
) -> Result<Option<ContainerMeta>, Box<dyn std::error::Error + Send + Sync>> {
    if channel.is_none() {
        *channel = Some(containerd_client::connect(socket).await?);
    }
    let Some(ch) = channel.clone() else { return Ok(None) };
    let ns: containerd_client::tonic::metadata::MetadataValue<_> = namespace.parse()?;
    let mut req = Request::new(GetContainerRequest { id: id.to_string() });
    req.metadata_mut().insert("containerd-namespace", ns.clone());
    let ct = match ContainersClient::new(ch.clone()).get(req).await {
        Ok(resp) => match resp.into_inner().container {
            Some(ct) => ct,
            None => return Ok(None),
        },
        Err(status) if status.code() == containerd_client::tonic::Code::NotFound => return Ok(None),
        Err(status) => return Err(Box::new(status)),
    };
    let labels: BTreeMap<String, String> = ct.labels.into_iter().collect();
    let mut meta = ContainerMeta::from_labels(id, ct.image, labels);
    if !meta.image.is_empty() {
        // The image may have been removed since: then the digest stays unknown.
        let mut req = Request::new(GetImageRequest { name: meta.image.clone() });
        req.metadata_mut().insert("containerd-namespace", ns);
        if let Ok(resp) = ImagesClient::new(ch).get(req).await {
            meta.image_digest = resp.into_inner().image.and_then(|i| i.target).map(|t| t.digest);
        }
    }
    Ok(Some(meta))
}
