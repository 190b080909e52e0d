//! `Forwarder`: the API the lake's writers call (`push`, `acked_up_to`, `close`) and the threads behind it.
//! The coordinator (`worker.rs`) selects and renders rows, batches documents, hands requests to `concurrency`
//! sender threads, and keeps the at-least-once books.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use super::buffer::DiskBuffer;
use super::deadletter::DeadLetters;
use super::http::Http;
use super::stats::{ForwardStats, add};
use super::worker::{Event, Job, Worker};
use super::{BufferConfig, DeliveryConfig, ForwardError, Selection, SendError, Target};
use crate::parquet::Table;

/// How a forwarder runs, beside its target.
#[derive(Debug)]
pub struct Options {
    pub delivery: DeliveryConfig,
    pub buffer: BufferConfig,
    /// `buffer.dir` and `delivery.dead_letter_dir` with the target's defaults applied.
    pub buffer_dir: PathBuf,
    pub dead_letter_dir: PathBuf,
    pub selection: Selection,
    /// How often indexer acknowledgements are asked for (HEC).
    pub ack_interval: Duration,
    /// A request not acknowledged this long after it was taken is sent again (HEC).
    pub ack_timeout: Duration,
}

/// What `close` left behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Documents left in the disk buffer for the next start.
    pub buffered: u64,
    /// Documents lost for good over the forwarder's life (`ForwardStats::lost`).
    pub lost: u64,
}

/// Bounds what `push` may queue before the coordinator took it.
#[derive(Debug)]
pub(super) struct Gate {
    state: Mutex<GateState>,
    room: Condvar,
    cap: usize,
}

#[derive(Debug)]
struct GateState {
    queued: usize,
    next: u64,
    open: bool,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The coordinator took `bytes` off the queue.
    pub(super) fn release(&self, bytes: usize) {
        let mut g = self.lock();
        g.queued = g.queued.saturating_sub(bytes);
        self.room.notify_all();
    }

    fn shut(&self) {
        self.lock().open = false;
        self.room.notify_all();
    }
}

/// Forwards lake rows to one SIEM. `push` may be called from several threads (the event and the finding
/// writers of `tracelake run`).
#[derive(Debug)]
pub struct Forwarder {
    name: &'static str,
    events: Mutex<Sender<Event>>,
    gate: Arc<Gate>,
    acked: Arc<AtomicU64>,
    stats: Arc<ForwardStats>,
    worker: Mutex<Option<JoinHandle<CloseReport>>>,
}

