//! Where a partition's consumption resumes, checked against the log.
//!
//! A committed offset is a position in one log. A broker that restarted empty (an in-memory broker, a cluster
//! rebuilt from scratch) starts new logs at offset 0, and the agents' replays fill them again; a commit that
//! was on its way while the broker went away (a commit waits for the coordinator) or another `lake` process's
//! late commit can land in that new log as a position it never had. Resuming there skips what lies before it.
//!
//! So every commit is recorded in the lake's journal (`journal`) with a fingerprint of the last message it
//! covers (at offset - 1): its key, payload and timestamp, which a replay does not keep (the producer stamps it
//! anew), so no message of another log matches. On assignment the partition starts one message early: if that
//! message is the one the fingerprint names, it is skipped (its rows are durable already) and consumption goes
//! on; if it is another message, the log is not the one the offset was committed in, and the partition is read
//! again from its start (the dedupe drops what the lake has). Kafka's own guard against this, leader epochs (KIP-320), is not kept by every broker that
//! speaks the protocol (tansu), and does not cover a cluster rebuilt with the same epochs.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::journal;
use super::stats::{ConsumerStats, add};
use crate::hash::{content_fingerprint, mix};

/// How long an assignment waits for the group's committed offsets before resuming unchecked.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// What identifies a message in its log: key, payload and timestamp.
pub(crate) fn fingerprint(msg: &BorrowedMessage<'_>) -> u64 {
    let key = content_fingerprint(msg.key().unwrap_or_default());
    let payload = content_fingerprint(msg.payload().unwrap_or_default());
    mix(mix(key, payload), msg.timestamp().to_millis().unwrap_or(-1) as u64)
}

/// What to do with a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Consume it.
    Take,
    /// Drop it: it lies before the committed offset, already in the lake.
    Skip,
    /// Drop it and move the partition to this offset (`Offset::Beginning`: the log is not the one the commit
    /// came from; else an earlier place to find the message the check needs); then call `sought`.
    Seek(Offset),
}

/// A partition's check of its committed offset.
#[derive(Debug)]
struct Check {
    topic: String,
    partition: i32,
    /// The message before the committed offset, and its fingerprint in the journal.
    at: i64,
    fp: u64,
    /// Where consumption was placed (`at`, or earlier when the broker skipped `at`).
    from: i64,
    /// A seek owed: messages are dropped until `sought` says it is done.
    seek: Option<Offset>,
}

/// Partitions whose first message is still to be checked.
#[derive(Debug)]
pub(crate) struct Checks {
    /// The group's journal.
    journal: PathBuf,
    open: Mutex<Vec<Check>>,
    /// `open.len()`, read without the lock on every message.
    count: AtomicUsize,
}

impl Checks {
    pub(crate) fn new(journal: PathBuf) -> Checks {
        Checks { journal, open: Mutex::new(Vec::new()), count: AtomicUsize::new(0) }
    }

