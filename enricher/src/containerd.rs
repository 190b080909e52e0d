//! Container and pod metadata from containerd, looked up off the hot path.
//!
//! Events only probe a cache. A miss queues the container for a background
//! task that asks containerd (with a timeout) and fills the cache, so a slow
//! or absent runtime never stalls the event stream: events go on partially
//! enriched until the answer is there. Kubelet's labels on the container
//! give the pod (io.kubernetes.pod.name / namespace / uid) and container
//! name (io.kubernetes.container.name).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use containerd_client::events::ContainerCreate;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, SubscribeRequest};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Streaming};
use containerd_client::types::Envelope;
use moka::sync::Cache;
use prost::Message;
use tokio::sync::mpsc;
use tracelake_model::error_chain;

use crate::cri::CriClient;
use crate::kube::{Workload, infer};
use crate::metrics::{self, CacheCounters};
use crate::unresolved::{Reason, Unresolved};

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
    /// Ids containerd did not know (or could not be asked about), briefly, with the reason.
    missing: Cache<String, Reason>,
    queued: Mutex<HashSet<String>>,
    tx: mpsc::UnboundedSender<(String, String)>,
    counters: Arc<CacheCounters>,
    unresolved: Arc<Unresolved>,
    /// The runtime answered the last connection attempt.
    connected: AtomicBool,
    /// Containers learned from the runtime's event stream before any event asked.
    announced: AtomicU64,
}

/// Counts for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LookupStats {
    pub hits: u64,
    pub misses: u64,
}

/// What is known of a container right now.
#[derive(Debug, Clone)]
pub enum MetaState {
    /// The runtime's answer.
    Found(Arc<ContainerMeta>),
    /// A lookup is in flight: the answer is expected within the runtime timeout.
    Pending,
    /// No answer, for this reason (asked again after a few seconds).
    Missing(Reason),
}

/// How [`ContainerdMeta`] reaches the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The runtime's socket; waited for when it does not exist (yet).
    pub socket: PathBuf,
    /// Longest wait for one lookup.
    pub timeout: Duration,
    /// Containers kept.
    pub capacity: u64,
    /// How long metadata of removed containers is kept.
    pub ttl: Duration,
    /// Subscribe to the runtime's events, so containers are known before their first process runs.
    pub watch_events: bool,
    /// Which API to ask.
    pub api: RuntimeApi,
    /// When `socket` does not exist, use the first of the known runtime sockets ([`crate::cri::KNOWN_SOCKETS`]).
    pub search_known: bool,
    /// Where lookups that fail are counted.
    pub unresolved: Arc<Unresolved>,
}

/// The runtime API metadata comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeApi {
    /// containerd's own API where the socket serves it (events included), else CRI.
    #[default]
    Auto,
    /// containerd's own API only.
    Containerd,
    /// The Kubernetes CRI API (`runtime.v1`): CRI-O, k3s, containerd's CRI plugin.
    Cri,
}

/// Between connection attempts while the runtime is away.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// How long a container the runtime could not tell of is not asked about again.
const MISSING_TTL: Duration = Duration::from_secs(5);

impl ContainerdMeta {
    /// Starts the background lookup task on the current tokio runtime.
    /// `ttl`: how long metadata of removed containers is kept.
    pub fn start(socket: PathBuf, timeout: Duration, capacity: u64, ttl: Duration) -> Arc<ContainerdMeta> {
        ContainerdMeta::start_with(RuntimeOptions {
            socket,
            timeout,
            capacity,
            ttl,
            watch_events: true,
            api: RuntimeApi::Auto,
            search_known: false,
            unresolved: Unresolved::new(),
        })
    }

    /// Starts the background task: it connects (and reconnects, every
    /// second while the socket is missing or refuses), follows the runtime's
    /// container events, and answers lookups queued by [`ContainerdMeta::get`].
    pub fn start_with(opts: RuntimeOptions) -> Arc<ContainerdMeta> {
        let (tx, rx) = mpsc::unbounded_channel::<(String, String)>();
        let counters = Arc::<CacheCounters>::default();
        let me = Arc::new(ContainerdMeta {
            found: Cache::builder()
                .max_capacity(opts.capacity)
                .time_to_idle(opts.ttl)
                .eviction_listener(metrics::listener(&counters))
                .build(),
            missing: Cache::builder().max_capacity(opts.capacity).time_to_live(MISSING_TTL).build(),
            queued: Mutex::new(HashSet::new()),
            tx,
            counters,
            unresolved: Arc::clone(&opts.unresolved),
            connected: AtomicBool::new(false),
            announced: AtomicU64::new(0),
        });
        tokio::spawn(follow(Arc::downgrade(&me), rx, opts));
        me
    }

    /// Hit, miss and eviction counts of the metadata cache.
    pub fn counters(&self) -> &Arc<CacheCounters> {
        &self.counters
    }

    /// Whether the runtime answered the last connection attempt.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Containers learned from the runtime's events before an event asked for them.
    pub fn announced(&self) -> u64 {
        self.announced.load(Ordering::Relaxed)
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
        match self.state(namespace, id) {
            MetaState::Found(m) => Some(m),
            MetaState::Pending | MetaState::Missing(_) => None,
        }
    }

