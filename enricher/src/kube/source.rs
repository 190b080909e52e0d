//! Watches of the API server (pods of this node, ReplicaSets, Jobs,
//! Services) feeding indexes that events read without waiting.
//!
//! One task applies every watch event to the `State` it owns and, once the
//! events ready at that moment are applied, publishes fresh read-only
//! indexes through an `ArcSwap`. A lookup is a hash probe in the current
//! index plus a reference-count increment: no await, no lock, no
//! allocation. A slow or unreachable API server only delays the next
//! index; the watcher retries with backoff and events go on with what is
//! known (and names inferred from the pod name and labels).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::stream::{self, BoxStream, StreamExt};
use futures::{FutureExt, Stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::config::{KubeMode, KubernetesConfig};
use super::store::{OwnerMeta, PodChange, PodIndex, PodInfo, ServiceIndex, ServiceInfo, State, controller_of};

/// Why the Kubernetes client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("no Kubernetes client configuration (in-cluster or kubeconfig)")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("cannot start the Kubernetes watch thread")]
    Runtime(#[source] std::io::Error),
}

/// The four watched resources, one bit each once their first list is in.
const PODS: u8 = 1;
const REPLICASETS: u8 = 2;
const JOBS: u8 = 4;
const SERVICES: u8 = 8;
const ALL: u8 = PODS | REPLICASETS | JOBS | SERVICES;

/// Pods, workloads and services of the cluster as far as they are known.
#[derive(Debug)]
pub struct KubeMeta {
    pods: ArcSwap<PodIndex>,
    services: ArcSwap<ServiceIndex>,
    changes: broadcast::Sender<PodChange>,
    synced: AtomicU8,
    errors: AtomicU64,
    tombstone_ttl: Duration,
}

/// Counters for logs, metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KubeStats {
    /// Every watch has had its first complete list.
    pub synced: bool,
    /// Watch errors so far (connection refused, timeouts, bad answers): each one retried with backoff.
    pub errors: u64,
    /// Pods known, tombstones included.
    pub pods: usize,
    /// Service cluster IPs known.
    pub service_ips: usize,
}

/// One decoded watch event of any watched resource.
enum Change {
    // Boxed: a Pod is 2 KiB on the stack, the other events much less.
    Pod(Box<Event<Pod>>),
    ReplicaSet(Event<PartialObjectMeta<ReplicaSet>>),
    Job(Event<PartialObjectMeta<Job>>),
    Service(Box<Event<Service>>),
    Failed(&'static str, watcher::Error),
}

/// The client configuration `mode` asks for: None when off (or auto and
/// nothing is configured). Reads files only; it does not contact the server.
pub async fn client(cfg: &KubernetesConfig) -> Result<Option<Client>, KubeError> {
    match cfg.mode {
        KubeMode::Off => return Ok(None),
        KubeMode::Auto if !configured() => {
            tracing::info!(
                "kubernetes: no in-cluster service account or kubeconfig; workloads are inferred from names"
            );
            return Ok(None);
        }
        KubeMode::Auto | KubeMode::On => {}
    }
    let mut config = kube::Config::infer().await.map_err(KubeError::Infer)?;
    config.connect_timeout = Some(cfg.connect_timeout);
    // A watch answers within its server-side timeout; a little slack before giving up on it.
    config.read_timeout = Some(cfg.watch_timeout + Duration::from_secs(15));
    tracing::info!(server = %config.cluster_url, "kubernetes: using API server");
    Client::try_from(config).map(Some).map_err(KubeError::Client)
}

fn configured() -> bool {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists();
    let kubeconfig = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
    let home = std::env::var_os("HOME").is_some_and(|h| std::path::Path::new(&h).join(".kube/config").exists());
    in_cluster || kubeconfig || home
}

impl KubeMeta {
    /// Empty indexes; `tombstone_ttl`: how long deleted pods stay visible.
    pub fn new(tombstone_ttl: Duration, change_buffer: usize) -> Arc<KubeMeta> {
        let (changes, _) = broadcast::channel(change_buffer.max(1));
        Arc::new(KubeMeta {
            pods: ArcSwap::from_pointee(PodIndex::default()),
            services: ArcSwap::from_pointee(ServiceIndex::default()),
            changes,
            synced: AtomicU8::new(0),
            errors: AtomicU64::new(0),
            tombstone_ttl,
        })
    }

