use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[sinks.lake]`: the Parquet data lake (docs/schema.md).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Root directory: one folder per table, Hive partitions `date=YYYY-MM-DD/hour=HH` below.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Rows of one table buffered in memory (estimated bytes in the Arrow builders) before they are
    /// written as one file: the memory bound per table and the size rotation of files (each file is one
    /// sorted flush; zstd files come out several times smaller).
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: usize,
    /// Age rotation: a table's buffered rows are written once the oldest was buffered this long ago.
    #[serde(default = "default_rotate_age", with = "humantime_serde")]
    pub rotate_age: Duration,
    /// How often buffers are checked for age and failed writes retried.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Rows per Parquet row group.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// zstd level of every column (1 fast .. 22 small).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Hour partitions older than this are deleted; 0s keeps everything.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// A finished hour partition with at least this many small files is compacted into one.
    #[serde(default = "default_compact_min_files")]
    pub compact_min_files: usize,
    /// Files below this size count as small for compaction.
    #[serde(default = "default_compact_small_bytes")]
    pub compact_small_bytes: u64,
    /// Most bytes of files read into one compaction (it holds their rows in memory to sort them).
    #[serde(default = "default_compact_max_bytes")]
    pub compact_max_bytes: u64,
    /// How often retention and compaction run (also once at start).
    #[serde(default = "default_maintenance_interval", with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Rows whose write failed (disk full, I/O error) are kept for retry up to this many estimated bytes;
    /// beyond it the oldest are dropped and counted as lost, with an error logged.
    #[serde(default = "default_retry_max_bytes")]
    pub retry_max_bytes: usize,
}

fn default_dir() -> PathBuf {
    PathBuf::from("/var/lib/tracelake/lake")
}
fn default_rotate_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_rotate_age() -> Duration {
    Duration::from_secs(60)
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_row_group_rows() -> usize {
    128 * 1024
}
fn default_zstd_level() -> i32 {
    3
}
fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_compact_min_files() -> usize {
    4
}
fn default_compact_small_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_compact_max_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_maintenance_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_retry_max_bytes() -> usize {
    128 * 1024 * 1024
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            dir: default_dir(),
            rotate_bytes: default_rotate_bytes(),
            rotate_age: default_rotate_age(),
            flush_interval: default_flush_interval(),
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
            retention: default_retention(),
            compact_min_files: default_compact_min_files(),
            compact_small_bytes: default_compact_small_bytes(),
            compact_max_bytes: default_compact_max_bytes(),
            maintenance_interval: default_maintenance_interval(),
            retry_max_bytes: default_retry_max_bytes(),
        }
    }
}
