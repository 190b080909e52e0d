//! Settings every SIEM forwarder shares: which rows go, how they are delivered, where they wait, TLS and
//! secrets (docs/siem.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ForwardError;
use crate::parquet::Table;

/// `[siem.<target>.tables.<table>]`: one lake table forwarded, optionally only the rows a SQL `WHERE` keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableRoute {
    /// A SQL boolean expression over the table's columns (docs/schema.md), e.g.
    /// `kind = 'exec' AND container`; checked at start like the rules. Unset: every row.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// Elasticsearch: the index (or data stream) for this table, overriding `index`; `{table}` and
    /// `{date}` (the row's UTC day, `YYYY.MM.DD`) are replaced. Splunk: the HEC `index`.
    #[serde(default)]
    pub index: Option<String>,
    /// Splunk only: the HEC `sourcetype` (default `tracelake:<short table name>`).
    #[serde(default)]
    pub sourcetype: Option<String>,
    /// Splunk only: the HEC `source` (default `tracelake`).
    #[serde(default)]
    pub source: Option<String>,
}

/// Which tables a forwarder sends. Findings (`detection_finding`) always go, at or above
/// `findings_min_severity`; event tables only when listed.
pub fn routes(tables: &BTreeMap<String, TableRoute>, what: &str) -> Result<Vec<(Table, TableRoute)>, ForwardError> {
    let mut out = Vec::new();
    for (name, route) in tables {
        let table = Table::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
            ForwardError::Config(format!("{what}.tables.{name}: no such table (one of {})", known.join(", ")))
        })?;
        out.push((table, route.clone()));
    }
    if !out.iter().any(|(t, _)| *t == Table::DetectionFinding) {
        out.push((Table::DetectionFinding, TableRoute::default()));
    }
    Ok(out)
}

/// `[siem.<target>.delivery]`: batching, compression, concurrency, retries.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// A request is sent once its documents hold this many bytes (before compression).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// ... or once its oldest document waited this long. Humantime string.
    #[serde(default = "default_batch_max_age", with = "humantime_serde")]
    pub batch_max_age: Duration,
    /// Requests in flight at once (each on a thread of its own).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Compress request bodies with gzip (`Content-Encoding: gzip`).
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// A request with no answer by then fails (and is retried). Humantime string.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First retry delay; doubled per consecutive failure, with jitter. Humantime string.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest retry delay. Humantime string.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// A single rendered document larger than this is not sent: it goes to the dead-letter directory.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: usize,
    /// Where documents the SIEM rejects for good (mapping error, 400, too large) are written, one file per
    /// rejection with its reason; the stream goes on. Default `/var/lib/tracelake/siem/<target>/dead-letter`.
    #[serde(default)]
    pub dead_letter_dir: Option<PathBuf>,
}

/// What the forwarder does when its disk buffer is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop taking rows until the SIEM takes documents again: `push` blocks, so the lake (and in
    /// `tracelake lake` the Kafka consumer) waits. Nothing is dropped.
    Block,
    /// Delete the oldest buffer segment, counting its documents as `dropped_full` (the rows stay in the lake).
    DropOldest,
}

/// `[siem.<target>.buffer]`: where documents wait while the SIEM is slow or away.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Directory of the checksummed disk buffer (one per forwarder: do not share it). Default
    /// `/var/lib/tracelake/siem/<target>/buffer`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Most bytes of documents held in memory (rendered, waiting or in flight); past it the oldest go to disk.
    #[serde(default = "default_memory_max_bytes")]
    pub memory_max_bytes: usize,
    /// A document not delivered this long after it was pushed goes to the disk buffer, so the rows behind it
    /// count as safe (Kafka offsets commit) and the lake never waits longer than this. Humantime string.
    #[serde(default = "default_spill_after", with = "humantime_serde")]
    pub spill_after: Duration,
    /// Most bytes on disk.
    #[serde(default = "default_buffer_max_bytes")]
    pub max_bytes: u64,
    /// A segment file is closed past this size (the unit `drop_oldest` deletes).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// `block` or `drop_oldest` when `max_bytes` is reached.
    #[serde(default = "default_when_full")]
    pub when_full: WhenFull,
}

