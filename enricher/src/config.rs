//! `[enricher]` of tracelake.toml.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::containerd::RuntimeApi;
use crate::iphistory::IpHistoryConfig;
use crate::kube::KubernetesConfig;

/// How identities are resolved and kept.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnricherConfig {
    /// The cgroup2 mount; default: /sys/fs/cgroup/unified on hybrid hosts, else /sys/fs/cgroup.
    #[serde(default)]
    pub cgroup_root: Option<PathBuf>,
    /// Entries per identity cache (cgroups and containers).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: u64,
    /// How long identities of gone cgroups, containers and processes are kept.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub tombstone_ttl: Duration,
    /// Ancestors written into each event (0 to 8).
    #[serde(default = "default_lineage_depth")]
    pub lineage_depth: usize,
    /// Live processes tracked (exits missed on ring overflow cannot grow it further).
    #[serde(default = "default_max_processes")]
    pub max_processes: usize,
    /// The container runtime's API socket (containerd); container and pod metadata come from it. A socket
    /// that is missing at start is waited for (retried every second), as is one that goes away.
    #[serde(default = "default_containerd_socket")]
    pub containerd_socket: PathBuf,
    /// Which runtime API metadata comes from: "auto" (containerd's own API where the socket serves it, with its
    /// event stream; else the Kubernetes CRI API), "containerd", or "cri" (CRI-O, k3s, containerd's CRI plugin).
    #[serde(default)]
    pub runtime_api: RuntimeApi,
    /// When `containerd_socket` does not exist, use the first runtime socket found among the usual paths
    /// (containerd, CRI-O, k3s, cri-dockerd).
    #[serde(default = "default_true")]
    pub runtime_socket_search: bool,
    /// How long a new container's events wait for its runtime metadata (pod, namespace, workload) before
    /// they are written without it (counted as `hold_expired`); 0 writes them at once.
    #[serde(default = "default_hold_new_containers", with = "humantime_serde")]
    pub hold_new_containers: Duration,
    /// Events held at most while new containers' metadata is looked up; beyond it events go on at once
    /// (counted as `hold_full`).
    #[serde(default = "default_hold_max_events")]
    pub hold_max_events: usize,
    /// Longest wait for one runtime lookup (events never wait for it).
    #[serde(default = "default_runtime_timeout", with = "humantime_serde")]
    pub runtime_timeout: Duration,
    /// Where state that must survive restarts lives (the IP history under `ip-history/`).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Pod IP history.
    #[serde(default)]
    pub ip_history: IpHistoryConfig,
    /// Pods, workloads and services from the Kubernetes API server.
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/tracelake")
}

fn default_lineage_depth() -> usize {
    4
}
fn default_max_processes() -> usize {
    1_000_000
}
fn default_containerd_socket() -> PathBuf {
    PathBuf::from("/run/containerd/containerd.sock")
}
fn default_true() -> bool {
    true
}
fn default_hold_new_containers() -> Duration {
    Duration::from_millis(500)
}
fn default_hold_max_events() -> usize {
    50_000
}
fn default_runtime_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_cache_entries() -> u64 {
    100_000
}
fn default_ttl() -> Duration {
    Duration::from_secs(600)
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            cgroup_root: None,
            cache_entries: default_cache_entries(),
            tombstone_ttl: default_ttl(),
            lineage_depth: default_lineage_depth(),
            max_processes: default_max_processes(),
            containerd_socket: default_containerd_socket(),
            runtime_api: RuntimeApi::default(),
            runtime_socket_search: default_true(),
            hold_new_containers: default_hold_new_containers(),
            hold_max_events: default_hold_max_events(),
            runtime_timeout: default_runtime_timeout(),
            state_dir: default_state_dir(),
            ip_history: IpHistoryConfig::default(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

impl EnricherConfig {
    /// The configured cgroup2 mount, or the one this host uses.
    pub fn cgroup_root(&self) -> PathBuf {
        if let Some(p) = &self.cgroup_root {
            return p.clone();
        }
        let unified = std::path::Path::new("/sys/fs/cgroup/unified");
        if unified.join("cgroup.procs").exists() { unified.to_path_buf() } else { PathBuf::from("/sys/fs/cgroup") }
    }

    /// Where the IP history is persisted.
    pub fn ip_history_dir(&self) -> PathBuf {
        self.state_dir.join("ip-history")
    }
}
