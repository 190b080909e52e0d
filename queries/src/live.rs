//! Live evaluation in `tracelake run`: events are appended to Arrow
//! builders of the tables the rules read (the lake's own builders), handed
//! as batches every `interval` (or `batch_rows`) to a detection thread that
//! runs the planned rules, and findings go to `FindingSink`s (log, lake,
//! and whatever comes next, e.g. Kafka).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use tracelake_model::Event;
use tracelake_model::json::{Identity, JsonContext};
use tracelake_sinks::parquet::{BatchBuilder, BatchKeys, LakeConfig, LakeWriter, Table, error_chain};

use crate::config::DetectionsConfig;
use crate::engine::RuleEngine;
use crate::finding::{Finding, findings_batch};
use crate::rule::{Rule, RuleError};

/// Where findings go. Called on the detection thread, in time order per round.
pub trait FindingSink: Send {
    fn findings(&mut self, rules: &[Rule], findings: &[Finding]);
    /// At shutdown: write what is buffered.
    fn close(&mut self) {}
}

/// Fills in what a finding's event did not know yet, then hands the findings to `sinks`. A container's first
/// events come before the runtime lookup has answered (`enrichment: partial`, no pod); by the time a rule fires
/// on them, a round later, the node usually knows the pod, and an alert without its pod and workload is the one
/// SOC teams cannot act on. `complete` gets each finding whose `pod` is missing but `container_id` is known.
pub struct CompletingSinks {
    complete: Box<dyn Fn(&mut Finding) + Send>,
    sinks: Vec<Box<dyn FindingSink>>,
}

impl CompletingSinks {
    pub fn new(complete: Box<dyn Fn(&mut Finding) + Send>, sinks: Vec<Box<dyn FindingSink>>) -> CompletingSinks {
        CompletingSinks { complete, sinks }
    }
}

impl std::fmt::Debug for CompletingSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletingSinks").field("sinks", &self.sinks.len()).finish()
    }
}

fn incomplete(f: &Finding) -> bool {
    f.get("pod").is_none() && f.get("container_id").is_some()
}

impl FindingSink for CompletingSinks {
    fn findings(&mut self, rules: &[Rule], findings: &[Finding]) {
        let completed: Vec<Finding>;
        let findings = if findings.iter().any(incomplete) {
            completed = findings
                .iter()
                .cloned()
                .map(|mut f| {
                    if incomplete(&f) {
                        (self.complete)(&mut f);
                    }
                    f
                })
                .collect();
            &completed[..]
        } else {
            findings
        };
        for s in &mut self.sinks {
            s.findings(rules, findings);
        }
    }

    fn close(&mut self) {
        for s in &mut self.sinks {
            s.close();
        }
    }
}

/// Logs each finding at WARN with its rule and identity.
#[derive(Debug, Default)]
pub struct LogFindings;

impl FindingSink for LogFindings {
    fn findings(&mut self, rules: &[Rule], findings: &[Finding]) {
        for f in findings {
            let r = &rules[f.rule];
            tracing::warn!(
                rule = %r.id,
                severity = %r.severity,
                tactic = %r.tactic,
                technique = %r.mitre,
                node = f.get("node").unwrap_or("-"),
                namespace = f.get("namespace").unwrap_or("-"),
                pod = f.get("pod").unwrap_or("-"),
                workload = f.get("workload").unwrap_or("-"),
                container_id = f.get("container_id").unwrap_or("-"),
                pid = f.pid.unwrap_or(0),
                exe = f.get("exe").unwrap_or("-"),
                events = f.event_ids.len(),
                "detection: {}",
                f.message
            );
        }
    }
}

/// Writes findings into the lake's `detection_finding` table (a writer of its own: the event sink never
/// writes that table). A failed write is logged and retried with the next findings.
#[derive(Debug)]
pub struct LakeFindings {
    writer: LakeWriter,
    pending: Vec<RecordBatch>,
    pub written: u64,
    pub lost: u64,
}

impl LakeFindings {
    pub fn open(cfg: &LakeConfig) -> Result<LakeFindings, tracelake_sinks::parquet::LakeError> {
        Ok(LakeFindings { writer: LakeWriter::new(cfg)?, pending: Vec::new(), written: 0, lost: 0 })
    }

