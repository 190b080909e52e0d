//! Counters: the kernel's per-CPU, per-kind counts plus the reader's own,
//! summed for the status line and exported through OpenTelemetry.

use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::Ebpf;
use aya::maps::{Map, MapData, PerCpuArray};
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

/// Publishes the counters as OpenTelemetry metrics, read when the metrics are collected (an OTLP
/// export, a Prometheus scrape): the kernel's through a second handle on `tl_stats`, the
/// reader's from its atomics, so a scrape sees them as they are, not as of the last status tick.
pub fn register_metrics(ebpf: &Ebpf, reader: Arc<ReaderCounters>) -> Result<(), SensorError> {
    let Some(Map::PerCpuArray(data)) = ebpf.map("tl_stats") else {
        return Err(SensorError::MissingMap("tl_stats"));
    };
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| SensorError::Io { what: "duplicate the tl_stats map fd", source })?;
    let data = MapData::from_fd(fd).map_err(|e| SensorError::map("tl_stats", e))?;
    let map: PerCpuArray<MapData, abi::Stats> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|e| SensorError::map("tl_stats", e))?;
    let map = Arc::new(map);
    let meter = tracelake_telemetry::meter("tracelake.sensor");
    let per_kind = |pick: fn(&abi::Stats) -> &[u64; abi::KIND_MAX]| {
        let map = Arc::clone(&map);
        move |report: &mut dyn FnMut(u64, &[KeyValue])| {
            let Ok(per_cpu) = map.get(&0, 0) else { return };
            for &k in Kind::ALL.iter().filter(|k| (k.id() as usize) < abi::KIND_MAX) {
                let n: u64 = per_cpu.iter().map(|cpu| pick(cpu)[k.id() as usize]).sum();
                if n > 0 {
                    report(n, &[KeyValue::new("kind", k.name()), KeyValue::new("class", k.class().name())]);
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
    let by_cpu = Arc::clone(&map);
    tracelake_telemetry::observe_counters(
        &meter,
        "tracelake.sensor.events_dropped_per_cpu",
        "Records lost because the ring buffer was full, by the CPU that lost them (every CPU, zeros included)",
        move |report| {
            let Ok(per_cpu) = by_cpu.get(&0, 0) else { return };
            for (cpu, s) in per_cpu.iter().enumerate() {
                report(s.dropped.iter().sum(), &[KeyValue::new("cpu", cpu as i64)]);
            }
        },
    );
    let kernel = |name: &'static str, desc: &'static str, pick: fn(&abi::Stats) -> u64| {
        let map = Arc::clone(&map);
        tracelake_telemetry::observe_counters(&meter, name, desc, move |report| {
            if let Ok(per_cpu) = map.get(&0, 0) {
                report(per_cpu.iter().map(pick).sum(), &[]);
            }
        });
    };
    kernel("tracelake.sensor.filtered", "File events dropped by a prefix filter in the kernel", |s| s.filtered);
    kernel("tracelake.sensor.aggregation_table_full", "Events emitted unaggregated: table full", |s| s.agg_full);
    let user = |name: &'static str, desc: &'static str, pick: fn(&ReaderCounters) -> &AtomicU64| {
        let reader = Arc::clone(&reader);
        tracelake_telemetry::observe_counters(&meter, name, desc, move |report| {
            report(pick(&reader).load(Ordering::Relaxed), &[]);
        });
    };
    user("tracelake.sensor.decode_errors", "Records user space could not decode", |r| &r.decode_errors);
    user(
        "tracelake.sensor.events_delivered",
        "Events handed to the pipeline (ring-buffer records, summaries and the start-up process snapshot)",
        |r| &r.delivered,
    );
    user("tracelake.sensor.summaries", "Summary events made from the kernel's aggregation tables", |r| &r.summaries);
    Ok(())
}
