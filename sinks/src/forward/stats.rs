//! Counters of one forwarder: every way a row can leave is counted (docs/siem.md lists them); exported as
//! OpenTelemetry metrics `tracelake.siem.<target>.<name>` by the binary.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Counters (and a few gauges, named in `GAUGES`) of one forwarder.
        #[derive(Debug, Default)]
        pub struct ForwardStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        impl ForwardStats {
            /// Every counter by name, with its value now.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

stats! {
    /// Rows pushed (before table selection and filters).
    rows_in,
    /// Rows the tables and `where` filters selected: one document each.
    documents,
    /// Documents the SIEM took (for HEC: acknowledged as indexed).
    delivered,
    /// Documents dead-lettered (rejected for good), each in a file with its reason.
    dead_lettered,
    /// Documents rejected for good that could not be written to the dead-letter directory: lost (logged).
    dead_letter_errors,
    /// Requests sent.
    requests,
    /// Requests (or documents of a partially failed `_bulk`) that failed and were sent again.
    retries,
    /// Requests the SIEM answered 401/403 (wrong token or credentials): logged as errors, retried.
    auth_errors,
    /// Documents written to the disk buffer (SIEM slow or away).
    spilled,
    /// Documents read back from the disk buffer to be sent.
    replayed,
    /// Documents dropped because the disk buffer was full (`when_full = drop_oldest`): lost to the SIEM.
    dropped_full,
    /// Times `push` waited because the disk buffer was full (`when_full = block`).
    blocked_full,
    /// Milliseconds `push` spent waiting for room (backpressure on the lake).
    push_wait_ms,
    /// Bytes cut from torn or corrupt disk-buffer segments at start.
    buffer_truncated_bytes,
    /// Batches whose `where` filter failed to evaluate (every row forwarded; logged).
    filter_errors,
    /// HEC acknowledgements not given within `ack_timeout`: the documents were sent again.
    ack_timeouts,
    /// Documents still in memory when `close` gave up and that could not be buffered either: lost (logged).
    lost_at_close,
    /// Request bytes on the wire (after gzip).
    bytes_sent,
    /// Gauge: bytes in the disk buffer.
    buffer_bytes,
    /// Gauge: documents in the disk buffer not delivered yet.
    buffer_documents,
    /// Gauge: bytes of documents held in memory.
    memory_bytes,
    /// Gauge: 1 while the SIEM fails requests (in backoff).
    in_outage,
}

/// The gauges among the counters (they go down too).
pub const GAUGES: [&str; 4] = ["buffer_bytes", "buffer_documents", "memory_bytes", "in_outage"];

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn set(c: &AtomicU64, n: u64) {
    c.store(n, Ordering::Relaxed);
}

impl ForwardStats {
    /// Documents lost to the SIEM for good, by any path (each also counted under its own name).
    pub fn lost(&self) -> u64 {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        get(&self.dead_letter_errors) + get(&self.dropped_full) + get(&self.lost_at_close)
    }
}