    /// Indexes built from objects at hand (a saved `kubectl get -o json`,
    /// tests, benchmarks) instead of watches.
    pub fn from_objects(
        pods: impl IntoIterator<Item = Pod>,
        replicasets: impl IntoIterator<Item = PartialObjectMeta<ReplicaSet>>,
        jobs: impl IntoIterator<Item = PartialObjectMeta<Job>>,
        services: impl IntoIterator<Item = Service>,
    ) -> Arc<KubeMeta> {
        let me = KubeMeta::new(Duration::from_secs(600), 1);
        let mut state = State::default();
        for rs in replicasets {
            apply_owner(&mut state.replicasets, &rs);
        }
        for job in jobs {
            apply_owner(&mut state.jobs, &job);
        }
        for pod in pods {
            state.apply_pod(&pod);
        }
        for svc in services {
            state.apply_service(&svc);
        }
        me.pods.store(Arc::new(state.pod_index()));
        me.services.store(Arc::new(state.service_index()));
        me.synced.store(ALL, Ordering::Relaxed);
        me
    }

    /// The pod with this UID (tombstones included), workload resolved.
    #[inline]
    pub fn lookup_pod(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.pods.load().by_uid.get(uid).cloned()
    }

    /// The pod of this name (the live one when the name was reused).
    #[inline]
    pub fn lookup_pod_by_name(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        self.pods.load().by_name.get(namespace)?.get(name).cloned()
    }

    /// The Service owning this cluster IP.
    #[inline]
    pub fn lookup_service(&self, ip: IpAddr) -> Option<Arc<ServiceInfo>> {
        self.services.load().by_ip.get(&ip).cloned()
    }

    /// Every pod known now (to seed a subscriber before it reads changes).
    pub fn pods(&self) -> Vec<Arc<PodInfo>> {
        self.pods.load().by_uid.values().cloned().collect()
    }

    /// Pod changes from now on. A receiver that falls more than
    /// `change_buffer` behind gets `RecvError::Lagged` and should re-seed from `pods()`.
    pub fn subscribe(&self) -> broadcast::Receiver<PodChange> {
        self.changes.subscribe()
    }

    pub fn stats(&self) -> KubeStats {
        let pods = self.pods.load();
        KubeStats {
            synced: self.synced.load(Ordering::Relaxed) == ALL,
            errors: self.errors.load(Ordering::Relaxed),
            pods: pods.by_uid.len(),
            service_ips: self.services.load().by_ip.len(),
        }
    }

    /// Runs the watches on the current tokio runtime until `self` is dropped.
    pub fn spawn(self: &Arc<Self>, client: Client, cfg: &KubernetesConfig) -> tokio::task::JoinHandle<()> {
        tokio::spawn(watch(Arc::downgrade(self), client, cfg.clone(), cfg.node_name()))
    }

    /// Resolves `cfg.mode`, then runs the watches on a thread of their own
    /// (decoding a large list never delays the event loop). None when off.
    /// Callable from inside or outside a tokio runtime.
    pub fn start_thread(cfg: &KubernetesConfig, tombstone_ttl: Duration) -> Result<Option<Arc<KubeMeta>>, KubeError> {
        let me = KubeMeta::new(tombstone_ttl, cfg.change_buffer);
        let (weak, cfg, node) = (Arc::downgrade(&me), cfg.clone(), cfg.node_name());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("tl-kube".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return drop(tx.send(Err(KubeError::Runtime(e)))),
                };
                match rt.block_on(client(&cfg)) {
                    Ok(Some(c)) => {
                        let _ = tx.send(Ok(true));
                        rt.block_on(watch(weak, c, cfg, node));
                    }
                    other => drop(tx.send(other.map(|_| false))),
                }
            })
            .map_err(KubeError::Runtime)?;
        match rx.recv() {
            Ok(Ok(true)) => Ok(Some(me)),
            Ok(Ok(false)) => Ok(None),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(KubeError::Runtime(std::io::Error::other("kubernetes thread ended"))),
        }
    }
}

fn apply_owner<K>(
    map: &mut std::collections::HashMap<Box<str>, OwnerMeta>,
    obj: &PartialObjectMeta<K>,
) -> Option<Box<str>> {
    let m = &obj.metadata;
    let uid: Box<str> = m.uid.as_deref()?.into();
    map.insert(uid.clone(), OwnerMeta { name: m.name.as_deref()?.into(), controller: controller_of(m) });
    Some(uid)
}

fn stream_of<K, F>(api: Api<K>, cfg: watcher::Config, name: &'static str, wrap: F) -> BoxStream<'static, Change>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(Event<K>) -> Change + Send + 'static,
{
    watcher::watcher(api, cfg)
        .default_backoff()
        .map(move |r| match r {
            Ok(ev) => wrap(ev),
            Err(e) => Change::Failed(name, e),
        })
        .boxed()
}

/// (API group, resource) of everything watched: what deploy/rbac.yaml must grant (list and watch).
pub fn watched_resources() -> [(&'static str, &'static str); 4] {
    fn of<K: k8s_openapi::Resource>() -> (&'static str, &'static str) {
        (K::GROUP, K::URL_PATH_SEGMENT)
    }
    [of::<Pod>(), of::<ReplicaSet>(), of::<Job>(), of::<Service>()]
}

fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect()
    }
}

