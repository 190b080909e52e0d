//! Kubernetes: pod -> workload (Deployment through its ReplicaSet, CronJob
//! through its Job, StatefulSet, DaemonSet, bare pod) -> namespace, pod
//! labels and IPs, and Service cluster IPs, from watches of the API server;
//! inferred from pod names and labels when the API server cannot tell.

mod config;
mod source;
mod store;
#[cfg(test)]
mod tests;
mod workload;

pub use config::{KubeMode, KubernetesConfig};
pub use source::{KubeError, KubeMeta, KubeStats, client, watched_resources};
pub use store::{Owner, PodChange, PodInfo, ServiceInfo};
pub use workload::{Labels, Workload, WorkloadKind, WorkloadSource, cronjob_of_job, deployment_of_replicaset, infer};
