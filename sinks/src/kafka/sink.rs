//! The agent side: enriched events → Arrow batches per (table, workload) →
//! Kafka, with the spool behind it when the broker does not take them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use tracelake_model::Event;
use tracelake_model::json::{Identity, JsonContext};

use super::client::{Inflight, Origin, Outcome, Reports, permanent};
use super::records::{self, RecordWriter};
use super::spool::{Appended, Spool};
use super::stats::{ProducerStats, add, get, set};
use super::wire::{self, Envelope, WorkloadKey};
use super::{KafkaConfig, KafkaError, TopicKeeper};
use crate::hash::PremixedMap;
use crate::parquet::{Table, error_chain};

/// Room left in a message for headers and the request's own framing.
const MESSAGE_HEADROOM: usize = 16 * 1024;
const STATUS_EVERY: Duration = Duration::from_secs(10);
const BLOCK_POLL: Duration = Duration::from_millis(100);

/// Events of one table and one workload being gathered into a message.
#[derive(Debug)]
struct Open {
    key: String,
    table: Table,
    records: RecordWriter,
    since: Option<Instant>,
}

/// Ships enriched events to Kafka (docs/kafka.md). Single-threaded like the
/// lake sink: the sensor's reader appends, and delivery reports are served
/// on its thread on every shipped message and on `tick`.
pub struct KafkaSink {
    cfg: KafkaConfig,
    ctx: JsonContext<'static>,
    client_id: String,
    producer: BaseProducer<Reports>,
    topics: HashMap<Table, String>,
    open: Vec<Open>,
    /// By the FNV hash of (table, key).
    index: PremixedMap<Vec<usize>>,
    spool: Spool,
    /// Delivered messages re-sent after an outage (newest last).
    recent: VecDeque<(Instant, Arc<Envelope>)>,
    recent_bytes: usize,
    outage: bool,
    stats: Arc<ProducerStats>,
    _topics: Option<TopicKeeper>,
    since_check: u32,
    next_status: Instant,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").field("brokers", &self.cfg.brokers).field("open", &self.open.len()).finish()
    }
}