fn streams(client: &Client, cfg: &KubernetesConfig, node: &str) -> impl Stream<Item = Change> + Send + use<> {
    let base = watcher::Config::default().timeout(u32::try_from(cfg.watch_timeout.as_secs()).unwrap_or(290).max(1));
    let on_node = base.clone().fields(&format!("spec.nodeName={node}"));
    let mut all: Vec<BoxStream<'static, Change>> = Vec::new();
    for api in apis::<Pod>(client, &cfg.namespaces) {
        all.push(stream_of(api, on_node.clone(), "pods", |e| Change::Pod(Box::new(e))));
    }
    for api in apis::<PartialObjectMeta<ReplicaSet>>(client, &cfg.namespaces) {
        all.push(stream_of(api, base.clone(), "replicasets", Change::ReplicaSet));
    }
    for api in apis::<PartialObjectMeta<Job>>(client, &cfg.namespaces) {
        all.push(stream_of(api, base.clone(), "jobs", Change::Job));
    }
    for api in apis::<Service>(client, &cfg.namespaces) {
        all.push(stream_of(api, base.clone(), "services", |e| Change::Service(Box::new(e))));
    }
    stream::select_all(all)
}

/// Objects listed since the last `Init` of a watch: the rest are gone.
#[derive(Default)]
struct Relist {
    pods: Option<HashSet<Arc<str>>>,
    replicasets: Option<HashSet<Box<str>>>,
    jobs: Option<HashSet<Box<str>>>,
    services: Option<HashSet<Arc<str>>>,
}

struct Watch {
    state: State,
    relist: Relist,
    pods_dirty: bool,
    services_dirty: bool,
    ttl: Duration,
    synced: u8,
    node: String,
    /// A watch per namespace: a resource is synced when all of its watches are.
    per_resource: usize,
    init_done: [usize; 4],
}

async fn watch(me: Weak<KubeMeta>, client: Client, cfg: KubernetesConfig, node: String) {
    let ttl = match me.upgrade() {
        Some(m) => m.tombstone_ttl,
        None => return,
    };
    tracing::info!(%node, namespaces = ?cfg.namespaces, "kubernetes: watching pods of this node, replicasets, jobs, services");
    let mut changes = std::pin::pin!(streams(&client, &cfg, &node));
    let mut w = Watch {
        state: State::default(),
        relist: Relist::default(),
        pods_dirty: false,
        services_dirty: false,
        ttl,
        synced: 0,
        node,
        per_resource: cfg.namespaces.len().max(1),
        init_done: [0; 4],
    };
    // Tombstones are swept a few times per TTL.
    let mut sweep = tokio::time::interval((ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(30)));
    loop {
        tokio::select! {
            next = changes.next() => {
                let Some(first) = next else { break };
                let Some(meta) = me.upgrade() else { break };
                w.apply(&meta, first);
                // Everything already received goes into the same index.
                while let Some(Some(more)) = changes.next().now_or_never() {
                    w.apply(&meta, more);
                }
                w.publish(&meta);
            }
            _ = sweep.tick() => {
                let Some(meta) = me.upgrade() else { break };
                if w.state.expire(Instant::now()) {
                    w.pods_dirty = true;
                    w.publish(&meta);
                }
            }
        }
    }
    tracing::debug!("kubernetes: watches stopped");
}

impl Watch {
    fn apply(&mut self, meta: &KubeMeta, change: Change) {
        match change {
            Change::Pod(ev) => self.pod(meta, *ev),
            Change::ReplicaSet(ev) => {
                let (map, seen) = (&mut self.state.replicasets, &mut self.relist.replicasets);
                if let Some(uid) = owner_event(map, seen, ev, &mut self.init_done[1]) {
                    self.owner_changed(meta, &uid);
                }
                self.mark_synced(REPLICASETS, 1);
            }
            Change::Job(ev) => {
                let (map, seen) = (&mut self.state.jobs, &mut self.relist.jobs);
                if let Some(uid) = owner_event(map, seen, ev, &mut self.init_done[2]) {
                    self.owner_changed(meta, &uid);
                }
                self.mark_synced(JOBS, 2);
            }
            Change::Service(ev) => self.service(*ev),
            Change::Failed(resource, e) => {
                let n = meta.errors.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(resource, error = %e, errors = n, "kubernetes: watch failed; retrying with backoff (events use what is known)");
            }
        }
    }

