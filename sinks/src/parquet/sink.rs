//! The lake sink: enriched events → Arrow builders per table → Parquet files.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use tracelake_model::Event;
use tracelake_model::json::{Identity, JsonContext};

use super::LakeConfig;
use super::batch::{BatchBuilder, BatchKeys, data_bytes};
use super::dict_chunk::Dictionaries;
use super::maintain::{self, MaintenanceReport};
use super::schema::Table;
use super::writer::{LakeError, LakeWriter};

/// Counters of the lake sink: what was written, kept for retry, or lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LakeStats {
    /// Events appended to the builders.
    pub rows_buffered: u64,
    /// Rows in visible files.
    pub rows_written: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    /// Failed file writes (each logged with its cause).
    pub write_errors: u64,
    /// Rows whose write failed, kept in memory for a retry.
    pub rows_pending: u64,
    /// Rows given up on (retry memory full, or still failing at close); logged as errors.
    pub rows_lost: u64,
    pub maintenance: MaintenanceReport,
}

/// Rows of one event table being gathered for the next file.
#[derive(Debug)]
struct Buffer {
    rows: BatchBuilder,
    /// Batches of this table another part of the node built already (the live detector's), in order, with
    /// their keys when the builder gave them.
    built: Vec<(RecordBatch, Option<Dictionaries>)>,
    /// Estimated bytes of both.
    bytes: usize,
    /// When the oldest buffered row arrived.
    since: Option<Instant>,
}

impl Buffer {
    fn rows(&self) -> usize {
        self.rows.rows() + self.built.iter().map(|(b, _)| b.num_rows()).sum::<usize>()
    }

    /// The buffered rows as one batch; when they are all this builder's, with its dictionaries.
    fn take_batch(&mut self) -> Result<(RecordBatch, Option<Dictionaries>), LakeError> {
        self.bytes = 0;
        self.since = None;
        let mut parts = std::mem::take(&mut self.built);
        if parts.is_empty() {
            return self.rows.finish_keyed(true);
        }
        if !self.rows.is_empty() {
            parts.push(self.rows.finish_keyed(true)?);
        }
        if parts.len() == 1 {
            return Ok(parts.swap_remove(0));
        }
        // The detector's batches and this builder's rows: their keyed columns encoded from the keys merged.
        let table = self.rows.table();
        Dictionaries::join(&table.schema(), &parts).map_err(|source| LakeError::Arrow { table: table.name(), source })
    }
}

#[derive(Debug)]
struct Pending {
    table: Table,
    batch: RecordBatch,
    bytes: usize,
}

/// Writes enriched events into the lake. Single-threaded: the caller (the
/// sensor's reader task) appends, and files are written on its thread when
/// a table's buffer is full or old, on `tick`, and on `flush`/`close`.
#[derive(Debug)]
pub struct LakeSink {
    cfg: LakeConfig,
    ctx: JsonContext<'static>,
    writer: LakeWriter,
    buffers: [Buffer; 5],
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    last_error: Option<LakeError>,
    stats: LakeStats,
    next_tick: Instant,
    next_maintenance: Instant,
    /// Events since the clock was last read (it is read every 1024).
    since_check: u32,
}

