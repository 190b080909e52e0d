//! Workload identity for events: cgroup, container, pod, workload.
//!
//! What exists so far: a cgroup v2 id (what every kernel record carries)
//! turned into the cgroup path and the container reference the path encodes,
//! for every runtime layout in use; and the process table with lineage and
//! tombstones; container and pod metadata from containerd; the workload
//! owning each pod from the Kubernetes API (inferred from names without
//! one); and the pod IP history (who held an IP when), which names the
//! peer of network events.

pub mod cgroup;
pub mod cgroup_index;
pub mod config;
pub mod containerd;
pub mod cri;
mod front;
pub mod identity;
pub mod iphistory;
pub mod kube;
pub mod metrics;
pub mod process;
pub mod unresolved;

pub use cgroup::{ContainerRef, Runtime, parse_cgroup_path};
pub use cgroup_index::{CgroupIndex, CgroupPaths};
pub use config::EnricherConfig;
pub use containerd::{ContainerMeta, ContainerdMeta, MetaState, RuntimeApi, RuntimeOptions};
pub use identity::{CgroupIdentity, Enricher, Resolved};
pub use iphistory::{IpHistory, IpHistoryConfig, NodeObserver};
pub use kube::{KubeMeta, KubernetesConfig, PodChange, PodInfo};
pub use metrics::{CacheCounters, CacheStats};
pub use process::{ProcessInfo, ProcessTable};
pub use unresolved::{Reason, Unresolved};
