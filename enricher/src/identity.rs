//! Per-event identity: cgroup id -> path -> container reference, cached per
//! cgroup id so the per-event cost is one cache probe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tracelake_model::json::{Ancestor, Identity, MAX_ANCESTORS, Source, Stamp};
use tracelake_model::{Body, BootClock, Event, Kind};

use crate::cgroup::{ContainerRef, Runtime, parse_cgroup_path};
use crate::cgroup_index::{CgroupIndex, CgroupPaths, IndexError};
use crate::containerd::{ContainerMeta, ContainerdMeta, MetaState};
use crate::front::{Front, RECHECK_NS, Slot};
use crate::iphistory::{IpHistory, NodeObserver, Owner};
use crate::kube::{KubeMeta, PodInfo, ServiceInfo};
use crate::metrics::{self, CacheCounters};
use crate::process::{ProcessInfo, ProcessTable};
use crate::unresolved::{Reason, Unresolved};

/// What a cgroup id resolves to.
#[derive(Debug, PartialEq, Eq)]
pub struct CgroupIdentity {
    pub path: Arc<str>,
    pub container: Option<ContainerRef>,
}

/// Resolves the identity of events by their cgroup id.
#[derive(Debug)]
pub struct Enricher {
    index: CgroupIndex,
    by_cgroup: Cache<u64, Arc<CgroupIdentity>>,
    containerd: Option<Arc<ContainerdMeta>>,
    kube: Option<Arc<KubeMeta>>,
    counters: Arc<CacheCounters>,
    front: Front,
    ips: Option<IpSource>,
    unresolved: Arc<Unresolved>,
}

/// The IP history and what feeds it from this node.
#[derive(Debug)]
struct IpSource {
    history: Arc<IpHistory>,
    observer: Option<NodeObserver>,
    clock: BootClock,
}

/// Everything known of one event's workload, held for the event's lifetime.
#[derive(Debug, Default)]
pub struct Resolved {
    pub cgroup: Option<Arc<CgroupIdentity>>,
    pub meta: Option<Arc<ContainerMeta>>,
    /// The pod as the Kubernetes API knows it (workload resolved).
    pub pod: Option<Arc<PodInfo>>,
    /// The process, then its ancestors (see `ProcessTable::lineage_into`).
    pub chain: [Option<Arc<ProcessInfo>>; MAX_ANCESTORS + 1],
    /// A container whose runtime metadata was asked for but is not known
    /// (yet), or a pod the Kubernetes API does not know (yet).
    pub partial: bool,
    /// The runtime's answer is on its way: a caller that can wait briefly
    /// (the pipeline's hold of a new container's events) asks again.
    pub pending: bool,
    /// Why the identity is partial (or the cgroup unknown), when it is.
    pub missing: Option<Reason>,
    /// Network events: who held the remote IP at the event's time.
    pub peer: Option<Arc<Owner>>,
    /// The Service whose ClusterIP the peer address is (from the API watch), when no pod held it.
    pub peer_service: Option<Arc<ServiceInfo>>,
    /// The container's own IP, when observed.
    pub pod_ip: Option<Arc<str>>,
}

/// The identity strings come from these shared values only, and none of them changes once shared.
impl Source for Resolved {
    fn parts(&self) -> [usize; 6] {
        fn at<T: ?Sized>(a: &Option<Arc<T>>) -> usize {
            a.as_ref().map_or(0, |a| Arc::as_ptr(a).cast::<u8>() as usize)
        }
        [at(&self.cgroup), at(&self.meta), at(&self.pod), at(&self.pod_ip), at(&self.peer), at(&self.peer_service)]
    }

    fn keep(&self) -> Box<dyn std::any::Any + Send> {
        Box::new((
            self.cgroup.clone(),
            self.meta.clone(),
            self.pod.clone(),
            self.pod_ip.clone(),
            self.peer.clone(),
            self.peer_service.clone(),
        ))
    }
}

