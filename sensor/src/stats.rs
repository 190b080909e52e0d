//! Counters: the kernel's per-CPU, per-kind counts plus the reader's own,
//! summed for the status line and exported through OpenTelemetry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray};
use tracelake_bpf::abi;
use tracelake_model::Kind;
use tracelake_telemetry::KeyValue;

use crate::SensorError;

/// Totals over all CPUs, by kind id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SensorStats {
    pub emitted: Vec<(Kind, u64)>,
    pub dropped: Vec<(Kind, u64)>,
    pub aggregated: Vec<(Kind, u64)>,
    pub emitted_total: u64,
    pub dropped_total: u64,
    pub aggregated_total: u64,
    pub agg_full: u64,
    pub filtered: u64,
    /// Records the reader could not decode (a bug or a version mismatch).
    pub decode_errors: u64,
    /// Events handed to the handler, summaries included.
    pub delivered: u64,
    pub summaries: u64,
}

/// Reader-side counters, bumped with relaxed atomics on the hot path.
#[derive(Debug, Default)]
pub struct ReaderCounters {
    pub decode_errors: AtomicU64,
    pub delivered: AtomicU64,
    pub summaries: AtomicU64,
}

/// Sums tl_stats over CPUs.
pub fn read(ebpf: &Ebpf, reader: &ReaderCounters) -> Result<SensorStats, SensorError> {
    let map: PerCpuArray<&MapData, abi::Stats> =
        PerCpuArray::try_from(ebpf.map("tl_stats").ok_or(SensorError::MissingMap("tl_stats"))?)
            .map_err(|e| SensorError::map("tl_stats", e))?;
    let per_cpu = map.get(&0, 0).map_err(|e| SensorError::map("tl_stats", e))?;
    let mut sum = abi::Stats::default();
    for cpu in per_cpu.iter() {
        for i in 0..abi::KIND_MAX {
            sum.emitted[i] += cpu.emitted[i];
            sum.dropped[i] += cpu.dropped[i];
            sum.aggregated[i] += cpu.aggregated[i];
        }
        sum.agg_full += cpu.agg_full;
        sum.filtered += cpu.filtered;
    }
    let by_kind = |arr: &[u64; abi::KIND_MAX]| -> Vec<(Kind, u64)> {
        Kind::ALL
            .iter()
            .filter(|k| (k.id() as usize) < abi::KIND_MAX)
            .map(|&k| (k, arr[k.id() as usize]))
            .filter(|(_, n)| *n > 0)
            .collect()
    };
    Ok(SensorStats {
        emitted_total: sum.emitted.iter().sum(),
        dropped_total: sum.dropped.iter().sum(),
        aggregated_total: sum.aggregated.iter().sum(),
        emitted: by_kind(&sum.emitted),
        dropped: by_kind(&sum.dropped),
        aggregated: by_kind(&sum.aggregated),
        agg_full: sum.agg_full,
        filtered: sum.filtered,
        decode_errors: reader.decode_errors.load(Ordering::Relaxed),
        delivered: reader.delivered.load(Ordering::Relaxed),
        summaries: reader.summaries.load(Ordering::Relaxed),
    })
}

/// Publishes the latest snapshot as OpenTelemetry counters. The snapshot is
/// refreshed by the sensor's status tick, not per event.
pub fn register_metrics(latest: Arc<Mutex<SensorStats>>) {
    let meter = tracelake_telemetry::meter("tracelake.sensor");
    let per_kind = |pick: fn(&SensorStats) -> &Vec<(Kind, u64)>| {
        let latest = Arc::clone(&latest);
        move |report: &mut dyn FnMut(u64, &[KeyValue])| {
            if let Ok(s) = latest.lock() {
                for (k, n) in pick(&s) {
                    report(*n, &[KeyValue::new("kind", k.name()), KeyValue::new("class", k.class().name())]);
                }
            }
        }
    };
    tracelake_telemetry::observe_counters(
        &meter,
        "tracelake.sensor.events_emitted",
        "Records the kernel wrote to the ring buffer",
        per_kind(|s| &s.emitted),
    );
    tracelake_telemetry::observe_counters(
        &meter,
        "tracelake.sensor.events_dropped",
        "Records lost because the ring buffer was full",
        per_kind(|s| &s.dropped),
    );
    tracelake_telemetry::observe_counters(
        &meter,
        "tracelake.sensor.events_aggregated",
        "Repeats folded in the kernel into summaries",
        per_kind(|s| &s.aggregated),
    );
    let scalar = |name: &'static str, desc: &'static str, pick: fn(&SensorStats) -> u64| {
        let latest = Arc::clone(&latest);
        tracelake_telemetry::observe_counters(&meter, name, desc, move |report| {
            if let Ok(s) = latest.lock() {
                report(pick(&s), &[]);
            }
        });
    };
    scalar("tracelake.sensor.filtered", "File events dropped by a prefix filter in the kernel", |s| s.filtered);
    scalar("tracelake.sensor.aggregation_table_full", "Events emitted unaggregated: table full", |s| s.agg_full);
    scalar("tracelake.sensor.decode_errors", "Records user space could not decode", |s| s.decode_errors);
}