    fn mark_synced(&mut self, bit: u8, slot: usize) {
        if self.synced & bit == 0 && self.init_done[slot] >= self.per_resource {
            self.synced |= bit;
            if bit == PODS {
                let n = self.state.pods.len();
                if n == 0 {
                    tracing::warn!(node = %self.node, "kubernetes: no pods on this node: is node_name right?");
                } else {
                    tracing::info!(node = %self.node, pods = n, "kubernetes: pods listed");
                }
            }
        }
    }

    fn pod(&mut self, meta: &KubeMeta, ev: Event<Pod>) {
        match ev {
            Event::Init => self.relist.pods = Some(HashSet::new()),
            Event::InitApply(p) | Event::Apply(p) => {
                if let (Some(seen), Some(uid)) = (self.relist.pods.as_mut(), p.metadata.uid.as_deref()) {
                    seen.insert(uid.into());
                }
                if let Some(info) = self.state.apply_pod(&p) {
                    self.pods_dirty = true;
                    let _ = meta.changes.send(PodChange::Applied(info));
                }
            }
            Event::Delete(p) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    // The final state (IPs, phase) comes with the delete.
                    self.state.apply_pod(&p);
                    self.gone(meta, uid);
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.relist.pods.take() {
                    let missing: Vec<Arc<str>> = self
                        .state
                        .pods
                        .iter()
                        .filter(|(uid, (_, expiry))| expiry.is_none() && !seen.contains(*uid))
                        .map(|(uid, _)| Arc::clone(uid))
                        .collect();
                    for uid in missing {
                        self.gone(meta, &uid);
                    }
                }
                self.init_done[0] += 1;
                self.mark_synced(PODS, 0);
            }
        }
    }

    fn gone(&mut self, meta: &KubeMeta, uid: &str) {
        if let Some(dead) = self.state.delete_pod(uid, self.ttl) {
            self.pods_dirty = true;
            let _ = meta.changes.send(PodChange::Deleted(dead));
        }
    }

    fn owner_changed(&mut self, meta: &KubeMeta, uid: &str) {
        for p in self.state.reresolve(uid) {
            self.pods_dirty = true;
            let _ = meta.changes.send(PodChange::Applied(p));
        }
    }

    fn service(&mut self, ev: Event<Service>) {
        match ev {
            Event::Init => self.relist.services = Some(HashSet::new()),
            Event::InitApply(s) | Event::Apply(s) => {
                if let (Some(seen), Some(uid)) = (self.relist.services.as_mut(), s.metadata.uid.as_deref()) {
                    seen.insert(uid.into());
                }
                self.services_dirty |= self.state.apply_service(&s);
            }
            Event::Delete(s) => {
                if let Some(uid) = s.metadata.uid.as_deref() {
                    self.services_dirty |= self.state.services.remove(uid).is_some();
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.relist.services.take() {
                    let before = self.state.services.len();
                    self.state.services.retain(|uid, _| seen.contains(uid));
                    self.services_dirty |= before != self.state.services.len();
                }
                self.init_done[3] += 1;
                self.mark_synced(SERVICES, 3);
            }
        }
    }

    fn publish(&mut self, meta: &KubeMeta) {
        if self.pods_dirty {
            meta.pods.store(Arc::new(self.state.pod_index()));
            self.pods_dirty = false;
        }
        if self.services_dirty {
            meta.services.store(Arc::new(self.state.service_index()));
            self.services_dirty = false;
        }
        meta.synced.fetch_or(self.synced, Ordering::Relaxed);
    }
}

/// Applies a ReplicaSet or Job event; returns the uid whose pods need re-resolving.
fn owner_event<K>(
    map: &mut std::collections::HashMap<Box<str>, OwnerMeta>,
    seen: &mut Option<HashSet<Box<str>>>,
    ev: Event<PartialObjectMeta<K>>,
    init_done: &mut usize,
) -> Option<Box<str>> {
    match ev {
        Event::Init => {
            *seen = Some(HashSet::new());
            None
        }
        Event::InitApply(o) | Event::Apply(o) => {
            let before = o.metadata.uid.as_deref().and_then(|u| map.get(u)).cloned();
            let uid = apply_owner(map, &o)?;
            if let Some(s) = seen.as_mut() {
                s.insert(uid.clone());
            }
            (before.as_ref() != map.get(&uid)).then_some(uid)
        }
        Event::Delete(o) => {
            map.remove(o.metadata.uid.as_deref()?);
            None
        }
        Event::InitDone => {
            if let Some(s) = seen.take() {
                map.retain(|uid, _| s.contains(uid));
            }
            *init_done += 1;
            None
        }
    }
}
