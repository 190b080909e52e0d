//! Sensor configuration: the `[sensor]` table of tracelake.toml.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the kernel side watches and how it filters and aggregates.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Event classes to enable: any of "process", "file", "network", "privilege".
    #[serde(default = "default_classes")]
    pub classes: BTreeSet<ClassName>,
    /// Which processes are traced: "all", "containers" (mount namespace differs
    /// from the host's), or "cgroups" (only the ids in `cgroup_ids`).
    #[serde(default)]
    pub scope: Scope,
    /// cgroup v2 ids traced when `scope = "cgroups"`.
    #[serde(default)]
    pub cgroup_ids: Vec<u64>,
    /// Bytes of argv captured per exec (at most 4095); longer argv is cut and flagged.
    #[serde(default = "default_argv_max")]
    pub argv_max: u32,
    /// Size of the kernel-to-user ring buffer in bytes: a power of two, at least 4096.
    #[serde(default = "default_ring_buffer_bytes")]
    pub ring_buffer_bytes: u32,
    /// In-kernel aggregation of repeated events.
    #[serde(default)]
    pub aggregation: AggregationConfig,
    /// Path prefix filters for file events, enforced in the kernel.
    #[serde(default)]
    pub file: FileConfig,
    /// How often a status line (events, drops, aggregation) is logged; 0s turns it off.
    #[serde(default = "default_status_interval", with = "humantime_serde")]
    pub status_interval: Duration,
    /// Walk /proc at start and report running processes as `process_snapshot` events.
    #[serde(default = "default_true")]
    pub proc_snapshot: bool,
    /// On kernels without module syscall tracepoints, catch init_module and
    /// finit_module attempts on the sys_exit raw tracepoint (a BTF program
    /// that runs on every syscall and returns after one compare).
    #[serde(default = "default_true")]
    pub module_load_fallback: bool,
}

/// An event class name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassName {
    Process,
    File,
    Network,
    Privilege,
}

/// Which processes the kernel programs look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    All,
    Containers,
    Cgroups,
}

/// In-kernel aggregation: the first occurrence of a (cgroup, process, kind,
/// object) is emitted at once; repeats are counted and reported as one
/// summary record per interval.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationConfig {
    /// Turn aggregation off to receive every event (high volume).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often repeats are flushed as summary records.
    #[serde(default = "default_agg_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Entries per aggregation table (two tables alternate). When full, events
    /// are emitted one by one and counted as `agg_full`.
    #[serde(default = "default_agg_entries")]
    pub table_entries: u32,
}

/// Path prefixes decide which file events are reported. The longest matching
/// prefix wins; prefixes are byte prefixes, so end directories with "/".
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// What happens to paths no prefix matches: "ignore", "writes" (report
    /// write/create/truncate opens and mutations) or "reads" (all opens).
    #[serde(default = "default_file_default")]
    pub default: FileAction,
    /// Prefixes whose write opens and mutations are reported.
    #[serde(default = "default_watch_writes")]
    pub watch_writes: Vec<String>,
    /// Prefixes whose opens are reported even when read-only (secrets, keys).
    #[serde(default = "default_watch_reads")]
    pub watch_reads: Vec<String>,
    /// Prefixes never reported (pseudo filesystems, noisy caches).
    #[serde(default = "default_ignore")]
    pub ignore: Vec<String>,
}

/// Action of a path prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAction {
    Ignore,
    Writes,
    Reads,
}

fn default_classes() -> BTreeSet<ClassName> {
    [ClassName::Process, ClassName::File, ClassName::Network, ClassName::Privilege].into()
}
fn default_argv_max() -> u32 {
    1024
}
fn default_ring_buffer_bytes() -> u32 {
    16 << 20
}
fn default_status_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}
fn default_agg_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_agg_entries() -> u32 {
    65536
}
fn default_file_default() -> FileAction {
    FileAction::Writes
}
fn default_watch_writes() -> Vec<String> {
    Vec::new()
}
fn default_watch_reads() -> Vec<String> {
    [
        "/var/run/secrets/",
        "/run/secrets/",
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/root/.ssh/",
        "/etc/kubernetes/",
        "/var/lib/kubelet/pki/",
        "/proc/sys/kernel/core_pattern",
    ]
    .map(String::from)
    .to_vec()
}
fn default_ignore() -> Vec<String> {
    ["/proc/", "/sys/", "/dev/"].map(String::from).to_vec()
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            classes: default_classes(),
            scope: Scope::All,
            cgroup_ids: Vec::new(),
            argv_max: default_argv_max(),
            ring_buffer_bytes: default_ring_buffer_bytes(),
            aggregation: AggregationConfig::default(),
            file: FileConfig::default(),
            status_interval: default_status_interval(),
            proc_snapshot: true,
            module_load_fallback: true,
        }
    }
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig { enabled: true, interval: default_agg_interval(), table_entries: default_agg_entries() }
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            default: default_file_default(),
            watch_writes: default_watch_writes(),
            watch_reads: default_watch_reads(),
            ignore: default_ignore(),
        }
    }
}

/// A setting that cannot work, named by its path in the config file.
#[derive(Debug, thiserror::Error)]
#[error("sensor.{field}: {reason}")]
pub struct InvalidConfig {
    pub field: &'static str,
    pub reason: String,
}

impl SensorConfig {
    /// Checks what serde cannot: ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |field, reason: String| Err(InvalidConfig { field, reason });
        if self.argv_max == 0 || self.argv_max as usize > tracelake_bpf::abi::ARGV_MAX - 1 {
            return bad("argv_max", format!("{} is outside 1..=4095", self.argv_max));
        }
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 4096 {
            return bad("ring_buffer_bytes", format!("{} is not a power of two >= 4096", self.ring_buffer_bytes));
        }
        if self.aggregation.interval < Duration::from_millis(100) {
            return bad("aggregation.interval", "must be at least 100ms".into());
        }
        if self.aggregation.table_entries < 64 {
            return bad("aggregation.table_entries", "must be at least 64".into());
        }
        if self.scope == Scope::Cgroups && self.cgroup_ids.is_empty() {
            return bad("cgroup_ids", "scope = \"cgroups\" needs at least one cgroup id".into());
        }
        for (field, list) in [
            ("file.watch_writes", &self.file.watch_writes),
            ("file.watch_reads", &self.file.watch_reads),
            ("file.ignore", &self.file.ignore),
        ] {
            for p in list {
                if !p.starts_with('/') {
                    return bad(field, format!("{p:?} is not an absolute path prefix"));
                }
                if p.len() > tracelake_bpf::abi::PREFIX_MAX {
                    return bad(field, format!("{p:?} is longer than {} bytes", tracelake_bpf::abi::PREFIX_MAX));
                }
            }
        }
        Ok(())
    }
}