fn slot(table: Table) -> usize {
    match table {
        Table::ProcessActivity => 0,
        Table::FileActivity => 1,
        Table::NetworkActivity => 2,
        Table::DnsActivity => 3,
        Table::KernelActivity => 4,
        // No event goes there (`Table::of`); kept apart so a mistake shows.
        Table::DetectionFinding | Table::IpOwnership => usize::MAX,
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl LakeSink {
    /// Opens the lake: recovers what a crash left (temporary files, half
    /// finished compactions), then runs retention and compaction once.
    pub fn open(cfg: &LakeConfig, ctx: JsonContext<'static>) -> Result<LakeSink, LakeError> {
        if cfg.rotate_bytes == 0 || cfg.flush_interval.is_zero() || cfg.rotate_age.is_zero() {
            return Err(LakeError::Config("rotate_bytes, rotate_age and flush_interval must be above 0".into()));
        }
        let writer = LakeWriter::new(cfg)?;
        let recovered = maintain::recover(writer.root())?;
        if recovered.temp_files_removed + recovered.compacted_sources_removed > 0 {
            tracing::warn!(
                temp_files = recovered.temp_files_removed,
                compacted_sources = recovered.compacted_sources_removed,
                "lake: removed what an interrupted run left"
            );
        }
        let buffers = Table::EVENT_TABLES.map(|table| Buffer {
            rows: BatchBuilder::for_event_table(table),
            built: Vec::new(),
            bytes: 0,
            since: None,
        });
        let now = Instant::now();
        let mut sink = LakeSink {
            cfg: cfg.clone(),
            ctx,
            writer,
            buffers,
            pending: VecDeque::new(),
            pending_bytes: 0,
            last_error: None,
            stats: LakeStats { maintenance: recovered, ..LakeStats::default() },
            next_tick: now + cfg.flush_interval,
            next_maintenance: now,
            since_check: 0,
        };
        sink.maintain_if_due(now);
        Ok(sink)
    }

    /// Appends one event with the identity the enricher resolved for it.
    pub fn push_with(&mut self, ev: &Event<'_>, id: &Identity<'_>) {
        let i = slot(Table::of(ev));
        let buf = &mut self.buffers[i];
        if buf.since.is_none() {
            buf.since = Some(Instant::now());
        }
        buf.bytes += buf.rows.append(&self.ctx, ev, id);
        self.stats.rows_buffered += 1;
        if buf.bytes >= self.cfg.rotate_bytes {
            self.flush_slot(i);
        }
        self.since_check += 1;
        if self.since_check >= 1024 {
            self.since_check = 0;
            self.tick();
        }
    }

    /// Buffers an event batch the node built already (the live detector shares its batches, so rows are built
    /// once) like pushed events: written with the table's next file, by size or age.
    pub fn push_built(&mut self, table: Table, batch: RecordBatch) {
        self.push_built_with(table, batch, None);
    }

    /// As `push_built`, with the keys the batch was built from (`BatchBuilder::finish_with_keys`): its keyed
    /// columns are then encoded from the keys, as the sink's own rows are.
    pub fn push_built_keyed(&mut self, table: Table, batch: RecordBatch, keys: BatchKeys) {
        self.push_built_with(table, batch, Some(keys.0));
    }

    fn push_built_with(&mut self, table: Table, batch: RecordBatch, keys: Option<Dictionaries>) {
        let i = slot(table);
        if i >= self.buffers.len() || batch.num_rows() == 0 {
            self.push_batch(table, batch);
            return;
        }
        let buf = &mut self.buffers[i];
        buf.since.get_or_insert_with(Instant::now);
        buf.bytes += data_bytes(&batch);
        self.stats.rows_buffered += batch.num_rows() as u64;
        buf.built.push((batch, keys));
        if buf.bytes >= self.cfg.rotate_bytes {
            self.flush_slot(i);
        }
    }

    /// Writes a batch another producer built (IP history rows, findings) in
    /// the table's schema, behind any earlier batches still waiting for a
    /// retry; a failed write keeps it for the retry like buffered rows.
    pub fn push_batch(&mut self, table: Table, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        self.stats.rows_buffered += batch.num_rows() as u64;
        self.retry_pending();
        if self.pending.is_empty() {
            self.write(table, batch, None);
        } else {
            self.keep(table, batch);
        }
    }

    /// Appends one event without identity.
    pub fn push(&mut self, ev: &Event<'_>) {
        self.push_with(ev, &Identity::default());
    }

    /// Time-driven work: writes buffers older than `rotate_age`, retries
    /// failed writes, runs retention and compaction when due. Cheap when
    /// nothing is due; call it about every `flush_interval`.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.cfg.flush_interval;
        for i in 0..self.buffers.len() {
            if self.buffers[i].since.is_some_and(|t| now.duration_since(t) >= self.cfg.rotate_age) {
                self.flush_slot(i);
            }
        }
        self.retry_pending();
        self.maintain_if_due(now);
    }

    fn maintain_if_due(&mut self, now: Instant) {
        if now < self.next_maintenance {
            return;
        }
        self.next_maintenance = now + self.cfg.maintenance_interval;
        match self.maintain() {
            Ok(r) => {
                if r.partitions_dropped + r.compactions > 0 {
                    tracing::info!(dropped = r.partitions_dropped, compacted = r.files_compacted, "lake maintenance");
                }
            }
            Err(e) => tracing::error!(error = %error_chain(&e), "lake maintenance failed"),
        }
    }

    /// Retention then compaction, now.
    pub fn maintain(&mut self) -> Result<MaintenanceReport, LakeError> {
        let now = now_ns();
        let r = maintain::retention(self.writer.root(), &self.cfg, now)?;
        let c = maintain::compact(&mut self.writer, &self.cfg, now)?;
        let m = &mut self.stats.maintenance;
        m.partitions_dropped += r.partitions_dropped;
        m.files_compacted += c.files_compacted;
        m.compactions += c.compactions;
        Ok(MaintenanceReport { files_compacted: c.files_compacted, compactions: c.compactions, ..r })
    }

    fn flush_slot(&mut self, i: usize) {
        let buf = &mut self.buffers[i];
        if buf.rows() == 0 {
            return;
        }
        let table = buf.rows.table();
        match buf.take_batch() {
            // Earlier failures go first so files keep their order.
            Ok((batch, dicts)) => {
                self.retry_pending();
                if self.pending.is_empty() {
                    self.write(table, batch, dicts.as_ref());
                } else {
                    // A retry writes it without its dictionaries: its keyed columns are placeholders until
                    // gathered.
                    let batch = match dicts {
                        Some(d) => d.materialize(&batch, 0),
                        None => batch,
                    };
                    self.keep(table, batch);
                }
            }
            Err(e) => {
                // Only a bug in the builders gets here: the rows are gone, and said so.
                tracing::error!(error = %error_chain(&e), "lake: rows lost");
                self.last_error = Some(e);
            }
        }
    }

    /// Writes one batch; on failure keeps what was not written for a retry.
    fn write(&mut self, table: Table, batch: RecordBatch, dicts: Option<&Dictionaries>) -> bool {
        match self.writer.write_with(table, &batch, dicts, &[]) {
            Ok(files) => {
                self.count_written(&files);
                true
            }
            Err(partial) => {
                let partial = *partial;
                self.count_written(&partial.written);
                self.stats.write_errors += 1;
                tracing::error!(
                    table = table.name(),
                    rows = partial.unwritten.num_rows(),
                    error = %error_chain(&partial.error),
                    "lake: write failed, rows kept for retry"
                );
                self.last_error = Some(partial.error);
                self.keep(table, partial.unwritten);
                false
            }
        }
    }

    fn count_written(&mut self, files: &[super::WrittenFile]) {
        for f in files {
            self.stats.rows_written += f.rows as u64;
            self.stats.files_written += 1;
            self.stats.bytes_written += f.bytes;
        }
    }

    fn keep(&mut self, table: Table, batch: RecordBatch) {
        let bytes = data_bytes(&batch);
        self.stats.rows_pending += batch.num_rows() as u64;
        self.pending_bytes += bytes;
        self.pending.push_back(Pending { table, batch, bytes });
        while self.pending_bytes > self.cfg.retry_max_bytes && self.pending.len() > 1 {
            if let Some(p) = self.pending.pop_front() {
                self.drop_pending(&p, "retry memory full");
            }
        }
    }

    fn drop_pending(&mut self, p: &Pending, why: &str) {
        let rows = p.batch.num_rows() as u64;
        self.pending_bytes -= p.bytes;
        self.stats.rows_pending -= rows;
        self.stats.rows_lost += rows;
        tracing::error!(table = p.table.name(), rows, why, "lake: rows lost");
    }

    /// Retries kept batches in order; stops at the first that fails again.
    fn retry_pending(&mut self) {
        while let Some(p) = self.pending.pop_front() {
            self.pending_bytes -= p.bytes;
            self.stats.rows_pending -= p.batch.num_rows() as u64;
            if !self.write(p.table, p.batch, None) {
                // `write` queued the rest at the back; it belongs in front.
                if let Some(back) = self.pending.pop_back() {
                    self.pending.push_front(back);
                }
                return;
            }
        }
    }

    /// Writes everything buffered. An error says how many rows are still
    /// pending (kept for retry) or lost.
    pub fn flush(&mut self) -> Result<(), LakeError> {
        for i in 0..self.buffers.len() {
            self.flush_slot(i);
        }
        self.retry_pending();
        if self.pending.is_empty() && self.stats.rows_lost == 0 {
            return Ok(());
        }
        Err(LakeError::Unwritten {
            rows: self.stats.rows_pending + self.stats.rows_lost,
            lost: self.stats.rows_lost,
            pending: self.stats.rows_pending,
            last: self.last_error.take().map(Box::new),
        })
    }

    /// Flushes, retrying failed writes a few times, and reports. Rows that
    /// still cannot be written are counted as lost and make this an error.
    pub fn close(mut self, retries: u32, backoff: Duration) -> Result<LakeStats, LakeError> {
        let mut result = self.flush();
        for _ in 0..retries {
            if self.pending.is_empty() {
                break;
            }
            std::thread::sleep(backoff);
            result = self.flush();
        }
        let last = match result {
            Ok(()) => return Ok(self.stats),
            Err(LakeError::Unwritten { last, .. }) => last,
            Err(e) => Some(Box::new(e)),
        };
        while let Some(p) = self.pending.pop_front() {
            self.drop_pending(&p, "still failing at shutdown");
        }
        let lost = self.stats.rows_lost;
        Err(LakeError::Unwritten { rows: lost, lost, pending: 0, last })
    }

    pub fn stats(&self) -> LakeStats {
        self.stats
    }

    /// Rows in the builders, not yet written.
    pub fn buffered_rows(&self) -> usize {
        self.buffers.iter().map(Buffer::rows).sum()
    }
}

/// An error with its causes, for logs.
pub use tracelake_model::error_chain;
