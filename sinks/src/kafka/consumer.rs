//! The lake side: consumes the table topics in a consumer group, drops
//! duplicate event ids, writes Parquet files with `LakeWriter`, and commits
//! a partition's offsets only after the file holding its rows is durable
//! (renamed and its directory fsynced): at-least-once, made exactly-once in
//! the lake by the dedupe window (docs/kafka.md).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::journal::{self, Journal};
use super::resume::{self, Checks, Verdict};
use super::stats::{ConsumerStats, add};
use super::wire;
use super::{KafkaConfig, KafkaError, LakeServiceConfig, TopicKeeper};
use crate::parquet::batch::data_bytes;
use crate::parquet::dict_chunk::Dictionaries;
use crate::parquet::{BatchBuilder, BatchKeys, LakeConfig, LakeWriter, Table, error_chain, maintain};

const POLL: Duration = Duration::from_millis(100);

/// Set to stop `LakeConsumer::run` (from a signal handler thread or a test).
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The most recent event ids of a table, oldest forgotten first.
#[derive(Debug)]
struct Recent {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

impl Recent {
    fn new(cap: usize) -> Recent {
        Recent { set: HashSet::new(), order: VecDeque::new(), cap: cap.max(1) }
    }

    /// False when `id` was seen already.
    fn insert(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Rows of one table waiting for their file.
#[derive(Debug)]
struct Pending {
    table: Table,
    topic: String,
    /// With the keys of their keyed columns, for the rows of records messages.
    batches: Vec<(RecordBatch, Option<Dictionaries>)>,
    rows: usize,
    bytes: usize,
    since: Option<Instant>,
    /// Next offset per partition, committed once the rows before it are durable, with the fingerprint of the
    /// message before it (`resume`).
    offsets: HashMap<i32, (i64, u64)>,
    recent: Recent,
    /// Builders for the rows of records messages, kept from message to message.
    builder: Option<BatchBuilder>,
}

#[derive(Debug)]
struct State {
    cfg: LakeServiceConfig,
    writer: LakeWriter,
    tables: Vec<Pending>,
    stats: Arc<ConsumerStats>,
    /// Files modified since this were not read into the dedupe sets yet (unless this process wrote them).
    seeded_at: SystemTime,
    /// Files this process wrote since `seeded_at`: their ids are in the sets already.
    own_files: HashSet<PathBuf>,
    /// Where each commit's fingerprint goes before the commit (`resume`).
    journal: Journal,
    /// SIEM forwarders (docs/siem.md): rows pushed as consumed; a file and its commit wait until they are safe.
    siem: super::siem::SiemGate,
}

/// Holds the state so a revoke can write and commit before partitions move.
struct LakeContext {
    state: Arc<Mutex<State>>,
    /// Set when every broker was lost: the cluster that comes back may have lost its logs and offsets.
    brokers_lost: AtomicBool,
    /// Set when partitions were assigned: other processes' recent files must be in the dedupe sets first.
    reseed: AtomicBool,
    /// Assigned partitions whose committed offsets are still to be checked against their logs.
    checks: Checks,
    stats: Arc<ConsumerStats>,
}

impl ClientContext for LakeContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        super::client::log_client(level, fac, msg);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_lost.store(true, Ordering::Relaxed);
        }
        tracing::warn!(error = %error, reason, "kafka consumer error");
    }
}

impl ConsumerContext for LakeContext {
    // In place of rdkafka's default, which assigns the partitions as they come: each one starts where its
    // committed offset can be checked (`resume`).
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let done = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.checks.plan(consumer, tpl, &self.stats);
                // The process that had these partitions may have renamed a file and died before committing,
                // and those messages come again: `run` loads the lake's new ids before taking any message.
                // Not here: librdkafka can call back from inside a commit, while `flush` holds the state.
                self.reseed.store(true, Ordering::Relaxed);
                tracing::info!(partitions = tpl.count(), "lake: partitions assigned");
                if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "lake: partitions revoked, writing what they gave");
                // librdkafka can call back from inside this thread's own commit, while `flush` holds the state:
                // `lock` would wait on itself for ever. Busy means that flush is writing already.
                if let Ok(mut s) = self.state.try_lock() {
                    s.flush_all(consumer);
                }
                self.checks.forget(tpl);
                if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() }
            }
            other => {
                tracing::warn!(error = ?other, "lake: rebalance error");
                consumer.unassign()
            }
        };
        if let Err(e) = done {
            tracing::error!(error = %e, "lake: cannot apply the group's assignment");
        }
    }
}

