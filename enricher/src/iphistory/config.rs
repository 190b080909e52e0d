//! `[enricher.ip_history]` of tracelake.toml.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the pod IP history is kept.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IpHistoryConfig {
    /// Keep the table (and peer identity on network events) at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Intervals that ended longer ago than this are forgotten.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// The journal is rewritten into a snapshot once it is this large.
    #[serde(default = "default_compact_after_bytes")]
    pub compact_after_bytes: u64,
    /// Learn the IPs of this node's containers from their network namespaces.
    #[serde(default = "default_enabled")]
    pub observe_node: bool,
    /// How often this node's containers are checked (new IPs, gone containers),
    /// the journal synced and old intervals pruned.
    #[serde(default = "default_scan_interval", with = "humantime_serde")]
    pub scan_interval: Duration,
}

fn default_enabled() -> bool {
    true
}
fn default_retention() -> Duration {
    Duration::from_secs(14 * 24 * 3600)
}
fn default_compact_after_bytes() -> u64 {
    8 << 20
}
fn default_scan_interval() -> Duration {
    Duration::from_secs(1)
}

impl Default for IpHistoryConfig {
    fn default() -> Self {
        IpHistoryConfig {
            enabled: default_enabled(),
            retention: default_retention(),
            compact_after_bytes: default_compact_after_bytes(),
            observe_node: default_enabled(),
            scan_interval: default_scan_interval(),
        }
    }
}