    fn write_pending(&mut self) {
        while let Some(b) = self.pending.first() {
            match self.writer.write(Table::DetectionFinding, b) {
                Ok(files) => {
                    self.written += files.iter().map(|f| f.rows as u64).sum::<u64>();
                    self.pending.remove(0);
                }
                Err(partial) => {
                    tracing::error!(error = %error_chain(&partial.error), "detections: cannot write findings, kept for retry");
                    self.written += partial.written.iter().map(|f| f.rows as u64).sum::<u64>();
                    self.pending[0] = partial.unwritten;
                    return;
                }
            }
        }
    }
}

impl FindingSink for LakeFindings {
    fn findings(&mut self, rules: &[Rule], findings: &[Finding]) {
        match findings_batch(rules, findings) {
            Ok(b) => self.pending.push(b),
            Err(e) => {
                self.lost += findings.len() as u64;
                tracing::error!(error = %e, "detections: cannot build finding rows");
            }
        }
        self.write_pending();
    }

    fn close(&mut self) {
        self.write_pending();
        let rows: usize = self.pending.iter().map(RecordBatch::num_rows).sum();
        if rows > 0 {
            self.lost += rows as u64;
            tracing::error!(rows, "detections: findings lost, the lake could not be written");
        }
    }
}

/// Hands finding rows (`detection_finding` batches) to another thread: in agent mode the Kafka producer
/// lives on the sensor thread, which drains the receiver on every tick. Bounded: when the receiver stops
/// draining, findings are counted as lost and logged instead of piling up (they are in the log anyway).
#[derive(Debug)]
pub struct ChannelFindings {
    tx: SyncSender<RecordBatch>,
    lost: u64,
}

impl ChannelFindings {
    /// The sink and the receiving end; `capacity` batches (one per round with findings) may wait.
    pub fn new(capacity: usize) -> (ChannelFindings, Receiver<RecordBatch>) {
        let (tx, rx) = sync_channel(capacity.max(1));
        (ChannelFindings { tx, lost: 0 }, rx)
    }
}

impl FindingSink for ChannelFindings {
    fn findings(&mut self, rules: &[Rule], findings: &[Finding]) {
        let batch = match findings_batch(rules, findings) {
            Ok(b) => b,
            Err(e) => {
                self.lost += findings.len() as u64;
                tracing::error!(error = %e, "detections: cannot build finding rows");
                return;
            }
        };
        if let Err(e) = self.tx.try_send(batch) {
            let rows = match &e {
                TrySendError::Full(b) | TrySendError::Disconnected(b) => b.num_rows(),
            };
            self.lost += rows as u64;
            tracing::error!(
                rows,
                lost_total = self.lost,
                "detections: findings not forwarded (receiver behind or gone)"
            );
        }
    }
}

/// Why live detection could not start.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{} rule(s) failed to plan", .0.len())]
    Plan(Vec<RuleError>),
    #[error("cannot start the detection thread")]
    Thread(#[source] std::io::Error),
    #[error("behaviour profiles")]
    Profiles(#[source] crate::profile::ProfileFileError),
}

/// What the detection thread did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectStats {
    pub rounds: u64,
    pub events: u64,
    pub findings: u64,
    pub suppressed: u64,
    pub rule_errors: u64,
    /// Batches dropped because the detection thread was behind (events not evaluated live).
    pub batches_dropped: u64,
    pub events_dropped: u64,
    /// Rows windowed rules let go early because of `window_rows` (counted, logged once per rule).
    pub window_rows_dropped: u64,
}

/// The same counts as [`DetectStats`], live (the metrics exporter reads them while the detector runs), plus the
/// findings of each rule.
#[derive(Debug, Default)]
pub struct DetectCounters {
    pub rounds: AtomicU64,
    pub events: AtomicU64,
    pub findings: AtomicU64,
    pub suppressed: AtomicU64,
    pub rule_errors: AtomicU64,
    pub batches_dropped: AtomicU64,
    pub events_dropped: AtomicU64,
    pub window_rows_dropped: AtomicU64,
    /// Findings per rule id: every live rule, zeros included.
    pub per_rule: Mutex<BTreeMap<String, u64>>,
}

type Batches = Vec<(Table, RecordBatch)>;
use crate::profile::Profiles;

