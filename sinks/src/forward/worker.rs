//! The coordinator thread of a forwarder: selects and renders pushed rows, batches documents into requests for
//! the sender threads, handles their outcomes (retry with backoff, dead letter, wait for an acknowledgement),
//! spills what waits too long or does not fit in memory to the disk buffer, and publishes the mark below which
//! every ticket is safe.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use arrow::array::{Array, BooleanArray, Int32Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::boolean::and;
use arrow::compute::kernels::cmp::gt_eq;

use super::buffer::{Appended, DiskBuffer};
use super::deadletter::DeadLetters;
use super::forwarder::{CloseReport, Gate, Options};
use super::stats::{ForwardStats, add, set};
use super::{Item, SendError, Sent, Target};
use crate::parquet::Table;

/// Rows rendered per step, so memory is checked (and spilled) within a large batch.
const RENDER_ROWS: usize = 8192;
/// Fixed cost of a document beside its bytes, for the memory bound.
const DOC_OVERHEAD: usize = 64;

/// What reaches the coordinator: rows from `push`, outcomes from the senders, the close.
#[derive(Debug)]
pub(super) enum Event {
    Rows { ticket: u64, table: Table, batch: RecordBatch, bytes: usize },
    Sent { docs: Vec<Doc>, result: Result<Sent, SendError>, wire_bytes: u64 },
    Acks { asked: Vec<u64>, result: Result<Vec<u64>, SendError> },
    Close(Instant),
}

/// Work for a sender thread.
#[derive(Debug)]
pub(super) enum Job {
    Send { docs: Vec<Doc> },
    PollAcks(Vec<u64>),
}

/// Whose document it is: a push's ticket, or a disk-buffer segment it was read back from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Ticket(u64),
    Segment(u64),
}

/// One rendered row.
#[derive(Debug)]
pub(super) struct Doc {
    owner: Owner,
    table: Table,
    pub(super) body: Vec<u8>,
    since: Instant,
}

impl Doc {
    fn size(&self) -> usize {
        self.body.len() + DOC_OVERHEAD
    }
}

/// The disk frame of a document: the table's index in `Table::ALL`, then the document.
fn frame(doc: &Doc) -> Vec<u8> {
    let idx = Table::ALL.iter().position(|t| *t == doc.table).unwrap_or(0) as u8;
    let mut f = Vec::with_capacity(doc.body.len() + 1);
    f.push(idx);
    f.extend_from_slice(&doc.body);
    f
}

pub(super) struct Worker {
    target: Arc<dyn Target>,
    opts: Options,
    buffer: DiskBuffer,
    dead: DeadLetters,
    jobs: Sender<Job>,
    gate: Arc<Gate>,
    acked: Arc<AtomicU64>,
    stats: Arc<ForwardStats>,
    /// Documents still open per ticket; a ticket absent here and at most `last_seen` is safe.
    tickets: BTreeMap<u64, usize>,
    last_seen: u64,
    held: VecDeque<(u64, Table, RecordBatch, usize)>,
    outbox: VecDeque<Doc>,
    /// Bytes of documents in the outbox, in flight and awaiting acknowledgement.
    mem: usize,
    in_flight: usize,
    polling_acks: bool,
    awaiting: BTreeMap<u64, (Instant, Vec<Doc>)>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Documents to send one per request (a request rejected whole is taken apart to find the bad one).
    isolate: usize,
    next_ack_poll: Instant,
    closing: Option<Instant>,
    /// The disk buffer is full and `when_full = block`: rows wait in `held`, `push` blocks.
    blocked: bool,
    dropped_seen: u64,
    rng: u64,
    rendered: Vec<Vec<u8>>,
}

