//! Pod IP history: who held an IP address at a given time.
//!
//! Pod IPs move from workload to workload, so "who is 10.42.1.7" only has an
//! answer together with a time. For every IP the table keeps non-overlapping
//! intervals `[valid_from, valid_to)` (open while held) with the owner (pod,
//! workload, container, or a Service for a ClusterIP) and where that
//! knowledge came from. Network events look their peer up at the event's own
//! time (`IpHistory::who_had`, lock-free); writers are the node observer
//! (`node.rs`, IPs read from containers' network namespaces) and, later,
//! Kubernetes watches. The table survives restarts (`persist.rs`: a
//! checksummed journal plus snapshots) and forgets intervals that ended more
//! than a retention ago.

mod config;
pub mod kube_feed;
mod node;
mod persist;
mod store;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use config::IpHistoryConfig;
pub use node::{NodeObserver, ObserverOptions, local_addresses};
pub use persist::PersistError;
pub use store::{Change, Changes, IpHistory, now_ns};

/// Nanoseconds since the Unix epoch (UTC).
pub type UnixNanos = i64;

/// Where the knowledge of an ownership came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The Kubernetes API (pod and service watches).
    Kube,
    /// Observed on this node (a container's network namespace).
    #[default]
    Node,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Kube => "kube",
            Source::Node => "node",
        }
    }
}

/// Who held an IP. Every field is optional: each source fills what it knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// Node the pod ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Kubernetes namespace of the pod or service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Deployment, StatefulSet, DaemonSet, Job, CronJob, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The container whose network namespace held the IP (the pod sandbox, or the container itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Service name, for a ClusterIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub source: Source,
}

impl Owner {
    /// A ClusterIP's owner.
    pub fn service(namespace: &str, name: &str) -> Owner {
        Owner {
            namespace: Some(namespace.to_string()),
            service: Some(name.to_string()),
            source: Source::Kube,
            ..Owner::default()
        }
    }

    /// Whether two reports name the same holder: the same pod (by uid), else
    /// the same container, else the same service. Reports of one holder from
    /// different sources merge instead of splitting its interval.
    pub fn same_holder(&self, other: &Owner) -> bool {
        if self.service.is_some() || other.service.is_some() {
            return self.service == other.service && self.namespace == other.namespace;
        }
        if let (Some(a), Some(b)) = (&self.pod_uid, &other.pod_uid) {
            return a == b;
        }
        match (&self.container_id, &other.container_id) {
            (Some(a), Some(b)) => a == b,
            (Some(_), None) | (None, Some(_)) | (None, None) => {
                self.pod.is_some() && self.pod == other.pod && self.namespace == other.namespace
            }
        }
    }

    /// `newer`'s fields where it has them, ours elsewhere.
    fn merged(&self, newer: &Owner) -> Owner {
        let pick = |n: &Option<String>, o: &Option<String>| n.clone().or_else(|| o.clone());
        Owner {
            node: pick(&newer.node, &self.node),
            namespace: pick(&newer.namespace, &self.namespace),
            pod: pick(&newer.pod, &self.pod),
            pod_uid: pick(&newer.pod_uid, &self.pod_uid),
            workload_kind: pick(&newer.workload_kind, &self.workload_kind),
            workload: pick(&newer.workload, &self.workload),
            container_id: pick(&newer.container_id, &self.container_id),
            service: pick(&newer.service, &self.service),
            // The API's word is the more complete one and is kept once given.
            source: if self.source == Source::Kube { Source::Kube } else { newer.source },
        }
    }
}

/// One ownership interval of an IP: `[valid_from, valid_to)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interval {
    pub valid_from: UnixNanos,
    /// None while the IP is still held.
    pub valid_to: Option<UnixNanos>,
    pub owner: Arc<Owner>,
}

impl Interval {
    pub fn contains(&self, at: UnixNanos) -> bool {
        self.valid_from <= at && self.valid_to.is_none_or(|t| at < t)
    }
}

/// An interval as stored on disk and as a row of the lake table `ip_ownership`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub ip: IpAddr,
    pub valid_from: UnixNanos,
    pub valid_to: Option<UnixNanos>,
    pub owner: Owner,
    /// Change sequence number: rows changed after `changes_since(n)` have seq >= n.
    pub seq: u64,
}