    /// Cached metadata, or whether a lookup is in flight (one is queued on a
    /// first miss) or why there is no answer.
    pub fn state(&self, namespace: &str, id: &str) -> MetaState {
        if let Some(m) = self.found.get(id) {
            self.counters.hit();
            return MetaState::Found(m);
        }
        self.counters.miss();
        if let Some(reason) = self.missing.get(id) {
            return MetaState::Missing(reason);
        }
        // Events of a container whose lookup is in flight find it queued
        // without allocating; only the first miss copies the id.
        let Ok(mut q) = self.queued.lock() else { return MetaState::Missing(Reason::RuntimeUnreachable) };
        if !q.contains(id) {
            q.insert(id.to_string());
            if self.tx.send((namespace.to_string(), id.to_string())).is_err() {
                q.remove(id);
                return MetaState::Missing(Reason::RuntimeUnreachable);
            }
        }
        MetaState::Pending
    }

    fn done(&self, id: &str) {
        if let Ok(mut q) = self.queued.lock() {
            q.remove(id);
        }
    }

    /// Stores a lookup's outcome.
    fn settle(&self, socket: &Path, id: &str, outcome: Result<Option<ContainerMeta>, Reason>) {
        match outcome {
            Ok(Some(meta)) => self.found.insert(id.to_string(), Arc::new(meta)),
            Ok(None) => self.missing.insert(id.to_string(), Reason::ContainerUnknown),
            Err(reason) => {
                self.unresolved.warn(
                    reason,
                    self.unresolved.get(reason),
                    &format_args!("container {id}: no answer from the runtime at {}", socket.display()),
                );
                self.missing.insert(id.to_string(), reason);
            }
        }
        self.done(id);
    }
}

/// A connection to the runtime, by the API it serves.
enum Backend {
    Containerd(Channel),
    Cri(Box<CriClient>),
}

/// The background task's connection to the runtime.
struct Link {
    socket: PathBuf,
    opts: RuntimeOptions,
    backend: Option<Backend>,
    /// Created containers from the event stream's task; `None` when the stream ended.
    events: Option<mpsc::UnboundedReceiver<Option<(String, String)>>>,
    ever_connected: bool,
}

impl Link {
    /// The configured socket, or where it is missing (and searching is on) the first known runtime socket.
    fn pick_socket(&self) -> PathBuf {
        if self.opts.search_known
            && !self.opts.socket.exists()
            && let Some(found) = crate::cri::find_socket(None)
        {
            return found;
        }
        self.opts.socket.clone()
    }

    /// Connects with the configured API; `Auto` asks containerd's version service and falls back to CRI.
    async fn connect(&mut self) -> Result<Backend, String> {
        let socket = self.pick_socket();
        self.socket.clone_from(&socket);
        if self.opts.api != RuntimeApi::Cri {
            let ch = containerd_client::connect(&socket).await.map_err(|e| error_chain(&e))?;
            let version = VersionClient::new(ch.clone()).version(()).await;
            match version {
                Ok(_) => return Ok(Backend::Containerd(ch)),
                Err(status) if self.opts.api == RuntimeApi::Containerd => {
                    return Err(format!("not containerd's API: {status}"));
                }
                // CRI-O and other CRI-only runtimes: ask CRI below.
                Err(_) => {}
            }
        }
        crate::cri::connect(&socket).await.map(|c| Backend::Cri(Box::new(c))).map_err(|e| e.to_string())
    }

    /// Connects if not connected; false (warned, rate-limited) when the runtime does not answer.
    async fn ensure(&mut self, me: &ContainerdMeta) -> bool {
        if self.backend.is_some() {
            return true;
        }
        match tokio::time::timeout(self.opts.timeout, self.connect()).await {
            Ok(Ok(backend)) => {
                let api = match &backend {
                    Backend::Containerd(ch) => {
                        if self.opts.watch_events {
                            self.events = Some(subscribe(ch.clone()));
                        }
                        "containerd"
                    }
                    // CRI has no event stream every runtime serves: lookups on the first event and the hold cover it.
                    Backend::Cri(_) => "cri",
                };
                self.backend = Some(backend);
                me.connected.store(true, Ordering::Relaxed);
                // Answers given while the runtime was away are stale now.
                me.missing.invalidate_all();
                let again = if self.ever_connected { " again" } else { "" };
                tracing::info!(
                    socket = %self.socket.display(),
                    api,
                    events = self.events.is_some(),
                    "container runtime reachable{again}"
                );
                self.ever_connected = true;
                true
            }
            Ok(Err(e)) => {
                me.connected.store(false, Ordering::Relaxed);
                let what = format_args!(
                    "container runtime socket {} unreachable ({e}); container and pod metadata wait for it, \
                     retried every {RECONNECT_EVERY:?}",
                    self.socket.display()
                );
                me.unresolved.warn(Reason::RuntimeUnreachable, me.unresolved.get(Reason::RuntimeUnreachable), &what);
                false
            }
            Err(_) => {
                me.connected.store(false, Ordering::Relaxed);
                let what = format_args!(
                    "container runtime at {} did not accept a connection within {:?}",
                    self.socket.display(),
                    self.opts.timeout
                );
                me.unresolved.warn(Reason::RuntimeTimeout, me.unresolved.get(Reason::RuntimeTimeout), &what);
                false
            }
        }
    }