    /// Sets where each assigned partition with a committed offset starts: one message before it when the
    /// journal has its fingerprint, else at it (so librdkafka does not ask for the offsets again). Called in
    /// the rebalance callback, before `assign`.
    pub(crate) fn plan<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: &mut TopicPartitionList,
        stats: &ConsumerStats,
    ) {
        let committed = match consumer.committed_offsets(tpl.clone(), COMMITTED_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                add(&stats.resumes_unchecked, tpl.count() as u64);
                tracing::warn!(error = %e, "lake: cannot read the committed offsets to check them; resuming unchecked");
                return;
            }
        };
        let wanted: HashSet<journal::Commit> = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(c) if c > 0 => Some((e.topic().to_owned(), e.partition(), c)),
                _ => None,
            })
            .collect();
        let fps = match journal::lookup(&self.journal, &wanted) {
            Ok(f) => f,
            Err(e) => {
                add(&stats.resumes_unchecked, wanted.len() as u64);
                tracing::warn!(error = %e, dir = %self.journal.display(), "lake: cannot read the commit journal; resuming unchecked");
                return;
            }
        };
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for commit in wanted {
            let (topic, partition, c) = &commit;
            let fp = fps.get(&commit).copied();
            if fp.is_none() {
                add(&stats.resumes_unchecked, 1);
                tracing::warn!(
                    topic,
                    partition,
                    offset = c,
                    "lake: committed offset not in the commit journal (a writer without one, or a lost lake?); resuming there unchecked"
                );
            }
            let start = if fp.is_some() { c - 1 } else { *c };
            let Some(mut elem) = tpl.find_partition(topic, *partition) else { continue };
            if let Err(err) = elem.set_offset(Offset::Offset(start)) {
                tracing::warn!(error = %err, "lake: cannot set where a partition starts; librdkafka resumes it");
                continue;
            }
            if let Some(fp) = fp {
                open.retain(|k| !(&k.topic == topic && k.partition == *partition));
                open.push(Check {
                    topic: topic.clone(),
                    partition: *partition,
                    at: start,
                    fp,
                    from: start,
                    seek: None,
                });
            }
        }
        self.count.store(open.len(), Ordering::Relaxed);
    }

    /// Partitions taken away: their checks go with them.
    pub(crate) fn forget(&self, tpl: &TopicPartitionList) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|k| tpl.find_partition(&k.topic, k.partition).is_none());
        self.count.store(open.len(), Ordering::Relaxed);
    }

    /// The verdict on a message of a partition under check; the check ends with the message at `at` or with
    /// proof that the log is another one.
    pub(crate) fn judge(&self, msg: &BorrowedMessage<'_>, stats: &ConsumerStats) -> Verdict {
        if self.count.load(Ordering::Relaxed) == 0 {
            return Verdict::Take;
        }
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(i) = open.iter().position(|k| k.topic == msg.topic() && k.partition == msg.partition()) else {
            return Verdict::Take;
        };
        let k = &mut open[i];
        if let Some(to) = k.seek {
            return Verdict::Seek(to);
        }
        let (off, at) = (msg.offset(), k.at);
        let verdict = if off == at && fingerprint(msg) == k.fp {
            add(&stats.resumes_checked, 1);
            Verdict::Skip
        } else if off == at {
            tracing::warn!(
                topic = msg.topic(),
                partition = msg.partition(),
                offset = at,
                "lake: the message before the committed offset is another one: the log was replaced (a broker \
                 that lost its data?); reading the partition again from its start"
            );
            add(&stats.logs_replaced, 1);
            k.seek = Some(Offset::Beginning);
            return Verdict::Seek(Offset::Beginning);
        } else if off < k.from {
            // librdkafka found the offset out of range and reset to the start: the log is shorter than the
            // commit said, so it is a new one, and its start is the right place.
            add(&stats.logs_replaced, 1);
            tracing::warn!(
                topic = msg.topic(),
                partition = msg.partition(),
                committed = at + 1,
                offset = off,
                "lake: the log is shorter than the committed offset: reading it from its start"
            );
            Verdict::Take
        } else if off < at {
            // Placed early to find `at`: this one is before the commit.
            return Verdict::Skip;
        } else if k.from > 0 {
            // The broker answered a fetch at `from` from a later message. Kafka returns the record batch that
            // holds the offset and the client drops what lies before it; tansu returns batches that start at or
            // after it, skipping the rest of the batch that holds it. Or retention removed `at`. Either way,
            // start further back until `at` comes or the start of the log is passed.
            let back = (at - k.from + 1).saturating_mul(2).max(16);
            k.from = k.from.saturating_sub(back).max(0);
            k.seek = Some(Offset::Offset(k.from));
            return Verdict::Seek(Offset::Offset(k.from));
        } else {
            // Even from its start, the log has no message `at`: retention removed it, nothing to compare with.
            // What came is the log's first message, so the rest of the partition follows from here.
            add(&stats.resumes_unchecked, 1);
            tracing::warn!(
                topic = msg.topic(),
                partition = msg.partition(),
                committed = at + 1,
                offset = off,
                "lake: the message before the committed offset is gone; resuming unchecked"
            );
            Verdict::Take
        };
        open.swap_remove(i);
        self.count.store(open.len(), Ordering::Relaxed);
        verdict
    }

    /// A seek `judge` asked for is done: back to the start of a replaced log ends the check; an earlier place
    /// keeps it.
    pub(crate) fn sought(&self, topic: &str, partition: i32) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(i) = open.iter().position(|k| k.topic == topic && k.partition == partition) else { return };
        if open[i].seek.take() == Some(Offset::Beginning) {
            open.swap_remove(i);
        }
        self.count.store(open.len(), Ordering::Relaxed);
    }
}
