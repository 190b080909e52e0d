//! Pod IPs the Kubernetes API reports, fed into the history (source `kube`).
//!
//! The node observer only sees this node's containers; the API watch also
//! knows pods' workloads and exact start and deletion times. Both feed the
//! same table: a report about the current holder merges into its interval.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast::error::RecvError;

use super::{IpHistory, Owner, Source, UnixNanos, now_ns};
use crate::kube::{KubeMeta, PodChange, PodInfo};

fn unix_ns(t: Option<SystemTime>) -> Option<UnixNanos> {
    let d = t?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// The history's owner record of a pod.
pub fn owner_of(pod: &PodInfo) -> Owner {
    Owner {
        node: pod.node.as_deref().map(str::to_string),
        namespace: Some(pod.namespace.to_string()),
        pod: Some(pod.name.to_string()),
        pod_uid: Some(pod.uid.to_string()),
        workload_kind: Some(pod.workload.kind.as_str().to_string()),
        workload: Some(pod.workload.name.to_string()),
        container_id: None,
        service: None,
        source: Source::Kube,
    }
}

/// Applies one change: a live pod holds its IPs from its start; a deleted one releases them.
pub fn apply(history: &IpHistory, change: &PodChange) {
    match change {
        PodChange::Applied(pod) if !pod.deleted => {
            // Host-network pods report the node's own addresses: they own nothing.
            if pod.host_network {
                return;
            }
            let at = unix_ns(pod.start_time).unwrap_or_else(now_ns);
            for ip in pod.ips.iter() {
                history.assign(*ip, at, owner_of(pod));
            }
        }
        PodChange::Applied(pod) | PodChange::Deleted(pod) => {
            if pod.host_network {
                return;
            }
            // deletionTimestamp is when deletion was asked for; the pod keeps
            // its IP through its grace period, until the object is gone.
            history.release_owner(&owner_of(pod), now_ns());
        }
    }
}

/// Feeds every pod the watch knows, then each change, until the watch ends.
/// Runs on the current tokio runtime.
pub fn spawn(kube: &Arc<KubeMeta>, history: Arc<IpHistory>) -> tokio::task::JoinHandle<()> {
    let mut rx = kube.subscribe();
    let kube = Arc::clone(kube);
    tokio::spawn(async move {
        let seed = |history: &IpHistory| {
            for pod in kube.pods() {
                apply(history, &PodChange::Applied(pod));
            }
        };
        seed(&history);
        loop {
            match rx.recv().await {
                Ok(change) => apply(&history, &change),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "pod changes came faster than the IP history took them: re-reading all pods"
                    );
                    seed(&history);
                }
                Err(RecvError::Closed) => break,
            }
        }
    })
}