impl Resolved {
    /// Borrowed JSON identity fields.
    pub fn identity(&self) -> Identity<'_> {
        let mut id = Enricher::identity(self.cgroup.as_deref());
        id.stamp = Some(Stamp(self));
        id.partial = self.partial;
        if let Some(p) = &self.chain[0] {
            id.process_exe = Some(&p.exe);
        }
        for (slot, p) in id.ancestors.iter_mut().zip(self.chain[1..].iter().map_while(|p| p.as_ref())) {
            *slot = Some(Ancestor { pid: p.pid, exe: &p.exe, args: &p.args });
        }
        if let Some(m) = &self.meta {
            id.pod = m.pod_name.as_deref();
            id.namespace = m.pod_namespace.as_deref();
            id.container_name = m.container_name.as_deref();
            id.image = (!m.image.is_empty()).then_some(m.image.as_str());
            id.image_digest = m.image_digest.as_deref();
            id.pod_uid = id.pod_uid.or(m.pod_uid.as_deref());
            if let Some(w) = &m.workload {
                id.workload_kind = Some(w.kind.as_str());
                id.workload = Some(&w.name);
                id.workload_source = Some(w.source.as_str());
            }
        }
        if let Some(p) = &self.pod {
            id.pod = Some(&p.name);
            id.namespace = Some(&p.namespace);
            id.pod_uid = Some(&p.uid);
            id.workload_kind = Some(p.workload.kind.as_str());
            id.workload = Some(&p.workload.name);
            id.workload_source = Some(p.workload.source.as_str());
            id.pod_labels = (!p.labels.is_empty()).then_some(&p.labels[..]);
        }
        id.pod_ip = self.pod_ip.as_deref();
        if let Some(p) = &self.peer {
            id.peer_pod = p.pod.as_deref();
            id.peer_namespace = p.namespace.as_deref();
            id.peer_workload_kind = p.workload_kind.as_deref();
            id.peer_workload = p.workload.as_deref();
            id.peer_container_id = p.container_id.as_deref();
            id.peer_service = p.service.as_deref();
        }
        if let Some(svc) = &self.peer_service {
            id.peer_service = Some(&svc.name);
            id.peer_namespace = Some(&svc.namespace);
        }
        id
    }
}

/// The remote address of a network event that has a peer (not listen or
/// bind, not loopback or unspecified).
fn remote_ip(ev: &Event<'_>) -> Option<IpAddr> {
    let with_peer = match ev.kind {
        Kind::NetConnect | Kind::NetAccept | Kind::NetUdpSend | Kind::NetClose => true,
        Kind::NetListen
        | Kind::NetBind
        | Kind::Exec
        | Kind::Fork
        | Kind::Exit
        | Kind::CloneThread
        | Kind::FileOpen
        | Kind::FileRename
        | Kind::FileUnlink
        | Kind::FileChmod
        | Kind::FileChown
        | Kind::Setuid
        | Kind::Setgid
        | Kind::Capset
        | Kind::Ptrace
        | Kind::Mount
        | Kind::Umount
        | Kind::Unshare
        | Kind::Setns
        | Kind::ModuleLoad
        | Kind::Bpf
        | Kind::MemfdCreate
        | Kind::Chroot
        | Kind::PivotRoot
        | Kind::ProcessSnapshot => false,
    };
    let Body::Net { family, remote, .. } = ev.body else { return None };
    let ip = match family {
        2 => IpAddr::V4(Ipv4Addr::new(remote.addr[0], remote.addr[1], remote.addr[2], remote.addr[3])),
        10 => IpAddr::V6(Ipv6Addr::from(remote.addr)),
        _ => return None,
    };
    if !with_peer || ip.is_unspecified() || ip.is_loopback() {
        return None;
    }
    Some(ip)
}

/// The local address of a network event that has a peer, when it is a usable unicast address.
fn local_ip(ev: &Event<'_>) -> Option<IpAddr> {
    remote_ip(ev)?;
    let Body::Net { family, local, .. } = ev.body else { return None };
    let ip = match family {
        2 => IpAddr::V4(Ipv4Addr::new(local.addr[0], local.addr[1], local.addr[2], local.addr[3])),
        10 => IpAddr::V6(Ipv6Addr::from(local.addr)),
        _ => return None,
    };
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

fn runtime_name(r: Runtime) -> &'static str {
    match r {
        Runtime::Containerd => "containerd",
        Runtime::CriO => "cri-o",
        Runtime::Docker => "docker",
        Runtime::Unknown => "unknown",
    }
}

impl Enricher {
    /// `ttl`: how long identities of gone cgroups (exited containers) stay.
    pub fn new(cgroup_root: &std::path::Path, capacity: u64, ttl: Duration) -> Result<Enricher, IndexError> {
        let counters = Arc::<CacheCounters>::default();
        Ok(Enricher {
            index: CgroupIndex::open(cgroup_root, capacity, ttl)?,
            by_cgroup: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(ttl)
                .eviction_listener(metrics::listener(&counters))
                .build(),
            containerd: None,
            counters,
            front: Front::default(),
            ips: None,
            kube: None,
            unresolved: Unresolved::new(),
        })
    }

    /// Counts unresolved identities into `unresolved` (shared with the runtime lookups).
    pub fn with_unresolved(mut self, unresolved: Arc<Unresolved>) -> Enricher {
        self.unresolved = unresolved;
        self
    }

    /// The unresolved-identity counters.
    pub fn unresolved(&self) -> &Arc<Unresolved> {
        &self.unresolved
    }

    /// Resolves cgroup ids from `recorded` first (the sensor's record of created cgroups).
    pub fn with_recorded_cgroups(mut self, recorded: Arc<dyn CgroupPaths>) -> Enricher {
        self.index = self.index.with_recorded(recorded);
        self
    }

