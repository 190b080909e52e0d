//! Counters of the parts this binary owns as OpenTelemetry metrics (exported by OTLP push and served at
//! `/metrics`, docs/metrics.md), read at collection time; and what `/healthz`/`/readyz` learn from them.

use std::sync::{Arc, Mutex, Once};

use tracelake_queries::live::DetectCounters;
use tracelake_sinks::kafka::{ConsumerStats, ProducerStats};
use tracelake_sinks::parquet::LakeStats;
use tracelake_telemetry::KeyValue;

use crate::hold::HoldStats;
use crate::http;

/// Gauges among the producer counters (they go down too).
const GAUGES: [&str; 3] = ["spool_bytes", "spool_messages", "in_outage"];

pub fn producer(stats: Arc<ProducerStats>) {
    let meter = tracelake_telemetry::meter("tracelake.kafka");
    for (name, _) in stats.snapshot() {
        let metric: &'static str = Box::leak(format!("tracelake.kafka.producer.{name}").into_boxed_str());
        let s = stats.clone();
        let read = move |report: &mut dyn FnMut(u64, &[KeyValue])| {
            let v = s.snapshot().into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v);
            report(v, &[]);
        };
        if GAUGES.contains(&name) {
            tracelake_telemetry::observe_gauges(&meter, metric, "Kafka spool (see docs/kafka.md)", read);
        } else {
            tracelake_telemetry::observe_counters(&meter, metric, "Kafka producer (see docs/kafka.md)", read);
        }
    }
    http::ready_check(move || {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        (get(&stats.in_outage) != 0).then(|| {
            format!(
                "kafka: all brokers down, spooling to disk ({} messages, {} bytes in the spool)",
                get(&stats.spool_messages),
                get(&stats.spool_bytes)
            )
        })
    });
}

pub fn consumer(stats: Arc<ConsumerStats>) {
    let meter = tracelake_telemetry::meter("tracelake.kafka");
    for (name, _) in stats.snapshot() {
        let metric: &'static str = Box::leak(format!("tracelake.lake.consumer.{name}").into_boxed_str());
        let s = stats.clone();
        tracelake_telemetry::observe_counters(&meter, metric, "Lake consumer (see docs/kafka.md)", move |report| {
            let v = s.snapshot().into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v);
            report(v, &[]);
        });
    }
    // The consume loop counts a poll about every 100 ms, idle or not: liveness of `tracelake lake`.
    http::watch_progress(move || stats.polls.load(std::sync::atomic::Ordering::Relaxed));
}

/// Live detections: totals, and findings per rule.
pub fn detections(c: Arc<DetectCounters>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let meter = tracelake_telemetry::meter("tracelake.detections");
    type Pick = fn(&DetectCounters) -> &AtomicU64;
    let series: [(&'static str, &'static str, Pick); 7] = [
        ("tracelake.detections.rounds", "Evaluation rounds of the live rules", |c| &c.rounds),
        ("tracelake.detections.events", "Events the live rules evaluated", |c| &c.events),
        ("tracelake.detections.suppressed", "Findings suppressed as repeats", |c| &c.suppressed),
        ("tracelake.detections.rule_errors", "Rule evaluations that failed on a batch (logged)", |c| &c.rule_errors),
        ("tracelake.detections.batches_dropped", "Batches not evaluated live: the detection thread was behind", |c| {
            &c.batches_dropped
        }),
        ("tracelake.detections.events_dropped", "Events in those batches (still in the lake for hunting)", |c| {
            &c.events_dropped
        }),
        (
            "tracelake.detections.window_rows_dropped",
            "Rows windowed rules let go early (detections.window_rows)",
            |c| &c.window_rows_dropped,
        ),
    ];
    for (name, desc, pick) in series {
        let c = Arc::clone(&c);
        tracelake_telemetry::observe_counters(&meter, name, desc, move |report| {
            report(pick(&c).load(Ordering::Relaxed), &[]);
        });
    }
    tracelake_telemetry::observe_counters(
        &meter,
        "tracelake.detections.findings",
        "Findings of the live rules, by rule (every live rule, zeros included)",
        move |report| {
            if let Ok(per_rule) = c.per_rule.lock() {
                for (rule, n) in per_rule.iter() {
                    report(*n, &[KeyValue::new("rule", rule.clone())]);
                }
            }
        },
    );
}

