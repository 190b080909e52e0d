//! Counters of the agent's producer and spool and of the lake consumer:
//! relaxed atomics, shared with the status line and the metrics exporter.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($name:ident { $($(#[doc = $doc:literal])* $field:ident: AtomicU64,)* }) => {
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[doc = $doc])* pub $field: AtomicU64,)*
        }

        impl $name {
            /// Every counter with its metric name suffix, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters!(ProducerStats {
    /// Messages handed to the Kafka client (first sends and spool replays).
    sent: AtomicU64,
    /// Messages the broker acknowledged.
    delivered: AtomicU64,
    /// Rows in acknowledged messages.
    delivered_rows: AtomicU64,
    /// Delivery failures (each message then goes to the spool, or is rejected if it never can be sent).
    failed: AtomicU64,
    /// Messages sent again from the spool.
    retried: AtomicU64,
    /// Messages written to the spool.
    spooled: AtomicU64,
    /// Rows written to the spool.
    spooled_rows: AtomicU64,
    /// Delivered messages re-sent after an outage (the broker may have lost them).
    replayed_after_outage: AtomicU64,
    /// Messages deleted from a full spool (policy drop_oldest).
    spool_dropped: AtomicU64,
    /// Rows in those messages.
    spool_dropped_rows: AtomicU64,
    /// Bytes cut from segment tails that failed their length or crc check at start.
    spool_truncated_bytes: AtomicU64,
    /// Times the reader waited for spool space (policy block).
    spool_blocked: AtomicU64,
    /// Milliseconds spent waiting for spool space.
    spool_blocked_ms: AtomicU64,
    /// Bytes on disk in the spool now.
    spool_bytes: AtomicU64,
    /// Messages in the spool not yet acknowledged.
    spool_messages: AtomicU64,
    /// Rows that can never be sent (one row larger than message_max_bytes, or a permanent broker refusal).
    rejected_rows: AtomicU64,
    /// Outages seen (all brokers down).
    outages: AtomicU64,
    /// 1 while in an outage (all brokers down, no delivery since), else 0.
    in_outage: AtomicU64,
    /// Kafka clients recreated after a fatal error.
    producer_restarts: AtomicU64,
});

counters!(ConsumerStats {
    /// Messages read from the topics.
    messages: AtomicU64,
    /// Rows in them.
    rows_in: AtomicU64,
    /// Rows dropped because their event_id was seen already.
    duplicates: AtomicU64,
    /// Rows in durable Parquet files.
    rows_written: AtomicU64,
    files_written: AtomicU64,
    /// Offset commits after durable files.
    commits: AtomicU64,
    commit_errors: AtomicU64,
    /// File writes that failed (rows kept, offsets not committed, retried).
    write_errors: AtomicU64,
    /// Messages that could not be decoded, saved to rejected_dir.
    rejected: AtomicU64,
    /// Group joins again after every broker was lost.
    rejoins: AtomicU64,
    /// Partitions resumed after their committed offset was checked against the message before it.
    resumes_checked: AtomicU64,
    /// Partitions resumed at a committed offset that could not be checked (no fingerprint, message gone).
    resumes_unchecked: AtomicU64,
    /// Partitions read again from the start because their log was not the one the offset was committed in.
    logs_replaced: AtomicU64,
    /// Ids loaded from recent files at start.
    dedupe_seeded: AtomicU64,
    /// Turns of the consume loop (one per poll, about every poll timeout even when idle): its heartbeat.
    polls: AtomicU64,
});

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn set(c: &AtomicU64, n: u64) {
    c.store(n, Ordering::Relaxed);
}

pub(crate) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
