//! What the watches learnt, owned by the one task that applies watch events,
//! and the read-only indexes it publishes for the event hot path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::workload::{Labels, Workload, WorkloadKind, WorkloadSource, deployment_of_replicaset, infer};

/// One pod as the enricher keeps it, its workload resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: Arc<str>,
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    /// Pod labels, sorted by key.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    pub node: Option<Box<str>>,
    /// status.podIPs (IPv4 and/or IPv6); the node's own addresses when `host_network`.
    pub ips: Box<[IpAddr]>,
    /// The pod shares the node's network namespace: its IPs are the node's, not its own.
    pub host_network: bool,
    /// Pending, Running, Succeeded, Failed or Unknown.
    pub phase: Option<Box<str>>,
    pub start_time: Option<SystemTime>,
    /// metadata.deletionTimestamp, or when the deletion was seen.
    pub deletion_time: Option<SystemTime>,
    /// The watch reported the pod deleted: this is a tombstone, kept for events that arrive late.
    pub deleted: bool,
    pub workload: Workload,
    /// The controlling ownerReference (kind, name, uid), kept to re-resolve when the owner is learnt.
    pub controller: Option<Owner>,
}

/// An ownerReference with `controller: true`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: Box<str>,
    pub name: Box<str>,
    pub uid: Box<str>,
}

/// A ReplicaSet or Job: only the controller of it matters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerMeta {
    pub name: Box<str>,
    pub controller: Option<Owner>,
}

/// A Service with cluster IPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub uid: Arc<str>,
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    /// spec.clusterIPs (one per IP family); empty for headless services.
    pub cluster_ips: Box<[IpAddr]>,
}

/// A pod appeared or changed, or was deleted (carrying its last known state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodChange {
    Applied(Arc<PodInfo>),
    Deleted(Arc<PodInfo>),
}

/// What the hot path reads: immutable once published.
#[derive(Debug, Default)]
pub(crate) struct PodIndex {
    pub by_uid: HashMap<Arc<str>, Arc<PodInfo>>,
    /// namespace -> name -> pod (the live one when a name was reused).
    pub by_name: HashMap<Arc<str>, HashMap<Arc<str>, Arc<PodInfo>>>,
}

#[derive(Debug, Default)]
pub(crate) struct ServiceIndex {
    pub by_ip: HashMap<IpAddr, Arc<ServiceInfo>>,
}

pub(crate) fn time(t: &Option<Time>) -> Option<SystemTime> {
    let ns = t.as_ref()?.0.as_nanosecond();
    let ns = u64::try_from(ns).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
}

pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<Owner> {
    let refs: &[OwnerReference] = meta.owner_references.as_deref().unwrap_or_default();
    refs.iter().find(|r| r.controller == Some(true)).map(|r| Owner {
        kind: r.kind.as_str().into(),
        name: r.name.as_str().into(),
        uid: r.uid.as_str().into(),
    })
}

fn ips<'a>(raw: impl Iterator<Item = &'a str>) -> Box<[IpAddr]> {
    raw.filter_map(|s| s.parse().ok()).collect()
}

/// Everything the watches learnt. Owned by the watch task; lookups never touch it.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub pods: HashMap<Arc<str>, (Arc<PodInfo>, Option<Instant>)>,
    pub replicasets: HashMap<Box<str>, OwnerMeta>,
    pub jobs: HashMap<Box<str>, OwnerMeta>,
    pub services: HashMap<Arc<str>, Arc<ServiceInfo>>,
}

impl State {
    /// The workload of a pod from its controller, through the ReplicaSet or
    /// Job when those are known; inferred from names while they are not.
    pub fn resolve(&self, pod: &str, labels: &[(Box<str>, Box<str>)], controller: Option<&Owner>) -> Workload {
        let Some(c) = controller else {
            return Workload::new(WorkloadKind::Pod, pod, WorkloadSource::Api);
        };
        let api = |kind: &str, name: &str| Workload::new(WorkloadKind::from_kind(kind), name, WorkloadSource::Api);
        let parent = match &*c.kind {
            "ReplicaSet" => self.replicasets.get(&c.uid),
            "Job" => self.jobs.get(&c.uid),
            kind => return api(kind, &c.name),
        };
        match parent {
            Some(OwnerMeta { controller: Some(p), .. }) => api(&p.kind, &p.name),
            Some(OwnerMeta { controller: None, name }) => api(&c.kind, name),
            // The owner is not listed yet (or outside the watched namespaces).
            None if &*c.kind == "ReplicaSet" => {
                match deployment_of_replicaset(&c.name, labels.label("pod-template-hash")) {
                    Some(d) => Workload::new(WorkloadKind::Deployment, d, WorkloadSource::Inferred),
                    None => Workload::new(WorkloadKind::ReplicaSet, &c.name, WorkloadSource::Inferred),
                }
            }
            None => infer(pod, &[("job-name", &*c.name)][..])
                .unwrap_or_else(|| Workload::new(WorkloadKind::Job, &c.name, WorkloadSource::Inferred)),
        }
    }