/// The sensor-side half: builders and the channel to the detection thread.
#[derive(Debug)]
pub struct LiveDetector {
    ctx: JsonContext<'static>,
    /// Indexed like `Table::EVENT_TABLES`; None for tables no rule reads.
    builders: [Option<BatchBuilder>; 5],
    rows: usize,
    last_send: Instant,
    cfg: DetectionsConfig,
    tx: Option<SyncSender<Batches>>,
    thread: Option<JoinHandle<DetectStats>>,
    batches_dropped: u64,
    events_dropped: u64,
    /// Hand every batch back too (`take_built`), for a sink that then need not build the rows again.
    share: bool,
    built: Vec<(Table, RecordBatch, BatchKeys)>,
    counters: Arc<DetectCounters>,
}

fn run_thread(
    rt: &tokio::runtime::Runtime,
    mut engine: RuleEngine,
    rx: Receiver<Batches>,
    mut sinks: Vec<Box<dyn FindingSink>>,
    counters: &DetectCounters,
    mut profiles: Option<Profiles>,
) -> DetectStats {
    let mut stats = DetectStats::default();
    // The SQL rules, then the profiles' anomaly rules: findings index this list.
    let mut all_rules = engine.rules().to_vec();
    if profiles.is_some() {
        all_rules.extend(crate::profile::rules());
    }
    if let Ok(mut per_rule) = counters.per_rule.lock() {
        per_rule.extend(all_rules.iter().map(|r| (r.id.clone(), 0)));
    }
    loop {
        // Windowed rules run at their own cadence: wake up for them when no batch comes.
        let (mut round, last) = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(batches) => {
                stats.rounds += 1;
                stats.events += batches.iter().map(|(_, b)| b.num_rows() as u64).sum::<u64>();
                let anomalies = profiles.as_mut().map(|p| p.observe(&batches)).unwrap_or_default();
                let mut round = rt.block_on(engine.evaluate(batches));
                round.findings.extend(anomalies);
                (round, false)
            }
            Err(RecvTimeoutError::Timeout) => (rt.block_on(engine.evaluate(Vec::new())), false),
            Err(RecvTimeoutError::Disconnected) => (rt.block_on(engine.flush()), true),
        };
        for (rule, error) in &round.errors {
            stats.rule_errors += 1;
            tracing::error!(rule = %rule, error = %error, "detections: rule failed on a batch");
        }
        if let Some(p) = profiles.as_mut() {
            p.save_when_due(last);
        }
        if !round.findings.is_empty() {
            stats.findings += round.findings.len() as u64;
            if let Ok(mut per_rule) = counters.per_rule.lock() {
                for f in &round.findings {
                    *per_rule.entry(all_rules[f.rule].id.clone()).or_default() += 1;
                }
            }
            for s in &mut sinks {
                s.findings(&all_rules, &round.findings);
            }
        }
        round.findings.clear();
        let set = |c: &AtomicU64, v: u64| c.store(v, Ordering::Relaxed);
        set(&counters.rounds, stats.rounds);
        set(&counters.events, stats.events);
        set(&counters.findings, stats.findings);
        set(&counters.rule_errors, stats.rule_errors);
        set(&counters.suppressed, engine.suppressed());
        set(&counters.window_rows_dropped, engine.window_rows_dropped());
        if last {
            break;
        }
    }
    for s in &mut sinks {
        s.close();
    }
    stats.suppressed = engine.suppressed();
    stats.window_rows_dropped = engine.window_rows_dropped();
    stats
}