    fn lost(&mut self, me: &ContainerdMeta) {
        me.connected.store(false, Ordering::Relaxed);
        self.backend = None;
        self.events = None;
    }

    /// Asks the runtime about one container, connecting first if needed.
    async fn lookup(
        &mut self,
        me: &ContainerdMeta,
        namespace: &str,
        id: &str,
    ) -> Result<Option<ContainerMeta>, Reason> {
        if !self.ensure(me).await {
            return Err(Reason::RuntimeUnreachable);
        }
        let asked = match &mut self.backend {
            None => return Err(Reason::RuntimeUnreachable),
            Some(Backend::Containerd(ch)) => tokio::time::timeout(self.opts.timeout, lookup(ch.clone(), namespace, id))
                .await
                .map(|r| r.map_err(|e| e.to_string())),
            Some(Backend::Cri(c)) => tokio::time::timeout(self.opts.timeout, c.container(id))
                .await
                .map(|r| r.map(|found| found.map(|c| c.meta)).map_err(|e| e.to_string())),
        };
        match asked {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => {
                tracing::debug!(container = %id, error = %e, "runtime lookup failed");
                self.lost(me);
                Err(Reason::RuntimeUnreachable)
            }
            Err(_) => {
                self.lost(me);
                Err(Reason::RuntimeTimeout)
            }
        }
    }
}

/// The background task: connection, event stream and lookups.
async fn follow(me: Weak<ContainerdMeta>, mut rx: mpsc::UnboundedReceiver<(String, String)>, opts: RuntimeOptions) {
    let mut link = Link { socket: opts.socket.clone(), opts, backend: None, events: None, ever_connected: false };
    loop {
        if link.backend.is_none() {
            let Some(m) = me.upgrade() else { return };
            link.ensure(&m).await;
        }
        tokio::select! {
            req = rx.recv() => {
                let Some((namespace, id)) = req else { return };
                let Some(m) = me.upgrade() else { return };
                let outcome = link.lookup(&m, &namespace, &id).await;
                m.settle(&link.socket, &id, outcome);
            }
            ev = next_event(&mut link.events), if link.events.is_some() => {
                let Some(m) = me.upgrade() else { return };
                match ev {
                    Some(Some((namespace, id))) => {
                        if m.found.contains_key(&id) {
                            continue;
                        }
                        if let Ok(Some(meta)) = link.lookup(&m, &namespace, &id).await {
                            m.announced.fetch_add(1, Ordering::Relaxed);
                            m.found.insert(id.clone(), Arc::new(meta));
                            m.missing.invalidate(&id);
                        }
                    }
                    Some(None) | None => {
                        // The stream ended: the runtime restarted or went away. Reconnect.
                        tracing::warn!(socket = %link.socket.display(), "container runtime event stream closed; reconnecting");
                        link.lost(&m);
                    }
                }
            }
            () = tokio::time::sleep(RECONNECT_EVERY), if link.backend.is_none() => {}
        }
    }
}

/// Subscribes to container creation: kubelet (and ctr) create a container
/// with its labels before they start its task, so the answer is usually in
/// the cache before the container's first process runs. The stream is read
/// by a task of its own: containerd sends the response headers only with the
/// first event, so awaiting the subscription here would stall lookups.
fn subscribe(ch: Channel) -> mpsc::UnboundedReceiver<Option<(String, String)>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let req = SubscribeRequest { filters: vec![r#"topic=="/containers/create""#.to_string()] };
        let mut stream = match EventsClient::new(ch).subscribe(req).await {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                tracing::warn!(
                    error = %status,
                    "cannot follow the runtime's container events; containers are looked up on their first event"
                );
                let _ = tx.send(None);
                return;
            }
        };
        while let Some(created) = next_created(&mut stream).await {
            if tx.send(Some(created)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// The next message of the event task: Some(None) when the stream ended.
async fn next_event(
    events: &mut Option<mpsc::UnboundedReceiver<Option<(String, String)>>>,
) -> Option<Option<(String, String)>> {
    events.as_mut()?.recv().await
}

/// The next created container (namespace, id), or None when the stream ended.
async fn next_created(stream: &mut Streaming<Envelope>) -> Option<(String, String)> {
    loop {
        let env = stream.message().await.ok()??;
        let Some(any) = env.event else { continue };
        match ContainerCreate::decode(any.value.as_slice()) {
            Ok(c) if !c.id.is_empty() => return Some((env.namespace, c.id)),
            Ok(_) | Err(_) => continue,
        }
    }
}

async fn lookup(
    ch: Channel,
    namespace: &str,
    id: &str,
) -> Result<Option<ContainerMeta>, Box<dyn std::error::Error + Send + Sync>> {
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