/// `tracelake lake`: Kafka → Parquet lake.
pub struct LakeConsumer {
    consumer: BaseConsumer<LakeContext>,
    state: Arc<Mutex<State>>,
    stats: Arc<ConsumerStats>,
    lake_cfg: LakeConfig,
    topics: Vec<String>,
    _topics: Option<TopicKeeper>,
}

impl std::fmt::Debug for LakeConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeConsumer").field("lake", &self.lake_cfg.dir).finish()
    }
}

impl LakeConsumer {
    /// Recovers the lake (temporary files of a killed writer), loads recent ids, subscribes.
    pub fn open(kafka: &KafkaConfig, cfg: &LakeServiceConfig, lake: &LakeConfig) -> Result<LakeConsumer, KafkaError> {
        kafka.validate()?;
        let writer = LakeWriter::new(lake).map_err(KafkaError::Lake)?;
        let rec = maintain::recover(writer.root()).map_err(KafkaError::Lake)?;
        if rec.temp_files_removed > 0 {
            tracing::warn!(files = rec.temp_files_removed, "lake: removed temporary files an interrupted run left");
        }
        let stats = Arc::new(ConsumerStats::default());
        let mut tables = Vec::new();
        for t in super::TABLES {
            let recent = Recent::new(cfg.dedupe_ids);
            tables.push(Pending {
                table: t,
                topic: kafka.topic(t),
                batches: Vec::new(),
                rows: 0,
                bytes: 0,
                since: None,
                offsets: HashMap::new(),
                recent,
                builder: None,
            });
        }
        let seeded_at = SystemTime::now().checked_sub(cfg.dedupe_seed_age).unwrap_or(SystemTime::UNIX_EPOCH);
        let journal_dir = journal::dir(writer.root(), &cfg.group_id);
        let journal = Journal::open(&journal_dir).map_err(|source| KafkaError::Io {
            what: "cannot open the commit journal",
            path: journal_dir.clone(),
            source,
        })?;
        let mut state = State {
            cfg: cfg.clone(),
            writer,
            tables,
            stats: stats.clone(),
            seeded_at,
            own_files: HashSet::new(),
            journal,
            siem: super::siem::SiemGate::default(),
        };
        state.reseed();
        let state = Arc::new(Mutex::new(state));
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let client_id = format!("tracelake-lake-{}", host.trim());
        let keeper = if kafka.create_topics { Some(TopicKeeper::start(kafka, &client_id)?) } else { None };
        let mut c = kafka.client_properties(&client_id)?;
        c.set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", cfg.session_timeout.as_millis().to_string())
            .set("heartbeat.interval.ms", (cfg.session_timeout.as_millis() / 4).max(100).to_string())
            .set("fetch.message.max.bytes", (kafka.message_max_bytes + 64 * 1024).to_string())
            .set("topic.metadata.refresh.interval.ms", "2000");
        if let Some(id) = &cfg.instance_id {
            c.set("group.instance.id", id);
        }
        for (k, v) in &kafka.properties {
            c.set(k, v);
        }
        let consumer: BaseConsumer<LakeContext> = c
            .create_with_context(LakeContext {
                state: state.clone(),
                brokers_lost: AtomicBool::new(false),
                reseed: AtomicBool::new(false),
                checks: Checks::new(journal_dir),
                stats: stats.clone(),
            })
            .map_err(KafkaError::Client)?;
        let topics: Vec<String> = super::TABLES.iter().map(|t| kafka.topic(*t)).collect();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs).map_err(KafkaError::Client)?;
        Ok(LakeConsumer { consumer, state, stats, lake_cfg: lake.clone(), topics, _topics: keeper })
    }

    /// Forwards every table's new rows to these SIEM forwarders, each with how long a flush may wait for it
    /// (docs/siem.md); call before `run`.
    #[cfg(feature = "siem")]
    pub fn forward_to(&mut self, forwarders: Vec<(Arc<crate::forward::Forwarder>, Duration)>) {
        let mut s = self.state();
        let n = s.tables.len();
        s.siem = super::siem::SiemGate::new(forwarders, n);
    }

    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Consumes until `stop` is set, then writes what it holds and commits.
    pub fn run(&mut self, stop: &StopFlag) -> Arc<ConsumerStats> {
        let mut next_status = Instant::now() + Duration::from_secs(10);
        let mut next_maintenance = Instant::now();
        while !stop.is_set() {
            let polled = self.consumer.poll(POLL);
            add(&self.stats.polls, 1);
            if self.consumer.context().reseed.swap(false, Ordering::Relaxed) {
                let n = self.state().reseed();
                tracing::info!(ids_loaded = n, "lake: loaded the ids of files other processes wrote");
            }
            match polled {
                Some(Ok(msg)) => match self.consumer.context().checks.judge(&msg, &self.stats) {
                    Verdict::Take => {
                        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        s.take(&msg);
                        drop(s);
                    }
                    Verdict::Skip => {}
                    Verdict::Seek(to) => self.seek(msg.topic(), msg.partition(), to),
                },
                Some(Err(e)) => tracing::warn!(error = %e, "lake: consume error"),
                None => {}
            }
            // Before any commit: positions read from a broker that is gone must never reach its successor.
            if self.consumer.context().brokers_lost.swap(false, Ordering::Relaxed) {
                self.rejoin();
            }
            self.state().flush_due(&self.consumer, false);
            let now = Instant::now();
            if now >= next_status {
                next_status = now + Duration::from_secs(10);
                self.log_status();
            }
            if self.state().cfg.maintenance && now >= next_maintenance {
                next_maintenance = now + self.lake_cfg.maintenance_interval;
                self.maintain();
            }
        }
        self.state().flush_all(&self.consumer);
        self.log_status();
        self.stats.clone()
    }

    /// Leaves the group and closes the client, waiting at most `timeout`. `run` has written and committed
    /// everything already; what is left is librdkafka's goodbye to the coordinator, which was seen to wait
    /// for ever on a broker that restarted (tansu). Past the timeout the close goes on in the background and
    /// the group notices the member gone after its session timeout.
    pub fn close(self, timeout: Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("tl-lake-close".into()).spawn(move || {
            drop(self);
            let _ = tx.send(());
        });
        match spawned {
            Ok(_) => {
                if rx.recv_timeout(timeout).is_err() {
                    tracing::warn!(
                        ?timeout,
                        "lake: the broker did not answer the consumer's close; not waiting longer"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "lake: cannot close the consumer on a thread of its own"),
        }
    }

    /// After losing every broker: writes what was consumed, forgets the
    /// positions (never committing them: a broker that restarted empty would
    /// take them as a place in its new log) and joins the group again, which
    /// resumes from the group's committed offsets, or from the start of an
    /// empty cluster's new logs. What is read twice is dropped by the dedupe.
    fn rejoin(&mut self) {
        tracing::warn!("lake: all brokers were lost; resuming from committed offsets once they are back");
        {
            let mut s = self.state();
            for p in &mut s.tables {
                p.offsets.clear();
            }
            s.flush_all(&self.consumer);
        }
        self.consumer.unsubscribe();
        let refs: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        if let Err(e) = self.consumer.subscribe(&refs) {
            tracing::error!(error = %e, "lake: cannot subscribe again");
        }
        add(&self.stats.rejoins, 1);
    }

    /// Moves a partition as its resume check asks; on failure the partition's next message asks again.
    fn seek(&self, topic: &str, partition: i32, to: Offset) {
        match self.consumer.seek(topic, partition, to, Duration::from_secs(10)) {
            Ok(()) => self.consumer.context().checks.sought(topic, partition),
            Err(e) => {
                tracing::error!(error = %e, topic, partition, ?to, "lake: cannot move a partition for its resume check")
            }
        }
    }

    fn maintain(&self) {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let mut s = self.state();
        if let Err(e) = maintain::retention(s.writer.root(), &self.lake_cfg, now) {
            tracing::error!(error = %error_chain(&e), "lake: retention failed");
        }
        if let Err(e) = maintain::compact(&mut s.writer, &self.lake_cfg, now) {
            tracing::error!(error = %error_chain(&e), "lake: compaction failed");
        }
    }

    pub fn log_status(&self) {
        let snap = self.stats.snapshot();
        let get = |n: &str| snap.iter().find(|(k, _)| *k == n).map_or(0, |(_, v)| *v);
        tracing::info!(
            messages = get("messages"),
            rows_in = get("rows_in"),
            duplicates = get("duplicates"),
            rows_written = get("rows_written"),
            files = get("files_written"),
            commits = get("commits"),
            write_errors = get("write_errors"),
            rejected = get("rejected"),
            "lake status"
        );
    }
}

impl State {
    fn take(&mut self, msg: &BorrowedMessage<'_>) {
        add(&self.stats.messages, 1);
        let Some(i) = self.tables.iter().position(|p| p.topic == msg.topic()) else { return };
        let (partition, offset) = (msg.partition(), msg.offset());
        let table = self.tables[i].table;
        match decode(table, msg, &mut self.tables[i].builder) {
            Ok(batches) => {
                for (b, keys) in batches {
                    self.append(i, &b, keys.map(|k| k.0));
                }
            }
            Err(why) => self.reject(msg, &why),
        }
        let p = &mut self.tables[i];
        p.offsets.insert(partition, (offset + 1, resume::fingerprint(msg)));
        if p.since.is_none() {
            p.since = Some(Instant::now());
        }
    }

    /// Appends the rows whose event id is new (and their keys).
    fn append(&mut self, i: usize, b: &RecordBatch, keys: Option<Dictionaries>) {
        let p = &mut self.tables[i];
        add(&self.stats.rows_in, b.num_rows() as u64);
        let Some(column) = b.schema().index_of(super::id_column(p.table)).ok() else { return };
        // A records message's ids are in its keys, as numbers (its batch holds placeholders there). Keys
        // without them: the rows are gathered first, so no placeholder id is ever taken for a duplicate.
        let (b, keys) = match keys {
            Some(k) if !matches!(k.ids(column, 0..b.num_rows()), Ok(Some(_))) => (k.materialize(b, 0), None),
            keys => (b.clone(), keys),
        };
        let keep: BooleanArray = match keys.as_ref().and_then(|k| k.ids(column, 0..b.num_rows()).ok().flatten()) {
            Some(ids) => ids.iter().map(|&id| Some(p.recent.insert(id))).collect(),
            None => {
                let Some(ids) = b.column(column).as_any().downcast_ref::<StringArray>() else { return };
                (0..ids.len()).map(|r| Some(ids.is_null(r) || p.recent.insert(parse_id(ids.value(r))))).collect()
            }
        };
        let dups = keep.false_count();
        let (b, keys) = if dups == 0 {
            (b, keys)
        } else {
            add(&self.stats.duplicates, dups as u64);
            // The keyed columns are placeholders: filtered only together with the keys, else gathered first.
            let kept = keys.as_ref().and_then(|k| k.filter(&keep));
            let whole = match (&keys, &kept) {
                (Some(k), None) => k.materialize(&b, 0),
                _ => b,
            };
            match filter_record_batch(&whole, &keep) {
                Ok(f) => (f, kept),
                Err(e) => {
                    tracing::error!(error = %e, "lake: cannot filter duplicates; keeping all rows");
                    (whole, if kept.is_some() { keys } else { None })
                }
            }
        };
        if b.num_rows() > 0 {
            self.siem.push(i, p.table, &b, keys.as_ref());
            p.rows += b.num_rows();
            p.bytes += data_bytes(&b) + keys.as_ref().map_or(0, Dictionaries::gathered_bytes);
            p.batches.push((b, keys));
        }
    }

    fn reject(&mut self, msg: &BorrowedMessage<'_>, why: &str) {
        add(&self.stats.rejected, 1);
        let dir = &self.cfg.rejected_dir;
        let path = dir.join(format!("{}-{}-{}.arrows", msg.topic(), msg.partition(), msg.offset()));
        let saved = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, msg.payload().unwrap_or_default()))
            .and_then(|()| std::fs::File::open(&path)?.sync_all());
        match saved {
            Ok(()) => tracing::error!(why, path = %path.display(), "lake: message rejected, saved"),
            Err(e) => {
                tracing::error!(why, error = %e, path = %path.display(), "lake: message rejected, cannot save it")
            }
        }
    }

    fn flush_due(&mut self, consumer: &BaseConsumer<LakeContext>, all: bool) {
        for i in 0..self.tables.len() {
            let p = &self.tables[i];
            let due = p.rows >= self.cfg.file_rows
                || p.bytes >= self.cfg.file_bytes
                || p.since.is_some_and(|t| t.elapsed() >= self.cfg.file_age);
            if (all || due) && (!p.offsets.is_empty() || p.rows > 0) {
                self.flush(i, consumer);
            }
        }
    }

    fn flush_all(&mut self, consumer: &BaseConsumer<LakeContext>) {
        self.flush_due(consumer, true);
    }

    /// Adds the event ids of lake files other processes made visible since the last call (all of the last
    /// `dedupe_seed_age` the first time). Returns how many ids were new.
    fn reseed(&mut self) -> u64 {
        let started = SystemTime::now();
        // Slack for coarse mtimes and a file renamed while the last pass ran; ids seen twice cost nothing.
        let cutoff = self.seeded_at.checked_sub(Duration::from_secs(2)).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut n = 0;
        for p in &mut self.tables {
            n += seed(&self.writer.root().join(p.table.name()), cutoff, &self.own_files, &mut p.recent);
        }
        self.own_files.clear();
        self.seeded_at = started;
        add(&self.stats.dedupe_seeded, n);
        n
    }

    /// Writes table `i`'s rows as durable files, then commits their offsets.
    fn flush(&mut self, i: usize, consumer: &BaseConsumer<LakeContext>) {
        // At least once to the SIEMs: the file and the commit come after the forwarders hold the rows.
        if !self.siem.ready(i) {
            return;
        }
        let p = &mut self.tables[i];
        if p.rows > 0 {
            // Records messages' rows come with their keys: the keyed columns are encoded from them merged, as
            // `tracelake run` encodes its own (`join` gathers them where a part has none).
            let (batch, keys) = match Dictionaries::join(&p.table.schema(), &p.batches) {
                Ok(joined) => joined,
                Err(e) => {
                    tracing::error!(error = %e, table = p.table.name(), "lake: cannot join batches");
                    return;
                }
            };
            match self.writer.write_with(p.table, &batch, keys.as_ref(), &[]) {
                Ok(files) => {
                    self.own_files.extend(files.iter().map(|f| f.path.clone()));
                    add(&self.stats.files_written, files.len() as u64);
                    add(&self.stats.rows_written, batch.num_rows() as u64);
                }
                Err(partial) => {
                    // Offsets stay uncommitted; the rest is retried on the next flush.
                    add(&self.stats.write_errors, 1);
                    add(&self.stats.files_written, partial.written.len() as u64);
                    self.own_files.extend(partial.written.iter().map(|f| f.path.clone()));
                    let done: usize = partial.written.iter().map(|f| f.rows).sum();
                    add(&self.stats.rows_written, done as u64);
                    tracing::error!(error = %error_chain(&partial.error), table = p.table.name(), "lake: write failed, will retry");
                    p.rows = partial.unwritten.num_rows();
                    p.bytes = data_bytes(&partial.unwritten);
                    p.batches = vec![(partial.unwritten, None)];
                    return;
                }
            }
        }
        p.batches.clear();
        p.rows = 0;
        p.bytes = 0;
        p.since = None;
        let mut tpl = TopicPartitionList::new();
        let mut commits = Vec::with_capacity(p.offsets.len());
        for (&part, &(off, fp)) in &p.offsets {
            if let Err(e) = tpl.add_partition_offset(&p.topic, part, Offset::Offset(off)) {
                tracing::error!(error = %e, "lake: bad offset");
            } else {
                commits.push((part, off, fp));
            }
        }
        p.offsets.clear();
        // The brokers went away since these were read (the flag is cleared by `rejoin`): a broker that comes
        // back empty would take them as positions in its new logs and skip what the agents send again.
        if tpl.count() == 0 || consumer.context().brokers_lost.load(Ordering::Relaxed) {
            return;
        }
        // A commit the journal lacks could not be checked on resume: rather none (what follows it is read
        // again, and deduplicated).
        if let Err(e) = self.journal.record(&p.topic, &commits) {
            add(&self.stats.commit_errors, 1);
            tracing::error!(error = %e, "lake: cannot record the commit in the journal; not committing");
            return;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => add(&self.stats.commits, 1),
            // The rows are in the lake; a re-consume after a restart is dropped as duplicates.
            Err(e) => {
                add(&self.stats.commit_errors, 1);
                tracing::warn!(error = %e, "lake: offset commit failed (rows are durable; a replay is deduplicated)");
            }
        }
    }
}