    /// Whether open_by_handle_at was refused (no CAP_DAC_READ_SEARCH).
    pub fn handles_denied(&self) -> bool {
        self.index.handles_denied()
    }

    /// The counters of every cache behind this enricher, by cache name.
    pub fn cache_counters(&self) -> Vec<(&'static str, Arc<CacheCounters>)> {
        let mut all =
            vec![("cgroup_identity", Arc::clone(&self.counters)), ("cgroup_path", Arc::clone(self.index.counters()))];
        if let Some(c) = &self.containerd {
            all.push(("container_metadata", Arc::clone(c.counters())));
        }
        all
    }

    /// Remembers the cgroup path of an id learned elsewhere (the /proc walk),
    /// so events still resolve after the cgroup is removed.
    pub fn remember_cgroup(&self, cgroup_id: u64, path: &str) {
        self.index.remember(cgroup_id, path);
    }

    /// Adds peer identity on network events from `history` (looked up at
    /// the event's time: `clock` turns kernel time into wall time), and the
    /// container's own IP from `observer`, which is told of every new container.
    pub fn with_ip_history(
        mut self,
        history: Arc<IpHistory>,
        observer: Option<NodeObserver>,
        clock: BootClock,
    ) -> Enricher {
        self.ips = Some(IpSource { history, observer, clock });
        self
    }

    /// The owner of the remote address of a network event at the event's time.
    pub fn peer(&self, ev: &Event<'_>) -> Option<Arc<Owner>> {
        let ips = self.ips.as_ref()?;
        let ip = remote_ip(ev)?;
        let at = i64::try_from(ips.clock.wall_ns(ev.subject.ktime_ns)).unwrap_or(i64::MAX);
        ips.history.who_had(ip, at)
    }

    /// Adds container and pod metadata from containerd (looked up in the
    /// background). Needs a tokio runtime.
    pub fn with_containerd(mut self, meta: Arc<ContainerdMeta>) -> Enricher {
        self.containerd = Some(meta);
        self
    }

    /// Adds pods and workloads from the Kubernetes API (indexes filled by
    /// watches in the background).
    pub fn with_kube(mut self, kube: Arc<KubeMeta>) -> Enricher {
        self.kube = Some(kube);
        self
    }

    /// cgroup identity plus whatever containerd and the API server have told
    /// so far, at event time `now_ns` (CLOCK_BOOTTIME, as events carry it).
    pub fn resolve(&mut self, cgroup_id: u64, now_ns: u64) -> Resolved {
        if let Some(slot) = self.front.get(cgroup_id)
            && (!slot.incomplete || now_ns < slot.recheck_ns)
        {
            self.counters.hit();
            return Resolved {
                cgroup: slot.cgroup.clone(),
                meta: slot.meta.clone(),
                pod: slot.pod.clone(),
                chain: Default::default(),
                partial: slot.partial,
                pending: slot.pending,
                missing: slot.missing,
                peer: None,
                peer_service: None,
                pod_ip: None,
            };
        }
        let (cgroup, mut missing) = match self.cgroup_or_reason(cgroup_id) {
            Ok(c) => (Some(c), None),
            Err(reason) => (None, Some(reason)),
        };
        let container = cgroup.as_ref().and_then(|c| c.container.as_ref());
        let mut pending = false;
        let (meta, mut partial) = match (&self.containerd, container) {
            (Some(src), Some(c)) => {
                // CRI containers live in kubelet's namespace; others say theirs in the path.
                let ns = c.namespace.as_deref().unwrap_or("k8s.io");
                match src.state(ns, &c.container_id) {
                    MetaState::Found(m) => (Some(m), false),
                    MetaState::Pending => {
                        pending = true;
                        missing = Some(Reason::RuntimeTimeout);
                        (None, true)
                    }
                    MetaState::Missing(reason) => {
                        missing = Some(reason);
                        (None, true)
                    }
                }
            }
            _ => (None, false),
        };
        let pod = self.kube.as_deref().and_then(|k| {
            let m = meta.as_deref();
            let uid = container.and_then(|c| c.pod_uid.as_deref()).or_else(|| m.and_then(|m| m.pod_uid.as_deref()));
            let by_name = m.and_then(|m| m.pod_namespace.as_deref().zip(m.pod_name.as_deref()));
            let pod = match (uid, by_name) {
                (Some(u), _) => k.lookup_pod(u).or_else(|| by_name.and_then(|(ns, n)| k.lookup_pod_by_name(ns, n))),
                (None, Some((ns, n))) => k.lookup_pod_by_name(ns, n),
                (None, None) => return None,
            };
            // A pod is expected here: the API server has not told of it (yet).
            if pod.is_none() {
                partial = true;
                missing = missing.or(Some(Reason::PodUnknown));
            }
            pod
        });
        let slot = Slot {
            cgroup: cgroup.clone(),
            meta: meta.clone(),
            pod: pod.clone(),
            partial,
            pending,
            missing,
            incomplete: partial || cgroup.is_none(),
            // A pending answer is asked for on every event: it arrives within milliseconds.
            recheck_ns: if pending { 0 } else { now_ns.saturating_add(RECHECK_NS) },
        };
        self.front.insert(cgroup_id, slot);
        Resolved {
            cgroup,
            meta,
            pod,
            chain: Default::default(),
            partial,
            pending,
            missing,
            peer: None,
            peer_service: None,
            pod_ip: None,
        }
    }

