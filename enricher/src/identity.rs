//! Per-event identity: cgroup id -> path -> container reference, cached per
//! cgroup id so the per-event cost is one cache probe.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tracelake_model::json::{Ancestor, Identity, MAX_ANCESTORS};

use crate::cgroup::{ContainerRef, Runtime, parse_cgroup_path};
use crate::cgroup_index::{CgroupIndex, IndexError};
use crate::containerd::{ContainerMeta, ContainerdMeta};
use crate::kube::{KubeMeta, PodInfo};
use crate::process::{ProcessInfo, ProcessTable};

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
}

impl Resolved {
    /// Borrowed JSON identity fields.
    pub fn identity(&self) -> Identity<'_> {
        let mut id = Enricher::identity(self.cgroup.as_deref());
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
        id
    }
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
        Ok(Enricher {
            index: CgroupIndex::open(cgroup_root, capacity, ttl)?,
            by_cgroup: Cache::builder().max_capacity(capacity).time_to_idle(ttl).build(),
            containerd: None,
            kube: None,
        })
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

    /// cgroup identity plus whatever containerd and the API server have told so far.
    pub fn resolve(&self, cgroup_id: u64) -> Resolved {
        let cgroup = self.cgroup(cgroup_id);
        let container = cgroup.as_ref().and_then(|c| c.container.as_ref());
        let (meta, mut partial) = match (&self.containerd, container) {
            (Some(src), Some(c)) => {
                // CRI containers live in kubelet's namespace; others say theirs in the path.
                let ns = c.namespace.as_deref().unwrap_or("k8s.io");
                let meta = src.get(ns, &c.container_id);
                let partial = meta.is_none();
                (meta, partial)
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
            partial |= pod.is_none();
            pod
        });
        Resolved { cgroup, meta, pod, chain: Default::default(), partial }
    }

    /// `resolve` plus the process and up to `depth` ancestors from `table`.
    pub fn resolve_with_lineage(
        &self,
        ev: &tracelake_model::Event<'_>,
        table: &ProcessTable,
        depth: usize,
    ) -> Resolved {
        let mut r = self.resolve(ev.subject.cgroup_id);
        let len = (depth + 1).min(r.chain.len());
        table.lineage_into(ev.subject.tgid, ev.subject.proc_start_ns, &mut r.chain[..len]);
        r
    }

    /// The identity behind a cgroup id, or None when the cgroup is unknown
    /// (gone before it was ever seen): the event then goes on partially enriched.
    pub fn cgroup(&self, cgroup_id: u64) -> Option<Arc<CgroupIdentity>> {
        if let Some(hit) = self.by_cgroup.get(&cgroup_id) {
            return Some(hit);
        }
        let path = self.index.path(cgroup_id)?;
        let container = parse_cgroup_path(&path);
        let ident = Arc::new(CgroupIdentity { path, container });
        self.by_cgroup.insert(cgroup_id, Arc::clone(&ident));
        Some(ident)
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
