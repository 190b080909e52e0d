use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[detections]`: rules evaluated live and over the lake (docs/detections.md).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionsConfig {
    /// Evaluate the rules live in `tracelake run` (findings go to the log and the lake's detection_finding).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Directories of your own rule files (`*.sql`), added to the built-in pack.
    #[serde(default)]
    pub rule_dirs: Vec<PathBuf>,
    /// Rule ids (built-in or yours) not to run.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Buffered events are handed to the rules at least this often: the bound on event-to-alert delay
    /// (plus the evaluation time).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// ... or as soon as this many events are buffered (bigger batches cost less per event).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Batches waiting for evaluation; beyond this new batches are dropped, counted and logged (the events
    /// still reach the lake, where `tracelake hunt` can run the rules over them) instead of stalling the sensor.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Rows a windowed rule (network scan, mass deletion, reverse shell) keeps of one table, after its own
    /// filter: the bound on its memory. Beyond it the oldest rows leave the window early, counted and logged.
    #[serde(default = "default_window_rows")]
    pub window_rows: usize,
    /// Behaviour profiles per workload container, and findings for what a stable one has never seen.
    #[serde(default)]
    pub profiles: crate::profile::ProfileConfig,
}

fn default_enabled() -> bool {
    true
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_batch_rows() -> usize {
    64 * 1024
}
fn default_queue_batches() -> usize {
    16
}
fn default_window_rows() -> usize {
    2_000_000
}

impl Default for DetectionsConfig {
    fn default() -> Self {
        DetectionsConfig {
            enabled: default_enabled(),
            rule_dirs: Vec::new(),
            disabled: Vec::new(),
            interval: default_interval(),
            batch_rows: default_batch_rows(),
            queue_batches: default_queue_batches(),
            window_rows: default_window_rows(),
            profiles: crate::profile::ProfileConfig::default(),
        }
    }
}