impl Forwarder {
    /// Opens the disk buffer and the dead-letter directory, checks the credentials (a rejected token fails
    /// here; a SIEM that is away does not), and starts the threads. Documents left in the buffer by an earlier
    /// run are sent first.
    pub fn open(target: Arc<dyn Target>, opts: Options) -> Result<Forwarder, ForwardError> {
        let name = target.name();
        opts.delivery.validate(name)?;
        opts.buffer.validate(name)?;
        let stats = Arc::new(ForwardStats::default());
        let b = &opts.buffer;
        let buffer = DiskBuffer::open(&opts.buffer_dir, b.max_bytes, b.segment_bytes, b.when_full)?;
        add(&stats.buffer_truncated_bytes, buffer.truncated_bytes);
        if buffer.pending() > 0 {
            tracing::info!(target = name, documents = buffer.pending(), "siem: sending what the disk buffer kept");
        }
        let dead = DeadLetters::open(&opts.dead_letter_dir, name)?;
        check(&target)?;
        let (tx, rx) = channel::<Event>();
        let (jobs_tx, jobs_rx) = channel::<Job>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        // One sender more than `concurrency`: acknowledgement polls never wait behind requests.
        for i in 0..=opts.delivery.concurrency {
            let (target, jobs, done) = (Arc::clone(&target), Arc::clone(&jobs_rx), tx.clone());
            std::thread::Builder::new()
                .name(format!("tl-siem-{i}"))
                .spawn(move || sender(&*target, &jobs, &done))
                .map_err(|e| ForwardError::Http(format!("cannot start a sender thread: {e}")))?;
        }
        let gate = Arc::new(Gate {
            state: Mutex::new(GateState { queued: 0, next: 1, open: true }),
            room: Condvar::new(),
            cap: (opts.buffer.memory_max_bytes / 2).max(1),
        });
        let acked = Arc::new(AtomicU64::new(0));
        let worker = Worker::new(
            Arc::clone(&target),
            opts,
            buffer,
            dead,
            jobs_tx,
            Arc::clone(&gate),
            Arc::clone(&acked),
            Arc::clone(&stats),
        );
        let handle = std::thread::Builder::new()
            .name(format!("tl-{name}"))
            .spawn(move || worker.run(&rx))
            .map_err(|e| ForwardError::Http(format!("cannot start the forwarder thread: {e}")))?;
        Ok(Forwarder { name, events: Mutex::new(tx), gate, acked, stats, worker: Mutex::new(Some(handle)) })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Queues the rows of `batch` (a batch of `table`); returns its ticket. Blocks while the queue is full
    /// (backpressure: the coordinator spills to disk within `buffer.spill_after`, so this waits that long at
    /// most, unless the disk buffer is full with `when_full = block`).
    pub fn push(&self, table: Table, batch: &RecordBatch) -> u64 {
        let bytes = batch.get_array_memory_size();
        let mut g = self.gate.lock();
        let start = Instant::now();
        // One batch is always let through, however large, so a big flush cannot wait forever.
        while g.open && g.queued > 0 && g.queued + bytes > self.gate.cap {
            g = self.gate.room.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let waited = start.elapsed();
        if waited >= Duration::from_millis(1) {
            add(&self.stats.push_wait_ms, waited.as_millis() as u64);
        }
        let ticket = g.next;
        g.next += 1;
        add(&self.stats.rows_in, batch.num_rows() as u64);
        if !g.open {
            // Closed: nothing will forward it; the ticket never passes `acked_up_to`.
            return ticket;
        }
        g.queued += bytes;
        let sent = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(Event::Rows {
            ticket,
            table,
            batch: batch.clone(),
            bytes,
        });
        if sent.is_err() {
            g.queued -= bytes;
            tracing::error!(target = self.name, "siem: the forwarder thread is gone; rows not forwarded");
        }
        ticket
    }

    /// Every ticket up to this one is safe: delivered, dead-lettered, or durably in the disk buffer.
    pub fn acked_up_to(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// The newest ticket handed out.
    pub fn last_ticket(&self) -> u64 {
        self.gate.lock().next - 1
    }

    /// Waits until `ticket` is safe; false on timeout.
    pub fn wait_for(&self, ticket: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.acked_up_to() < ticket {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    pub fn stats(&self) -> Arc<ForwardStats> {
        Arc::clone(&self.stats)
    }

    /// Sends what it can within `timeout`, then writes what is left to the disk buffer (sent at the next
    /// start). Later pushes are not forwarded.
    pub fn close(&self, timeout: Duration) -> CloseReport {
        self.gate.shut();
        let deadline = Instant::now() + timeout;
        let _ = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(Event::Close(deadline));
        let handle = self.worker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match handle.map(JoinHandle::join) {
            Some(Ok(report)) => report,
            Some(Err(_)) => {
                tracing::error!(target = self.name, "siem: the forwarder thread panicked");
                CloseReport { buffered: 0, lost: self.stats.lost() }
            }
            None => CloseReport { buffered: 0, lost: self.stats.lost() },
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if self.worker.get_mut().is_ok_and(|w| w.is_some()) {
            self.close(Duration::from_secs(5));
        }
    }
}

/// The start check, on a thread of its own (see `http.rs`).
fn check(target: &Arc<dyn Target>) -> Result<(), ForwardError> {
    let t = Arc::clone(target);
    let name = target.name();
    let joined = std::thread::spawn(move || {
        let (tls, timeout) = t.http_settings();
        let http = Http::new(tls, timeout.min(Duration::from_secs(10)))?;
        match t.check(&http) {
            Ok(()) => Ok(()),
            Err(SendError::Auth(detail)) => Err(ForwardError::Auth { target: t.name(), detail }),
            Err(SendError::Retry(why) | SendError::Rejected(why)) => {
                tracing::warn!(target = t.name(), error = %why, "siem: not reachable at start; rows wait until it is");
                Ok(())
            }
        }
    })
    .join();
    joined.unwrap_or_else(|_| Err(ForwardError::Http(format!("{name}: the start check panicked"))))
}

/// A sender thread: takes jobs, answers through the coordinator's channel, until either side is gone.
fn sender(target: &dyn Target, jobs: &Mutex<Receiver<Job>>, done: &Sender<Event>) {
    let (tls, timeout) = target.http_settings();
    let http = match Http::new(tls, timeout) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "siem: cannot build the HTTP client of a sender thread");
            return;
        }
    };
    loop {
        let job = match jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let event = match job {
            Job::Send { docs } => {
                let bodies: Vec<&[u8]> = docs.iter().map(|d| d.body.as_slice()).collect();
                let result = target.send(&http, &bodies);
                let wire_bytes = http.wire_bytes.swap(0, std::sync::atomic::Ordering::Relaxed);
                Event::Sent { docs, result, wire_bytes }
            }
            Job::PollAcks(ids) => {
                let result = target.poll_acks(&http, &ids);
                Event::Acks { asked: ids, result }
            }
        };
        if done.send(event).is_err() {
            return;
        }
    }
}
