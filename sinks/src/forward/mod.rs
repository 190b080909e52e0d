//! Delivery machinery the SIEM forwarders share (docs/siem.md): rows of the lake tables in as Arrow batches,
//! one rendered document per row out to a `Target` (Elasticsearch `_bulk`, Splunk HEC), with batching by
//! bytes and time, gzip, bounded concurrency, retries with exponential backoff and jitter, a dead-letter
//! directory for permanent rejects and a checksummed disk buffer for what the SIEM cannot take in time.
//!
//! At least once: every `push` gets a ticket, and `acked_up_to` passes it only once each of its rows was
//! delivered (for HEC: indexed, per indexer acknowledgement), dead-lettered, or written durably to the disk
//! buffer. The Kafka consumer commits offsets only behind that mark.

mod buffer;
pub mod config;
mod deadletter;
mod forwarder;
pub mod generic;
mod http;
pub mod json;
pub mod rows;
mod stats;
#[cfg(test)]
pub(crate) mod tests;
mod worker;

use std::path::PathBuf;

use arrow::array::{BooleanArray, RecordBatch};

pub use buffer::{Appended, DiskBuffer};
pub use config::{BufferConfig, DeliveryConfig, TableRoute, TlsConfig, WhenFull};
pub use forwarder::{CloseReport, Forwarder, Options};
pub use http::Http;
pub use stats::{ForwardStats, GAUGES};

use crate::parquet::Table;

/// Why a forwarder cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("siem: invalid configuration: {0}")]
    Config(String),
    #[error("siem: cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("siem: {target} rejected the credentials: {detail}")]
    Auth { target: &'static str, detail: String },
    #[error("siem: {0}")]
    Http(String),
    #[error("siem: the forwarder thread is gone")]
    Gone,
}

/// The answer to one request.
#[derive(Debug)]
pub enum Sent {
    /// Every document was taken.
    All,
    /// One outcome per document, in order (`_bulk`).
    Items(Vec<Item>),
    /// Taken, indexed once the SIEM acknowledges this id (HEC indexer acknowledgement).
    AwaitAck(u64),
}

/// What became of one document of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Delivered,
    /// A passing failure (429, 5xx): sent again after the backoff.
    Retry(String),
    /// Rejected for good (mapping error, 400, too large): dead-lettered with this reason.
    Reject(String),
}

/// A request that failed as a whole.
#[derive(Debug)]
pub enum SendError {
    /// Connection refused or reset, timeout, 429, 5xx: every document is sent again after the backoff.
    Retry(String),
    /// 401/403: logged as an error every time, retried after the backoff (nothing is dropped).
    Auth(String),
    /// The request was rejected as a whole (HEC 400, 413): its documents are sent again one per request, and
    /// the one rejected alone is dead-lettered.
    Rejected(String),
}

/// A SIEM: how rows become documents and how documents are sent.
pub trait Target: Send + Sync + 'static {
    /// `elasticsearch`, `splunk_hec`: names metrics, logs and dead letters.
    fn name(&self) -> &'static str;

    /// Renders each row of `batch` (a batch of `table`) as one document, appended to `out` in row order.
    fn render(&self, table: Table, batch: &RecordBatch, out: &mut Vec<Vec<u8>>);

    /// Sends documents in one request.
    fn send(&self, http: &Http, docs: &[&[u8]]) -> Result<Sent, SendError>;

    /// The acknowledgement ids (of `Sent::AwaitAck`) the SIEM says are indexed now.
    fn poll_acks(&self, _http: &Http, ids: &[u64]) -> Result<Vec<u64>, SendError> {
        Ok(ids.to_vec())
    }

    /// A first request at start: credentials the SIEM rejects fail the start; a SIEM that is away does not.
    fn check(&self, http: &Http) -> Result<(), SendError>;

    /// The TLS settings and timeout its requests use.
    fn http_settings(&self) -> (&TlsConfig, std::time::Duration);
}

/// Keeps the rows of a batch a table's `where` selects (a DataFusion expression, built by the caller).
pub type RowFilter = Box<dyn FnMut(&RecordBatch) -> Result<BooleanArray, String> + Send>;

/// Which rows a forwarder sends.
pub struct Selection {
    /// Tables forwarded, each with its optional filter.
    pub tables: Vec<(Table, Option<RowFilter>)>,
    /// Findings below this OCSF `severity_id` are not sent.
    pub findings_min_severity: i32,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tables: Vec<(&str, bool)> = self.tables.iter().map(|(t, w)| (t.name(), w.is_some())).collect();
        f.debug_struct("Selection")
            .field("tables", &tables)
            .field("findings_min_severity", &self.findings_min_severity)
            .finish()
    }
}

/// OCSF severity_id of a severity name (`informational` 1 ... `critical` 5, `fatal` 6), as the rules use.
pub fn severity_id(name: &str) -> Option<i32> {
    match name.to_ascii_lowercase().as_str() {
        "unknown" => Some(0),
        "informational" | "info" => Some(1),
        "low" => Some(2),
        "medium" => Some(3),
        "high" => Some(4),
        "critical" => Some(5),
        "fatal" => Some(6),
        _ => None,
    }
}