/// What the pipeline's tick last saw of the parts that keep plain counters.
#[derive(Debug, Default)]
struct Ticked {
    lake: Option<LakeStats>,
    hold: HoldStats,
}

static TICKED: Mutex<Ticked> = Mutex::new(Ticked { lake: None, hold: HoldStats { held: 0, expired: 0, full: 0 } });
static REGISTER_HOLD: Once = Once::new();
static REGISTER_LAKE: Once = Once::new();

/// The sensor pipeline's tick (about once a second, events or not): progress for `/healthz`, and the local lake
/// sink's and the hold's counters for the metrics.
pub fn tick(lake: Option<LakeStats>, hold: HoldStats) {
    http::progress();
    if let Ok(mut t) = TICKED.lock() {
        t.lake = lake;
        t.hold = hold;
    }
    REGISTER_HOLD.call_once(register_hold);
    if lake.is_some() {
        REGISTER_LAKE.call_once(register_lake);
    }
}

fn ticked<T>(pick: impl Fn(&Ticked) -> T) -> Option<T> {
    TICKED.lock().ok().map(|t| pick(&t))
}

fn register_hold() {
    let meter = tracelake_telemetry::meter("tracelake.enricher");
    type Pick = fn(&HoldStats) -> u64;
    let series: [(&'static str, &'static str, Pick); 3] = [
        ("tracelake.enricher.hold.held", "Events of new containers held while their identity was looked up", |h| {
            h.held
        }),
        (
            "tracelake.enricher.hold.expired",
            "Held events released without identity (enricher.hold_new_containers)",
            |h| h.expired,
        ),
        ("tracelake.enricher.hold.full", "Events not held because the hold was full (enricher.hold_max_events)", |h| {
            h.full
        }),
    ];
    for (name, desc, pick) in series {
        tracelake_telemetry::observe_counters(&meter, name, desc, move |report| {
            if let Some(v) = ticked(|t| pick(&t.hold)) {
                report(v, &[]);
            }
        });
    }
}

fn register_lake() {
    let meter = tracelake_telemetry::meter("tracelake.lake");
    type Pick = fn(&LakeStats) -> u64;
    let counters: [(&'static str, &'static str, Pick); 9] = [
        ("tracelake.lake.sink.rows_buffered", "Rows appended to the lake's builders", |s| s.rows_buffered),
        ("tracelake.lake.sink.rows_written", "Rows in visible Parquet files", |s| s.rows_written),
        ("tracelake.lake.sink.files_written", "Parquet files written", |s| s.files_written),
        ("tracelake.lake.sink.bytes_written", "Bytes of Parquet files written", |s| s.bytes_written),
        ("tracelake.lake.sink.write_errors", "Failed file writes (rows kept for retry; each logged)", |s| {
            s.write_errors
        }),
        ("tracelake.lake.sink.rows_lost", "Rows given up on (retry memory full, or failing at shutdown)", |s| {
            s.rows_lost
        }),
        ("tracelake.lake.sink.partitions_dropped", "Hour partitions removed by retention", |s| {
            s.maintenance.partitions_dropped
        }),
        ("tracelake.lake.sink.compactions", "Compactions of small files", |s| s.maintenance.compactions),
        ("tracelake.lake.sink.files_compacted", "Files merged by compaction", |s| s.maintenance.files_compacted),
    ];
    for (name, desc, pick) in counters {
        tracelake_telemetry::observe_counters(&meter, name, desc, move |report| {
            if let Some(Some(v)) = ticked(|t| t.lake.as_ref().map(pick)) {
                report(v, &[]);
            }
        });
    }
    tracelake_telemetry::observe_gauges(
        &meter,
        "tracelake.lake.sink.rows_pending",
        "Rows whose write failed, kept in memory for a retry",
        |report| {
            if let Some(Some(v)) = ticked(|t| t.lake.map(|l| l.rows_pending)) {
                report(v, &[]);
            }
        },
    );
    http::ready_check(|| {
        let pending = ticked(|t| t.lake.map_or(0, |l| l.rows_pending)).unwrap_or(0);
        (pending > 0).then(|| format!("lake: file writes failing, {pending} rows kept for retry (see the log)"))
    });
}