/// `[siem.<target>.tls]`: server verification and client certificates (PEM files).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle the server's certificate must chain to; the system store when unset.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client private key (PKCS#8, PKCS#1 or SEC1 PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Verify the server's certificate and host name. Turning it off is logged as a warning at start.
    #[serde(default = "default_true")]
    pub verify: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { ca_file: None, cert_file: None, key_file: None, verify: true }
    }
}

/// A secret given inline (best through an environment override) or read from a file at start (trailing
/// newline removed). Never printed: `redact` replaces it.
pub fn secret(inline: Option<&str>, file: Option<&PathBuf>, key: &str) -> Result<Option<String>, ForwardError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ForwardError::Config(format!("{key} and {key}_file are both set; set one"))),
        (Some(v), None) => Ok(Some(v.to_string())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| ForwardError::Io {
                what: "read the secret file",
                path: path.clone(),
                source,
            })?;
            Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
        }
        (None, None) => Ok(None),
    }
}

/// What `tracelake config` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Replaces a set secret by `REDACTED`.
pub fn redact(secret: &mut Option<String>) {
    if secret.is_some() {
        *secret = Some(REDACTED.into());
    }
}

impl DeliveryConfig {
    pub fn validate(&self, what: &str) -> Result<(), ForwardError> {
        let bad = |m: &str| Err(ForwardError::Config(format!("{what}.delivery.{m}")));
        if self.batch_max_bytes == 0 {
            return bad("batch_max_bytes must be above 0");
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return bad("concurrency must be 1..=64");
        }
        if self.request_timeout.is_zero() || self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return bad("request_timeout and retry_initial must be above 0, retry_max at least retry_initial");
        }
        if self.max_document_bytes == 0 {
            return bad("max_document_bytes must be above 0");
        }
        Ok(())
    }
}

impl BufferConfig {
    pub fn validate(&self, what: &str) -> Result<(), ForwardError> {
        let bad = |m: &str| Err(ForwardError::Config(format!("{what}.buffer.{m}")));
        if self.memory_max_bytes == 0 || self.segment_bytes == 0 || self.max_bytes < self.segment_bytes {
            return bad("memory_max_bytes and segment_bytes must be above 0, max_bytes at least segment_bytes");
        }
        if self.spill_after.is_zero() {
            return bad("spill_after must be above 0");
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}
fn default_batch_max_bytes() -> usize {
    4 << 20
}
fn default_batch_max_age() -> Duration {
    Duration::from_secs(1)
}
fn default_concurrency() -> usize {
    2
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn default_max_document_bytes() -> usize {
    8 << 20
}
/// Where a target's buffer and dead letters go unless configured.
pub fn default_dir(target: &str, what: &str) -> PathBuf {
    PathBuf::from(format!("/var/lib/tracelake/siem/{target}/{what}"))
}
fn default_memory_max_bytes() -> usize {
    64 << 20
}
fn default_spill_after() -> Duration {
    Duration::from_secs(10)
}
fn default_buffer_max_bytes() -> u64 {
    2 << 30
}
fn default_segment_bytes() -> u64 {
    16 << 20
}
fn default_when_full() -> WhenFull {
    WhenFull::DropOldest
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            batch_max_bytes: default_batch_max_bytes(),
            batch_max_age: default_batch_max_age(),
            concurrency: default_concurrency(),
            gzip: true,
            request_timeout: default_request_timeout(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            max_document_bytes: default_max_document_bytes(),
            dead_letter_dir: None,
        }
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            dir: None,
            memory_max_bytes: default_memory_max_bytes(),
            spill_after: default_spill_after(),
            max_bytes: default_buffer_max_bytes(),
            segment_bytes: default_segment_bytes(),
            when_full: default_when_full(),
        }
    }
}