/// The message's batches after checking its headers and schema.
fn decode(
    table: Table,
    msg: &BorrowedMessage<'_>,
    rows: &mut Option<BatchBuilder>,
) -> Result<Vec<(RecordBatch, Option<BatchKeys>)>, String> {
    let header = |name: &str| -> Option<String> {
        let h = msg.headers()?;
        h.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let got = header(wire::HEADER_TABLE);
    if got.as_deref() != Some(table.name()) {
        return Err(format!("header {} is {got:?}, topic holds {}", wire::HEADER_TABLE, table.name()));
    }
    let version = header(wire::HEADER_SCHEMA).unwrap_or_default();
    let node = header(wire::HEADER_NODE).unwrap_or_default();
    wire::decode_message_keyed(table, &version, &node, msg.payload().unwrap_or_default(), rows)
}

fn parse_id(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| {
        hex.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
    })
}

/// Loads the event ids of files under `dir` modified since `cutoff`, except `skip`, newest last. Returns how
/// many were new.
fn seed(dir: &Path, cutoff: SystemTime, skip: &HashSet<PathBuf>, recent: &mut Recent) -> u64 {
    use ::parquet::arrow::ProjectionMask;
    use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(md) = e.metadata() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if md.is_dir() {
                stack.push(path);
            } else if !name.starts_with('.')
                && name.ends_with(".parquet")
                && md.modified().is_ok_and(|m| m >= cutoff)
                && !skip.contains(&path)
            {
                files.push((md.modified().unwrap_or(cutoff), path));
            }
        }
    }
    files.sort();
    let mut n = 0;
    for (_, path) in files {
        let Ok(f) = std::fs::File::open(&path) else { continue };
        let Ok(b) = ParquetRecordBatchReaderBuilder::try_new(f) else { continue };
        // Findings are deduplicated by their own id (`super::id_column`).
        let idx = b.schema().index_of("event_id").or_else(|_| b.schema().index_of("finding_id"));
        let Some(idx) = idx.ok() else { continue };
        let mask = ProjectionMask::roots(b.parquet_schema(), [idx]);
        let Ok(reader) = b.with_projection(mask).build() else { continue };
        for batch in reader.flatten() {
            if let Some(ids) = batch.column(0).as_any().downcast_ref::<StringArray>() {
                for r in 0..ids.len() {
                    if !ids.is_null(r) && recent.insert(parse_id(ids.value(r))) {
                        n += 1;
                    }
                }
            }
        }
    }
    n
}