    pub fn pod_info(&self, pod: &Pod) -> Option<PodInfo> {
        let m = &pod.metadata;
        let (uid, name) = (m.uid.as_deref()?, m.name.as_deref()?);
        let mut labels: Vec<(Box<str>, Box<str>)> =
            m.labels.iter().flatten().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect();
        labels.sort();
        let labels = labels.into_boxed_slice();
        let controller = controller_of(m);
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let pod_ips = status.and_then(|s| s.pod_ips.as_deref()).unwrap_or_default();
        let ips = if pod_ips.is_empty() {
            ips(status.and_then(|s| s.pod_ip.as_deref()).into_iter())
        } else {
            ips(pod_ips.iter().map(|p| p.ip.as_str()))
        };
        Some(PodInfo {
            uid: uid.into(),
            name: name.into(),
            namespace: m.namespace.as_deref().unwrap_or("default").into(),
            workload: self.resolve(name, &labels, controller.as_ref()),
            labels,
            node: spec.and_then(|s| s.node_name.as_deref()).map(Into::into),
            ips,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            phase: status.and_then(|s| s.phase.as_deref()).map(Into::into),
            start_time: status.and_then(|s| time(&s.start_time)),
            deletion_time: time(&m.deletion_timestamp),
            deleted: false,
            controller,
        })
    }

    /// Stores a pod; returns it when it changed.
    pub fn apply_pod(&mut self, pod: &Pod) -> Option<Arc<PodInfo>> {
        let info = self.pod_info(pod)?;
        if let Some((old, None)) = self.pods.get(&info.uid)
            && **old == info
        {
            return None;
        }
        let info = Arc::new(info);
        self.pods.insert(Arc::clone(&info.uid), (Arc::clone(&info), None));
        Some(info)
    }

    /// Turns a pod into a tombstone that expires `ttl` from now; returns it.
    pub fn delete_pod(&mut self, uid: &str, ttl: Duration) -> Option<Arc<PodInfo>> {
        let (old, expiry) = self.pods.get_mut(uid)?;
        if expiry.is_some() {
            return None;
        }
        let mut dead = PodInfo::clone(old);
        dead.deleted = true;
        dead.deletion_time = dead.deletion_time.or_else(|| Some(SystemTime::now()));
        *old = Arc::new(dead);
        *expiry = Some(Instant::now() + ttl);
        Some(Arc::clone(old))
    }

    /// Re-resolves the pods a ReplicaSet or Job controls; returns those that changed.
    pub fn reresolve(&mut self, owner_uid: &str) -> Vec<Arc<PodInfo>> {
        let mut changed = Vec::new();
        let uids: Vec<Arc<str>> = self
            .pods
            .values()
            .filter(|(p, _)| p.controller.as_ref().is_some_and(|c| &*c.uid == owner_uid))
            .map(|(p, _)| Arc::clone(&p.uid))
            .collect();
        for uid in uids {
            let Some((p, _)) = self.pods.get(&uid) else { continue };
            let w = self.resolve(&p.name, &p.labels, p.controller.as_ref());
            if w != p.workload {
                let mut np = PodInfo::clone(p);
                np.workload = w;
                let np = Arc::new(np);
                if let Some(slot) = self.pods.get_mut(&uid) {
                    slot.0 = Arc::clone(&np);
                }
                changed.push(np);
            }
        }
        changed
    }

    /// Drops tombstones whose time is up; true when any went.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.pods.len();
        self.pods.retain(|_, (_, expiry)| expiry.is_none_or(|t| t > now));
        before != self.pods.len()
    }

    pub fn apply_service(&mut self, svc: &Service) -> bool {
        let m = &svc.metadata;
        let (Some(uid), Some(name)) = (m.uid.as_deref(), m.name.as_deref()) else { return false };
        let spec = svc.spec.as_ref();
        let listed = spec.and_then(|s| s.cluster_ips.as_deref()).unwrap_or_default();
        let cluster_ips = if listed.is_empty() {
            ips(spec.and_then(|s| s.cluster_ip.as_deref()).into_iter())
        } else {
            ips(listed.iter().map(String::as_str))
        };
        let info = ServiceInfo {
            uid: uid.into(),
            name: name.into(),
            namespace: m.namespace.as_deref().unwrap_or("default").into(),
            cluster_ips,
        };
        if self.services.get(uid).is_some_and(|s| **s == info) {
            return false;
        }
        self.services.insert(Arc::clone(&info.uid), Arc::new(info));
        true
    }

    pub fn pod_index(&self) -> PodIndex {
        let mut idx = PodIndex { by_uid: HashMap::with_capacity(self.pods.len()), by_name: HashMap::new() };
        for (uid, (p, _)) in &self.pods {
            idx.by_uid.insert(Arc::clone(uid), Arc::clone(p));
            let names = idx.by_name.entry(Arc::clone(&p.namespace)).or_default();
            match names.get(&p.name) {
                Some(have) if !have.deleted && p.deleted => {}
                Some(have) if have.deleted == p.deleted && have.start_time > p.start_time => {}
                _ => {
                    names.insert(Arc::clone(&p.name), Arc::clone(p));
                }
            }
        }
        idx
    }

    pub fn service_index(&self) -> ServiceIndex {
        let mut by_ip = HashMap::new();
        for s in self.services.values() {
            for ip in &s.cluster_ips {
                by_ip.insert(*ip, Arc::clone(s));
            }
        }
        ServiceIndex { by_ip }
    }
}
