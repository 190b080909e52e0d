//! Per-event identity: cgroup id -> path -> container reference, cached per
//! cgroup id so the per-event cost is one cache probe.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tracelake_model::json::Identity;

use crate::cgroup::{ContainerRef, Runtime, parse_cgroup_path};
use crate::cgroup_index::{CgroupIndex, IndexError};

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
        })
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
        }
    }
}