impl Worker {
    #[allow(clippy::too_many_arguments, reason = "the parts `Forwarder::open` made")]
    pub(super) fn new(
        target: Arc<dyn Target>,
        opts: Options,
        buffer: DiskBuffer,
        dead: DeadLetters,
        jobs: Sender<Job>,
        gate: Arc<Gate>,
        acked: Arc<AtomicU64>,
        stats: Arc<ForwardStats>,
    ) -> Worker {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Worker {
            target,
            opts,
            buffer,
            dead,
            jobs,
            gate,
            acked,
            stats,
            tickets: BTreeMap::new(),
            last_seen: 0,
            held: VecDeque::new(),
            outbox: VecDeque::new(),
            mem: 0,
            in_flight: 0,
            polling_acks: false,
            awaiting: BTreeMap::new(),
            failures: 0,
            retry_at: None,
            isolate: 0,
            next_ack_poll: Instant::now(),
            closing: None,
            blocked: false,
            dropped_seen: 0,
            rng: seed | 1,
            rendered: Vec::new(),
        }
    }

    pub(super) fn run(mut self, rx: &Receiver<Event>) -> CloseReport {
        loop {
            let busy = !self.outbox.is_empty() || !self.awaiting.is_empty() || !self.held.is_empty();
            let wait = if busy { Duration::from_millis(10) } else { Duration::from_millis(100) };
            match rx.recv_timeout(wait) {
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.closing = self.closing.or(Some(Instant::now())),
            }
            while let Ok(ev) = rx.try_recv() {
                self.handle(ev);
            }
            self.intake();
            self.spill_due();
            self.refill();
            self.dispatch();
            self.poll_acks();
            self.publish();
            if let Some(deadline) = self.closing {
                let idle =
                    self.held.is_empty() && self.outbox.is_empty() && self.in_flight == 0 && self.awaiting.is_empty();
                if idle || Instant::now() >= deadline {
                    return self.finish(rx);
                }
            }
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Rows { ticket, table, batch, bytes } => self.held.push_back((ticket, table, batch, bytes)),
            Event::Sent { docs, result, wire_bytes } => {
                self.in_flight -= 1;
                add(&self.stats.bytes_sent, wire_bytes);
                self.sent(docs, result);
            }
            Event::Acks { asked, result } => self.acks(&asked, result),
            Event::Close(deadline) => self.closing = Some(deadline),
        }
    }

    /// Renders held rows while memory and the disk buffer allow.
    fn intake(&mut self) {
        while let Some((ticket, table, batch, bytes)) = self.held.pop_front() {
            if self.blocked && !self.spill(|_| true, usize::MAX) {
                self.held.push_front((ticket, table, batch, bytes));
                return;
            }
            let selected = self.select(table, &batch);
            let mut off = 0;
            while off < selected.num_rows() {
                let len = RENDER_ROWS.min(selected.num_rows() - off);
                self.render(ticket, table, &selected.slice(off, len));
                off += len;
                if self.mem > self.opts.buffer.memory_max_bytes {
                    let target = self.opts.buffer.memory_max_bytes / 4 * 3;
                    self.spill(|_| true, self.mem.saturating_sub(target));
                }
            }
            self.last_seen = ticket;
            self.gate.release(bytes);
        }
    }

    /// The rows of `batch` its table's route selects.
    fn select(&mut self, table: Table, batch: &RecordBatch) -> RecordBatch {
        let min = self.opts.selection.findings_min_severity;
        let Some((_, filter)) = self.opts.selection.tables.iter_mut().find(|(t, _)| *t == table) else {
            return batch.slice(0, 0);
        };
        let mut keep: Option<BooleanArray> = None;
        if table == Table::DetectionFinding
            && let Some(sev) = batch.column_by_name("severity_id").and_then(|c| c.as_any().downcast_ref::<Int32Array>())
        {
            keep = gt_eq(sev, &Int32Array::new_scalar(min)).ok();
        }
        if let Some(f) = filter {
            match f(batch) {
                Ok(mask) => keep = Some(keep.map_or(Ok(mask.clone()), |k| and(&k, &mask)).unwrap_or(mask)),
                Err(e) => {
                    add(&self.stats.filter_errors, 1);
                    tracing::error!(target = self.target.name(), table = table.name(), error = %e, "siem: the table's `where` failed on a batch; forwarding every row of it");
                }
            }
        }
        match keep {
            Some(mask) if mask.true_count() < batch.num_rows() => {
                // Null (a comparison with a null column) is not true: the row is not selected, as in SQL.
                filter_record_batch(batch, &mask).unwrap_or_else(|_| batch.clone())
            }
            Some(_) | None => batch.clone(),
        }
    }

