//! Kafka counters as OpenTelemetry metrics, read from the sinks' atomics at collection time.

use std::sync::Arc;

use tracelake_sinks::kafka::{ConsumerStats, ProducerStats};

/// Gauges among the producer counters (they go down too).
const GAUGES: [&str; 2] = ["spool_bytes", "spool_messages"];

pub fn producer(stats: Arc<ProducerStats>) {
    let meter = tracelake_telemetry::meter("tracelake.kafka");
    for (name, _) in stats.snapshot() {
        let metric: &'static str = Box::leak(format!("tracelake.kafka.producer.{name}").into_boxed_str());
        let s = stats.clone();
        let read = move |report: &mut dyn FnMut(u64, &[tracelake_telemetry::KeyValue])| {
            let v = s.snapshot().into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v);
            report(v, &[]);
        };
        if GAUGES.contains(&name) {
            tracelake_telemetry::observe_gauges(&meter, metric, "Kafka spool (see docs/kafka.md)", read);
        } else {
            tracelake_telemetry::observe_counters(&meter, metric, "Kafka producer (see docs/kafka.md)", read);
        }
    }
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
}