    /// `resolve` plus the process and up to `depth` ancestors from `table`.
    pub fn resolve_with_lineage(
        &mut self,
        ev: &tracelake_model::Event<'_>,
        table: &ProcessTable,
        depth: usize,
    ) -> Resolved {
        let mut r = self.resolve(ev.subject.cgroup_id, ev.subject.ktime_ns);
        let len = (depth + 1).min(r.chain.len());
        table.lineage_into(ev.subject.tgid, ev.subject.proc_start_ns, &mut r.chain[..len]);
        r.peer = self.peer(ev);
        if r.peer.is_none()
            && let (Some(k), Some(ip)) = (&self.kube, remote_ip(ev))
        {
            r.peer_service = k.lookup_service(ip);
        }
        if let Some(ips) = &self.ips
            && let Some(cg) = r.cgroup.as_ref().filter(|c| c.container.is_some())
            && let Some(o) = ips.observer.as_ref()
        {
            r.pod_ip = o.pod_ip(ev.subject.cgroup_id);
            // Not known yet (a pod too short-lived for a scan): its own connect says which IP it has.
            if r.pod_ip.is_none()
                && let Some(ip) = local_ip(ev)
            {
                let at = i64::try_from(ips.clock.wall_ns(ev.subject.ktime_ns)).unwrap_or(i64::MAX);
                o.used(ev.subject.cgroup_id, cg, ip, at);
            }
        }
        r
    }

    /// Resolves again the identity of an event held while its runtime answer
    /// was pending: cgroup, container, pod and pod IP are replaced, the
    /// lineage and peer found when it arrived are kept.
    pub fn refresh(&mut self, ev: &Event<'_>, held: &mut Resolved) {
        let fresh = self.resolve(ev.subject.cgroup_id, ev.subject.ktime_ns);
        held.cgroup = fresh.cgroup;
        held.meta = fresh.meta;
        held.pod = fresh.pod;
        held.partial = fresh.partial;
        held.pending = fresh.pending;
        held.missing = fresh.missing;
        if let Some(ips) = &self.ips
            && held.pod_ip.is_none()
            && held.cgroup.as_ref().is_some_and(|c| c.container.is_some())
        {
            held.pod_ip = ips.observer.as_ref().and_then(|o| o.pod_ip(ev.subject.cgroup_id));
        }
    }

    /// The identity behind a cgroup id, or None when the cgroup is unknown
    /// (gone before it was ever seen): the event then goes on partially enriched.
    pub fn cgroup(&self, cgroup_id: u64) -> Option<Arc<CgroupIdentity>> {
        self.cgroup_or_reason(cgroup_id).ok()
    }

    /// The identity behind a cgroup id, or why it is unknown.
    pub fn cgroup_or_reason(&self, cgroup_id: u64) -> Result<Arc<CgroupIdentity>, Reason> {
        self.counters.miss();
        if let Some(hit) = self.by_cgroup.get(&cgroup_id) {
            return Ok(hit);
        }
        let path = self.index.path_or_reason(cgroup_id)?;
        let container = parse_cgroup_path(&path);
        let ident = Arc::new(CgroupIdentity { path, container });
        self.by_cgroup.insert(cgroup_id, Arc::clone(&ident));
        if let Some(o) = self.ips.as_ref().and_then(|i| i.observer.as_ref()) {
            o.seen(cgroup_id, &ident);
        }
        Ok(ident)
    }

    /// Borrowed JSON identity fields for one event.
    pub fn identity(ident: Option<&CgroupIdentity>) -> Identity<'_> {
        let Some(i) = ident else { return Identity::default() };
        let c = i.container.as_ref();
        Identity {
            cgroup: Some(&i.path),
            container_id: c.map(|c| c.container_id.as_str()),
            container_runtime: c.map(|c| runtime_name(c.runtime)),
            pod_uid: c.and_then(|c| c.pod_uid.as_deref()),
            containerd_namespace: c.and_then(|c| c.namespace.as_deref()),
            ..Identity::default()
        }
    }
}

#[cfg(test)]
mod tests;