    fn render(&mut self, ticket: u64, table: Table, batch: &RecordBatch) {
        let mut out = std::mem::take(&mut self.rendered);
        out.clear();
        self.target.render(table, batch, &mut out);
        add(&self.stats.documents, out.len() as u64);
        let now = Instant::now();
        for body in out.drain(..) {
            let doc = Doc { owner: Owner::Ticket(ticket), table, body, since: now };
            *self.tickets.entry(ticket).or_insert(0) += 1;
            self.mem += doc.size();
            if doc.body.len() > self.opts.delivery.max_document_bytes {
                let why = format!("document of {} bytes, above delivery.max_document_bytes", doc.body.len());
                self.dead_letter(doc, &why);
            } else {
                self.outbox.push_back(doc);
            }
        }
        self.rendered = out;
    }

    /// Writes outbox documents of pushes that `pick` chooses, oldest first, up to `bytes`, to the disk buffer;
    /// once durable their tickets are safe. False when the buffer is full (`when_full = block`).
    fn spill(&mut self, pick: impl Fn(&Doc) -> bool, bytes: usize) -> bool {
        let mut chosen = Vec::new();
        let mut kept = VecDeque::with_capacity(self.outbox.len());
        let mut size = 0;
        while let Some(d) = self.outbox.pop_front() {
            if size < bytes && matches!(d.owner, Owner::Ticket(_)) && pick(&d) {
                size += d.size();
                chosen.push(d);
            } else {
                kept.push_back(d);
            }
        }
        self.outbox = kept;
        self.write_to_disk(chosen)
    }

    /// Writes documents to the disk buffer and resolves them; on a full buffer (block) they go back.
    fn write_to_disk(&mut self, docs: Vec<Doc>) -> bool {
        if docs.is_empty() {
            return !self.blocked || self.buffer.bytes() < self.opts.buffer.max_bytes;
        }
        let frames: Vec<Vec<u8>> = docs.iter().map(frame).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let stored = self.buffer.append(&refs).and_then(|a| self.buffer.sync().map(|()| a));
        match stored {
            Ok(Appended::Stored) => {
                self.blocked = false;
                add(&self.stats.spilled, docs.len() as u64);
                for d in docs {
                    self.resolve(&d);
                }
                true
            }
            Ok(Appended::Full) => {
                if !self.blocked {
                    add(&self.stats.blocked_full, 1);
                    tracing::error!(
                        target = self.target.name(),
                        bytes = self.buffer.bytes(),
                        "siem: disk buffer full (when_full = block): rows wait, the lake waits"
                    );
                }
                self.blocked = true;
                for d in docs.into_iter().rev() {
                    self.outbox.push_front(d);
                }
                false
            }
            Err(e) => {
                // A disk that fails (full file system, permissions): the documents stay in memory and are
                // tried again; the rows behind them are not safe yet.
                tracing::error!(target = self.target.name(), error = %e, "siem: cannot write the disk buffer");
                for d in docs.into_iter().rev() {
                    self.outbox.push_front(d);
                }
                self.blocked = true;
                false
            }
        }
    }

