//! `[enricher.kubernetes]` of tracelake.toml.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether to watch the Kubernetes API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeMode {
    /// On when an in-cluster service account, $KUBECONFIG or ~/.kube/config exists, else off (logged).
    #[default]
    Auto,
    /// Required: starting fails when no client configuration can be built.
    On,
    /// Never ask the API server; workloads are inferred from names and labels only.
    Off,
}

/// How pods, their workloads and services are learnt from the API server.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// auto, on or off.
    #[serde(default)]
    pub mode: KubeMode,
    /// This node's name: only its pods are watched. Default: $NODE_NAME, else the hostname.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Namespaces to watch; empty means every namespace (needs the ClusterRole of deploy/rbac.yaml).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Longest wait for a TCP connection to the API server (each retry backs off up to 30 s).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Server-side timeout of one watch request; the watch is then resumed from its resource version.
    #[serde(default = "default_watch_timeout", with = "humantime_serde")]
    pub watch_timeout: Duration,
    /// Pod changes buffered for each subscriber (`KubeMeta::subscribe`) before it lags.
    #[serde(default = "default_change_buffer")]
    pub change_buffer: usize,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_watch_timeout() -> Duration {
    Duration::from_secs(290)
}
fn default_change_buffer() -> usize {
    4096
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            mode: KubeMode::default(),
            node_name: None,
            namespaces: Vec::new(),
            connect_timeout: default_connect_timeout(),
            watch_timeout: default_watch_timeout(),
            change_buffer: default_change_buffer(),
        }
    }
}

impl KubernetesConfig {
    /// The configured node name, else $NODE_NAME, else the hostname.
    pub fn node_name(&self) -> String {
        if let Some(n) = self.node_name.as_ref().filter(|n| !n.is_empty()) {
            return n.clone();
        }
        if let Ok(n) = std::env::var("NODE_NAME")
            && !n.is_empty()
        {
            return n;
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
    }
}