impl LiveDetector {
    /// Plans the rules (every error at once) and starts the detection thread. Planning runs on that
    /// thread, in its own runtime, so this may be called from async code.
    pub fn start(
        rules: Vec<Rule>,
        cfg: &DetectionsConfig,
        ctx: JsonContext<'static>,
        sinks: Vec<Box<dyn FindingSink>>,
    ) -> Result<LiveDetector, DetectError> {
        let (tx, rx) = sync_channel::<Batches>(cfg.queue_batches.max(1));
        let window_rows = cfg.window_rows;
        let profile_cfg = cfg.profiles.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Vec<Table>, DetectError>>();
        let counters = Arc::new(DetectCounters::default());
        let live = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("tl-detect".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(DetectError::Thread(e)));
                        return DetectStats::default();
                    }
                };
                match rt.block_on(RuleEngine::new(rules)) {
                    Ok(mut engine) => {
                        engine.set_window_rows(window_rows);
                        let profiles = match Profiles::open(&profile_cfg, engine.rules().len()) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = ready_tx.send(Err(DetectError::Profiles(e)));
                                return DetectStats::default();
                            }
                        };
                        let mut tables = engine.tables();
                        if profiles.is_some() {
                            // What profiles learn from, whether or not a rule reads it.
                            for t in [
                                Table::ProcessActivity,
                                Table::NetworkActivity,
                                Table::FileActivity,
                                Table::KernelActivity,
                            ] {
                                if !tables.contains(&t) {
                                    tables.push(t);
                                }
                            }
                        }
                        let _ = ready_tx.send(Ok(tables));
                        run_thread(&rt, engine, rx, sinks, &live, profiles)
                    }
                    Err(errors) => {
                        let _ = ready_tx.send(Err(DetectError::Plan(errors)));
                        DetectStats::default()
                    }
                }
            })
            .map_err(DetectError::Thread)?;
        let wanted = match ready_rx.recv() {
            Ok(Ok(tables)) => tables,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(DetectError::Thread(std::io::Error::other("the detection thread ended while planning")));
            }
        };
        let builders = Table::EVENT_TABLES.map(|t| if wanted.contains(&t) { BatchBuilder::new(t) } else { None });
        Ok(LiveDetector {
            ctx,
            builders,
            rows: 0,
            last_send: Instant::now(),
            cfg: cfg.clone(),
            tx: Some(tx),
            thread: Some(thread),
            batches_dropped: 0,
            events_dropped: 0,
            share: false,
            built: Vec::new(),
            counters,
        })
    }

    /// The live counts, for the metrics exporter.
    pub fn counters(&self) -> Arc<DetectCounters> {
        Arc::clone(&self.counters)
    }

    /// From now on every batch built is also handed back by `take_built` (the lake sink writes those
    /// instead of building the same rows again).
    pub fn share_batches(&mut self) {
        self.share = true;
    }

    /// Appends an enriched event to its table's builder (if a rule reads that table). True when its row will
    /// come back through `take_built`.
    pub fn push(&mut self, ev: &Event<'_>, id: &Identity<'_>) -> bool {
        let t = Table::of(ev);
        let Some(i) = Table::EVENT_TABLES.iter().position(|x| *x == t) else { return false };
        let Some(b) = &mut self.builders[i] else { return false };
        b.append(&self.ctx, ev, id);
        self.rows += 1;
        if self.rows >= self.cfg.batch_rows {
            self.send();
        }
        self.share
    }

    /// The batches built since the last call (only with `share_batches`).
    /// Each comes with the keys of its string and process columns, which the lake encodes them from.
    pub fn take_built(&mut self) -> Vec<(Table, RecordBatch, BatchKeys)> {
        std::mem::take(&mut self.built)
    }

    /// Hands what is buffered to the rules now (at shutdown, before the sink that takes the shared batches
    /// closes).
    pub fn send_buffered(&mut self) {
        self.send();
    }

    /// Hands the buffered events over once `interval` has passed; call about every second.
    pub fn tick(&mut self) {
        if self.last_send.elapsed() >= self.cfg.interval {
            self.send();
        }
    }

    fn send(&mut self) {
        self.last_send = Instant::now();
        if self.rows == 0 {
            return;
        }
        let mut batches = Vec::new();
        for b in self.builders.iter_mut().flatten() {
            if b.is_empty() {
                continue;
            }
            let built = if self.share {
                // Array data is shared, not copied.
                b.finish_with_keys().map(|(batch, keys)| {
                    self.built.push((b.table(), batch.clone(), keys));
                    batch
                })
            } else {
                b.finish()
            };
            match built {
                Ok(batch) => batches.push((b.table(), batch)),
                Err(e) => tracing::error!(error = %error_chain(&e), "detections: cannot build a batch"),
            }
        }
        let rows = std::mem::take(&mut self.rows);
        let Some(tx) = &self.tx else { return };
        match tx.try_send(batches) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.batches_dropped += 1;
                self.events_dropped += rows as u64;
                self.counters.batches_dropped.store(self.batches_dropped, Ordering::Relaxed);
                self.counters.events_dropped.store(self.events_dropped, Ordering::Relaxed);
                tracing::warn!(
                    events = rows,
                    dropped_total = self.events_dropped,
                    "detections behind: a batch was not evaluated live (it is in the lake for `tracelake hunt`)"
                );
            }
        }
    }

    /// Evaluates what is buffered, waits for the detection thread and closes the sinks.
    pub fn close(mut self) -> DetectStats {
        self.send();
        drop(self.tx.take());
        let mut stats = self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default();
        stats.batches_dropped = self.batches_dropped;
        stats.events_dropped = self.events_dropped;
        stats
    }
}