    /// Documents waiting longer than `spill_after` (in the outbox, or for an acknowledgement) go to disk.
    fn spill_due(&mut self) {
        let now = Instant::now();
        let after = self.opts.buffer.spill_after;
        if self.outbox.iter().any(|d| matches!(d.owner, Owner::Ticket(_)) && now.duration_since(d.since) >= after) {
            self.spill(|d| now.duration_since(d.since) >= after, usize::MAX);
        }
        let late: Vec<u64> =
            self.awaiting.iter().filter(|(_, (t, _))| now.duration_since(*t) >= after).map(|(id, _)| *id).collect();
        for id in late {
            if let Some((_, docs)) = self.awaiting.remove(&id) {
                // Sent again from disk later; a late acknowledgement is then ignored (a possible duplicate).
                let (mine, disk): (Vec<Doc>, Vec<Doc>) =
                    docs.into_iter().partition(|d| matches!(d.owner, Owner::Ticket(_)));
                for d in disk {
                    self.requeue_one(d);
                }
                if !self.write_to_disk(mine) {
                    return;
                }
            }
        }
        let timeout = self.opts.ack_timeout;
        let expired: Vec<u64> =
            self.awaiting.iter().filter(|(_, (t, _))| now.duration_since(*t) >= timeout).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some((_, docs)) = self.awaiting.remove(&id) {
                add(&self.stats.ack_timeouts, docs.len() as u64);
                tracing::warn!(
                    target = self.target.name(),
                    ack = id,
                    documents = docs.len(),
                    "siem: no indexer acknowledgement in time; sending again"
                );
                self.requeue(docs);
            }
        }
    }

    /// Reads documents back from the disk buffer while the SIEM takes requests and memory allows.
    fn refill(&mut self) {
        if self.retry_at.is_some() || self.closing.is_some() {
            return;
        }
        let room = self.opts.buffer.memory_max_bytes / 2;
        let ahead = self.opts.delivery.batch_max_bytes * (self.opts.delivery.concurrency + 1);
        let mut queued: usize = self.outbox.iter().map(Doc::size).sum();
        while self.mem < room && queued < ahead && self.buffer.unread() > 0 {
            match self.buffer.next_unread() {
                Ok(Some((seg, data))) => {
                    let Some((&idx, body)) = data.split_first() else {
                        let _ = self.buffer.resolve(seg);
                        continue;
                    };
                    let table = Table::ALL.get(usize::from(idx)).copied().unwrap_or(Table::ProcessActivity);
                    let doc = Doc { owner: Owner::Segment(seg), table, body: body.to_vec(), since: Instant::now() };
                    add(&self.stats.replayed, 1);
                    self.mem += doc.size();
                    queued += doc.size();
                    self.outbox.push_back(doc);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(target = self.target.name(), error = %e, "siem: cannot read the disk buffer");
                    return;
                }
            }
        }
    }

    fn dispatch(&mut self) {
        let now = Instant::now();
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        // In an outage, one request probes; the others wait for it.
        let limit = if self.failures > 0 { 1 } else { self.opts.delivery.concurrency };
        while self.in_flight < limit {
            let Some(front) = self.outbox.front() else { return };
            let max = self.opts.delivery.batch_max_bytes;
            let (mut n, mut bytes) = (0, 0);
            for d in &self.outbox {
                if n > 0 && (bytes + d.body.len() > max || self.isolate > 0) {
                    break;
                }
                n += 1;
                bytes += d.body.len();
            }
            let ready = bytes >= max
                || n < self.outbox.len()
                || self.isolate > 0
                || self.closing.is_some()
                || matches!(front.owner, Owner::Segment(_))
                || now.duration_since(front.since) >= self.opts.delivery.batch_max_age;
            if !ready {
                return;
            }
            self.isolate = self.isolate.saturating_sub(1);
            let docs: Vec<Doc> = self.outbox.drain(..n).collect();
            if self.jobs.send(Job::Send { docs }).is_err() {
                tracing::error!(target = self.target.name(), "siem: every sender thread is gone");
                return;
            }
            self.in_flight += 1;
            add(&self.stats.requests, 1);
        }
    }

    fn poll_acks(&mut self) {
        let now = Instant::now();
        if self.awaiting.is_empty() || self.polling_acks || now < self.next_ack_poll {
            return;
        }
        self.next_ack_poll = now + self.opts.ack_interval;
        let ids: Vec<u64> = self.awaiting.keys().copied().collect();
        if self.jobs.send(Job::PollAcks(ids)).is_ok() {
            self.polling_acks = true;
        }
    }

    fn sent(&mut self, docs: Vec<Doc>, result: Result<Sent, SendError>) {
        match result {
            Ok(Sent::All) => {
                add(&self.stats.delivered, docs.len() as u64);
                for d in &docs {
                    self.resolve(d);
                }
                self.succeeded();
            }
            Ok(Sent::Items(items)) if items.len() == docs.len() => {
                let mut retry = Vec::new();
                let mut why = String::new();
                for (d, item) in docs.into_iter().zip(items) {
                    match item {
                        Item::Delivered => {
                            add(&self.stats.delivered, 1);
                            self.resolve(&d);
                        }
                        Item::Retry(r) => {
                            why = r;
                            retry.push(d);
                        }
                        Item::Reject(r) => self.dead_letter(d, &r),
                    }
                }
                if retry.is_empty() {
                    self.succeeded();
                } else {
                    self.requeue(retry);
                    self.failed(&format!("some documents of a request failed: {why}"), false);
                }
            }
            Ok(Sent::Items(items)) => {
                let why = format!("{} outcomes for {} documents", items.len(), docs.len());
                self.requeue(docs);
                self.failed(&why, false);
            }
            Ok(Sent::AwaitAck(id)) => {
                self.awaiting.insert(id, (Instant::now(), docs));
                self.succeeded();
            }
            Err(SendError::Retry(why)) => {
                self.requeue(docs);
                self.failed(&why, false);
            }
            Err(SendError::Auth(why)) => {
                add(&self.stats.auth_errors, 1);
                self.requeue(docs);
                self.failed(&why, true);
            }
            Err(SendError::Rejected(why)) => {
                if docs.len() == 1 {
                    for d in docs {
                        self.dead_letter(d, &why);
                    }
                } else {
                    self.isolate = self.isolate.max(docs.len());
                    self.requeue(docs);
                }
            }
        }
    }

    fn acks(&mut self, asked: &[u64], result: Result<Vec<u64>, SendError>) {
        self.polling_acks = false;
        match result {
            Ok(ids) => {
                for id in ids {
                    if let Some((_, docs)) = self.awaiting.remove(&id) {
                        add(&self.stats.delivered, docs.len() as u64);
                        for d in &docs {
                            self.resolve(d);
                        }
                    }
                }
            }
            Err(SendError::Auth(why) | SendError::Retry(why) | SendError::Rejected(why)) => {
                tracing::warn!(target = self.target.name(), acks = asked.len(), error = %why, "siem: cannot poll indexer acknowledgements");
            }
        }
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(target = self.target.name(), failures = self.failures, "siem: requests succeed again");
        }
        self.failures = 0;
        self.retry_at = None;
        set(&self.stats.in_outage, 0);
    }

    /// A request failed as a whole or in part: back off (exponential, with jitter).
    fn failed(&mut self, why: &str, auth: bool) {
        add(&self.stats.retries, 1);
        self.failures += 1;
        let base = self.opts.delivery.retry_initial.saturating_mul(1 << (self.failures - 1).min(20));
        let cap = base.min(self.opts.delivery.retry_max);
        // Half fixed, half random: spread out, never immediate.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let delay = cap / 2 + cap.mul_f64((self.rng % 1000) as f64 / 2000.0);
        self.retry_at = Some(Instant::now() + delay);
        set(&self.stats.in_outage, 1);
        let name = self.target.name();
        if auth {
            tracing::error!(target = name, error = why, retry_in = ?delay, "siem: the SIEM rejects the credentials (wrong token, user or API key?); nothing is dropped, retrying");
        } else if self.failures == 1 || self.failures.is_multiple_of(10) {
            tracing::warn!(target = name, error = why, failures = self.failures, retry_in = ?delay, "siem: request failed; retrying");
        }
    }

    fn requeue(&mut self, docs: Vec<Doc>) {
        for d in docs.into_iter().rev() {
            self.requeue_one(d);
        }
    }

    fn requeue_one(&mut self, d: Doc) {
        self.outbox.push_front(d);
    }

    fn dead_letter(&mut self, doc: Doc, why: &str) {
        match self.dead.write(doc.table.name(), why, &doc.body) {
            Ok(path) => {
                add(&self.stats.dead_lettered, 1);
                tracing::warn!(target = self.target.name(), table = doc.table.name(), reason = why, path = %path.display(), "siem: document rejected for good, dead-lettered");
            }
            Err(e) => {
                add(&self.stats.dead_letter_errors, 1);
                tracing::error!(target = self.target.name(), table = doc.table.name(), reason = why, error = %e, "siem: document rejected for good and cannot be dead-lettered: lost");
            }
        }
        self.resolve(&doc);
    }

    fn resolve(&mut self, d: &Doc) {
        self.mem = self.mem.saturating_sub(d.size());
        match d.owner {
            Owner::Ticket(t) => {
                if let Some(n) = self.tickets.get_mut(&t) {
                    *n -= 1;
                    if *n == 0 {
                        self.tickets.remove(&t);
                    }
                }
            }
            Owner::Segment(id) => {
                if let Err(e) = self.buffer.resolve(id) {
                    tracing::error!(target = self.target.name(), error = %e, "siem: cannot delete a delivered buffer segment");
                }
            }
        }
    }

    fn publish(&mut self) {
        let safe = self.tickets.keys().next().map_or(self.last_seen, |&t| t - 1);
        self.acked.store(safe, Ordering::Release);
        set(&self.stats.buffer_bytes, self.buffer.bytes());
        set(&self.stats.buffer_documents, self.buffer.pending());
        set(&self.stats.memory_bytes, self.mem as u64);
        if self.buffer.dropped > self.dropped_seen {
            add(&self.stats.dropped_full, self.buffer.dropped - self.dropped_seen);
            self.dropped_seen = self.buffer.dropped;
        }
    }

    /// The close deadline passed or all is sent: waits for requests in flight (bounded by the request
    /// timeout), then writes what is left to the disk buffer for the next start.
    fn finish(mut self, rx: &Receiver<Event>) -> CloseReport {
        let until = Instant::now() + self.opts.delivery.request_timeout + Duration::from_secs(1);
        while (self.in_flight > 0 || self.polling_acks) && Instant::now() < until {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.blocked = false;
        self.intake();
        let waiting: Vec<Doc> = std::mem::take(&mut self.awaiting).into_values().flat_map(|(_, docs)| docs).collect();
        for d in waiting {
            self.outbox.push_back(d);
        }
        // Documents read back from disk stay there (their segment is kept); only pushes' documents go down.
        self.outbox.retain(|d| matches!(d.owner, Owner::Ticket(_)));
        let left = self.outbox.len() as u64;
        if !self.spill(|_| true, usize::MAX) {
            let lost = self.outbox.len() as u64 + self.held.iter().map(|h| h.2.num_rows() as u64).sum::<u64>();
            add(&self.stats.lost_at_close, lost);
            tracing::error!(
                target = self.target.name(),
                documents = lost,
                "siem: closing with a full or failing disk buffer: documents lost"
            );
        } else if left > 0 {
            tracing::info!(
                target = self.target.name(),
                documents = left,
                "siem: closing; undelivered documents kept in the disk buffer"
            );
        }
        if self.in_flight > 0 {
            // Their requests may still land; their rows are not in the buffer.
            tracing::warn!(
                target = self.target.name(),
                requests = self.in_flight,
                "siem: closing with requests unanswered"
            );
        }
        self.publish();
        CloseReport { buffered: self.buffer.pending(), lost: self.stats.lost() }
    }
}