fn table_salt(t: Table) -> u64 {
    (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl KafkaSink {
    /// Opens the spool (checking it) and connects; never waits for the broker.
    pub fn open(cfg: &KafkaConfig, ctx: JsonContext<'static>) -> Result<KafkaSink, KafkaError> {
        cfg.validate()?;
        let stats = Arc::new(ProducerStats::default());
        let spool = Spool::open(&cfg.spool, stats.clone()).map_err(KafkaError::Spool)?;
        if !spool.is_empty() {
            tracing::info!(messages = spool.pending(), bytes = spool.bytes(), "kafka: spool holds messages to replay");
        }
        let client_id = format!("tracelake-{}", ctx.node);
        let producer = producer(cfg, &client_id)?;
        let keeper = if cfg.create_topics { Some(TopicKeeper::start(cfg, &client_id)?) } else { None };
        Ok(KafkaSink {
            topics: super::TABLES.iter().map(|t| (*t, cfg.topic(*t))).collect(),
            cfg: cfg.clone(),
            ctx,
            client_id,
            producer,
            open: Vec::new(),
            index: HashMap::default(),
            spool,
            recent: VecDeque::new(),
            recent_bytes: 0,
            outage: false,
            stats,
            _topics: keeper,
            since_check: 0,
            next_status: Instant::now() + STATUS_EVERY,
        })
    }

    /// Counters, live (for metrics and tests).
    pub fn stats(&self) -> Arc<ProducerStats> {
        self.stats.clone()
    }

    /// Appends one event with its identity.
    pub fn push_with(&mut self, ev: &Event<'_>, id: &Identity<'_>) {
        let table = Table::of(ev);
        let key = WorkloadKey::of(id, self.ctx.node);
        let hash = key.hash() ^ table_salt(table);
        let found = self
            .index
            .get(&hash)
            .and_then(|v| v.iter().copied().find(|&i| self.open[i].table == table && key.matches(&self.open[i].key)));
        let i = match found {
            Some(i) => i,
            None => self.open_batch(table, key, hash),
        };
        let o = &mut self.open[i];
        if o.since.is_none() {
            o.since = Some(Instant::now());
        }
        o.records.append(ev, id);
        if o.records.rows() >= self.cfg.batch_max_rows || o.records.bytes() >= self.cfg.batch_max_bytes {
            self.ship(i);
        }
        self.since_check += 1;
        if self.since_check >= 1024 {
            self.since_check = 0;
            self.tick();
        }
    }

    fn open_batch(&mut self, table: Table, key: WorkloadKey<'_>, hash: u64) -> usize {
        if self.open.len() >= self.cfg.max_open_batches {
            // Memory bound: ship what is open and forget the idle entries.
            for i in 0..self.open.len() {
                self.ship(i);
            }
            self.open.clear();
            self.index.clear();
        }
        self.open.push(Open { key: key.to_string(), table, records: RecordWriter::default(), since: None });
        let i = self.open.len() - 1;
        self.index.entry(hash).or_default().push(i);
        i
    }

    /// Sends rows built elsewhere (the live detections' `detection_finding` rows) as messages of `table`
    /// under `key`, through the same spool and retries as events. Rows whose schema is not the table's are
    /// rejected and counted: the lake would refuse them.
    pub fn push_batch(&mut self, table: Table, key: &str, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        if !self.topics.contains_key(&table) || batch.schema() != table.schema() {
            add(&self.stats.rejected_rows, batch.num_rows() as u64);
            tracing::error!(
                table = table.name(),
                rows = batch.num_rows(),
                "kafka: batch not of a shipped table's schema, rejected"
            );
            return;
        }
        self.ship_batch(table, key, batch);
    }

    /// Turns open batch `i` into messages and sends them.
    fn ship(&mut self, i: usize) {
        let o = &mut self.open[i];
        if o.records.rows() == 0 {
            return;
        }
        o.since = None;
        let (table, key, rows) = (o.table, o.key.clone(), o.records.rows());
        let payload = o.records.finish(&self.ctx);
        let limit = self.cfg.message_max_bytes.saturating_sub(MESSAGE_HEADROOM);
        // Batches are shipped at batch_max_bytes: only a few huge events (a 1 MiB argv) get past the limit.
        let mut todo = vec![(payload, rows)];
        while let Some((payload, rows)) = todo.pop() {
            if payload.len() <= limit {
                self.ship_payload(table, &key, records::VERSION, rows, payload);
                continue;
            }
            match records::split(&payload) {
                Ok(Some([first, second])) => {
                    todo.push(second);
                    todo.push(first);
                }
                Ok(None) => self.reject_oversized(table, payload.len(), limit),
                Err(e) => {
                    // Only a bug in the encoder gets here; said loudly.
                    add(&self.stats.rejected_rows, rows as u64);
                    tracing::error!(error = %error_chain(&e), "kafka: message could not be split, rows lost");
                }
            }
        }
    }

    /// One event (one row) alone over `message_max_bytes`: counted and said, never cut.
    fn reject_oversized(&self, table: Table, bytes: usize, limit: usize) {
        add(&self.stats.rejected_rows, 1);
        tracing::error!(bytes, limit, table = table.name(), "kafka: one event larger than message_max_bytes, rejected");
    }

    fn ship_payload(&mut self, table: Table, key: &str, version: &str, rows: usize, payload: Vec<u8>) {
        let env =
            Envelope { table, key: key.to_string(), rows: rows as u32, schema_version: version.to_string(), payload };
        self.dispatch(Arc::new(env));
    }

    /// Encodes a batch, halving it until each message fits `message_max_bytes`.
    fn ship_batch(&mut self, table: Table, key: &str, batch: RecordBatch) {
        let limit = self.cfg.message_max_bytes.saturating_sub(MESSAGE_HEADROOM);
        let mut todo = vec![batch];
        while let Some(b) = todo.pop() {
            let payload = match wire::encode(&b) {
                Ok(p) => p,
                Err(e) => {
                    add(&self.stats.rejected_rows, b.num_rows() as u64);
                    tracing::error!(error = %e, rows = b.num_rows(), "kafka: cannot encode a batch, rows lost");
                    continue;
                }
            };
            if payload.len() > limit {
                if b.num_rows() > 1 {
                    let half = b.num_rows() / 2;
                    todo.push(b.slice(half, b.num_rows() - half));
                    todo.push(b.slice(0, half));
                } else {
                    self.reject_oversized(table, payload.len(), limit);
                }
                continue;
            }
            self.ship_payload(table, key, wire::schema_version(table), b.num_rows(), payload);
        }
    }

    /// Sends a new message, or spools it behind earlier ones.
    fn dispatch(&mut self, env: Arc<Envelope>) {
        if self.outage || !self.spool.is_empty() {
            self.spool_msg(&env);
        } else if let Err((env, code)) = self.send(env, Origin::Live) {
            self.failed(env, Origin::Live, code);
        }
        self.serve(Duration::ZERO);
    }

    fn send(&mut self, env: Arc<Envelope>, origin: Origin) -> Result<(), (Arc<Envelope>, Option<RDKafkaErrorCode>)> {
        let Some(topic) = self.topics.get(&env.table) else {
            return Err((env, Some(RDKafkaErrorCode::UnknownTopic)));
        };
        let rows = env.rows.to_string();
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header { key: wire::HEADER_TABLE, value: Some(env.table.name()) })
            .insert(Header { key: wire::HEADER_SCHEMA, value: Some(env.schema_version.as_str()) })
            .insert(Header { key: wire::HEADER_ROWS, value: Some(rows.as_str()) })
            .insert(Header { key: wire::HEADER_NODE, value: Some(self.ctx.node) });
        let keep = env.clone();
        let record = BaseRecord::with_opaque_to(topic, Box::new(Inflight { env, origin }))
            .payload(keep.payload.as_slice())
            .key(keep.key.as_str())
            .headers(headers);
        match self.producer.send(record) {
            Ok(()) => {
                add(&self.stats.sent, 1);
                Ok(())
            }
            Err((e, record)) => Err((record.delivery_opaque.env, e.rdkafka_error_code())),
        }
    }

    fn failed(&mut self, env: Arc<Envelope>, origin: Origin, code: Option<RDKafkaErrorCode>) {
        if permanent(code) {
            add(&self.stats.rejected_rows, u64::from(env.rows));
            tracing::error!(
                ?code,
                rows = env.rows,
                table = env.table.name(),
                "kafka: message refused for good, rows rejected"
            );
            if let Origin::Spool(t) = origin {
                let _ = self.spool.ack(t);
            }
            return;
        }
        // A message that timed out or lost its connection means the broker is gone, whether or not the
        // client said all brokers are down: what it acknowledged lately may be gone with it.
        self.broker_down();
        match origin {
            Origin::Live => self.spool_msg(&env),
            Origin::Spool(t) => self.spool.rewind(t),
        }
    }

    /// Writes a message to the spool, waiting for room under policy `block`.
    fn spool_msg(&mut self, env: &Envelope) {
        let rec = env.to_spool();
        let mut blocked: Option<Instant> = None;
        loop {
            match self.spool.append(&rec, u64::from(env.rows)) {
                Ok(Appended::Stored) => break,
                Ok(Appended::Full) => {
                    if blocked.is_none() {
                        blocked = Some(Instant::now());
                        add(&self.stats.spool_blocked, 1);
                        tracing::warn!(
                            "kafka: spool full (policy block): reading paused until the broker takes messages"
                        );
                    }
                    self.serve(BLOCK_POLL);
                }
                Err(e) => {
                    add(&self.stats.rejected_rows, u64::from(env.rows));
                    tracing::error!(error = %error_chain(&e), rows = env.rows, "kafka: cannot spool a message, rows lost");
                    break;
                }
            }
        }
        if let Some(t) = blocked {
            add(&self.stats.spool_blocked_ms, t.elapsed().as_millis() as u64);
        }
    }

    /// Serves delivery reports, replays the spool.
    fn serve(&mut self, wait: Duration) {
        self.producer.poll(wait);
        for o in self.producer.context().take() {
            self.handle(o);
        }
        self.replay();
        self.check_fatal();
    }

    fn handle(&mut self, o: Outcome) {
        match o {
            Outcome::Delivered(f) => {
                self.outage = false;
                set(&self.stats.in_outage, 0);
                add(&self.stats.delivered, 1);
                add(&self.stats.delivered_rows, u64::from(f.env.rows));
                if let Origin::Spool(t) = f.origin
                    && let Err(e) = self.spool.ack(t)
                {
                    tracing::error!(error = %error_chain(&e), "kafka: spool");
                }
                self.remember(f.env);
            }
            Outcome::Failed(f, code) => {
                add(&self.stats.failed, 1);
                self.failed(f.env, f.origin, code);
            }
            Outcome::AllBrokersDown => self.broker_down(),
        }
    }

    fn remember(&mut self, env: Arc<Envelope>) {
        let max = self.cfg.spool.replay_window_bytes;
        if max == 0 {
            return;
        }
        let now = Instant::now();
        self.recent_bytes += env.payload.len();
        self.recent.push_back((now, env));
        while let Some((t, e)) = self.recent.front() {
            if self.recent_bytes <= max && now.duration_since(*t) <= self.cfg.spool.replay_window_age {
                break;
            }
            self.recent_bytes -= e.payload.len();
            self.recent.pop_front();
        }
    }

    /// All brokers down: what was delivered lately is spooled again, in case the broker lost it.
    fn broker_down(&mut self) {
        if self.outage {
            return;
        }
        self.outage = true;
        add(&self.stats.outages, 1);
        set(&self.stats.in_outage, 1);
        let n = self.recent.len();
        while let Some((_, env)) = self.recent.pop_front() {
            add(&self.stats.replayed_after_outage, 1);
            self.spool_msg(&env);
        }
        self.recent_bytes = 0;
        tracing::warn!(resend = n, "kafka: all brokers down; spooling, recent deliveries will be sent again");
        // A broker that lost its state (restarted in-memory broker, new cluster) no longer knows the idempotent
        // producer's id and refuses it for good: a new client gets a new id once a broker answers.
        self.restart_producer();
    }

    /// Sends spooled messages, oldest first; one at a time while the broker seems down.
    fn replay(&mut self) {
        let limit = if self.outage { 1 } else { self.cfg.spool.replay_inflight as u64 };
        while self.spool.in_flight() < limit {
            let (t, data) = match self.spool.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "kafka: cannot read the spool");
                    return;
                }
            };
            let Some(env) = Envelope::from_spool(&data) else {
                add(&self.stats.rejected_rows, 1);
                tracing::error!("kafka: spool record of an unknown format skipped");
                let _ = self.spool.ack(t);
                continue;
            };
            add(&self.stats.retried, 1);
            if let Err((env, code)) = self.send(Arc::new(env), Origin::Spool(t)) {
                self.failed(env, Origin::Spool(t), code);
                return;
            }
        }
    }

    /// A fatal client error (e.g. the idempotent producer fenced) needs a new client.
    fn check_fatal(&mut self) {
        let Some((code, reason)) = self.producer.client().fatal_error() else { return };
        tracing::error!(?code, reason, "kafka: fatal producer error, starting a new client");
        self.restart_producer();
    }

    /// Replaces the client; what the old one held fails over to the spool.
    fn restart_producer(&mut self) {
        let p = match producer(&self.cfg, &self.client_id) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "kafka: cannot create a new producer");
                return;
            }
        };
        add(&self.stats.producer_restarts, 1);
        let old = std::mem::replace(&mut self.producer, p);
        old.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + Duration::from_secs(2);
        while old.in_flight_count() > 0 && Instant::now() < deadline {
            old.poll(Duration::from_millis(50));
        }
        old.poll(Duration::ZERO);
        // Reports served while the client is destroyed land in its context too: keep it to read them after.
        let reports = old.context().clone();
        drop(old);
        for o in reports.take() {
            self.handle(o);
        }
    }

    /// Time-driven work: ships batches older than `linger`, serves reports, logs a status line.
    pub fn tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.open.len() {
            if self.open[i].since.is_some_and(|t| now.duration_since(t) >= self.cfg.linger) {
                self.ship(i);
            }
        }
        self.serve(Duration::ZERO);
        if now >= self.next_status {
            self.next_status = now + STATUS_EVERY;
            self.log_status();
        }
    }

    pub fn log_status(&self) {
        let s = &self.stats;
        tracing::info!(
            delivered = get(&s.delivered),
            delivered_rows = get(&s.delivered_rows),
            failed = get(&s.failed),
            retried = get(&s.retried),
            spooled = get(&s.spooled),
            spool_messages = get(&s.spool_messages),
            spool_bytes = get(&s.spool_bytes),
            spool_dropped = get(&s.spool_dropped),
            spool_dropped_rows = get(&s.spool_dropped_rows),
            rejected_rows = get(&s.rejected_rows),
            outage = self.outage,
            "kafka status"
        );
    }

    /// Ships everything and waits up to `timeout` for the broker to take it
    /// (spool included). Returns whether nothing is left in flight or spooled.
    pub fn flush(&mut self, timeout: Duration) -> bool {
        for i in 0..self.open.len() {
            self.ship(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.serve(Duration::from_millis(50));
            if self.producer.in_flight_count() == 0 && self.spool.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Flushes for up to `timeout`, then spools whatever the client still
    /// holds, so the next start sends it. Nothing is dropped here.
    pub fn close(mut self, timeout: Duration) -> Result<Arc<ProducerStats>, KafkaError> {
        let done = self.flush(timeout);
        if !done {
            self.producer.purge(PurgeConfig::default().queue().inflight());
            self.producer.poll(Duration::from_millis(200));
            for o in self.producer.context().take() {
                match o {
                    Outcome::Delivered(f) => {
                        add(&self.stats.delivered, 1);
                        add(&self.stats.delivered_rows, u64::from(f.env.rows));
                        if let Origin::Spool(t) = f.origin {
                            let _ = self.spool.ack(t);
                        }
                    }
                    // Spooled ones are still on disk; live ones go there now.
                    Outcome::Failed(f, _) => {
                        if let Origin::Live = f.origin {
                            self.spool_msg(&f.env);
                        }
                    }
                    Outcome::AllBrokersDown => {}
                }
            }
        }
        self.spool.sync().map_err(KafkaError::Spool)?;
        self.log_status();
        if !self.spool.is_empty() {
            tracing::warn!(
                messages = self.spool.pending(),
                bytes = self.spool.bytes(),
                "kafka: messages left in the spool for the next start"
            );
        }
        Ok(self.stats.clone())
    }
}

fn producer(cfg: &KafkaConfig, client_id: &str) -> Result<BaseProducer<Reports>, KafkaError> {
    let mut c = cfg.client_properties(client_id)?;
    let max = (cfg.message_max_bytes + MESSAGE_HEADROOM).to_string();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &cfg.compression)
        .set("linger.ms", cfg.client_linger.as_millis().to_string())
        .set("message.timeout.ms", cfg.message_timeout.as_millis().to_string())
        .set("queue.buffering.max.kbytes", cfg.queue_max_kbytes.to_string())
        .set("message.max.bytes", &max)
        .set("batch.size", &max)
        .set("statistics.interval.ms", "0");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.create_with_context(Reports::default()).map_err(KafkaError::Client)
}
