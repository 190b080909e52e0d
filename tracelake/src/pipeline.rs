//! The node pipeline `tracelake run` and `tracelake agent` share: sensor →
//! enricher → the chosen sinks (stdout JSON lines, the local Parquet lake,
//! Kafka), until a signal or `--for`.

use std::io::{self, Write};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use anyhow::Context;
use arrow::array::RecordBatch;
use tracelake_enricher::{Enricher, ProcessTable, Resolved};
use tracelake_model::Event;
use tracelake_model::json::JsonContext;
use tracelake_queries::live::LiveDetector;
use tracelake_sensor::{EventHandler, Sensor};
use tracelake_sinks::kafka::KafkaSink;
use tracelake_sinks::parquet::{LakeConfig, LakeSink, Table, error_chain};
use tracelake_sinks::stdout::JsonLinesSink;

use crate::config::Config;
use crate::enrich;
use crate::hold::{Admit, Hold};
use crate::ip_export::IpExport;
use crate::metrics;

/// Which sinks a run writes to.
#[derive(Debug, Default)]
pub struct Sinks {
    pub stdout: bool,
    /// The local Parquet lake, with this configuration.
    pub lake: Option<LakeConfig>,
    pub kafka: bool,
}

/// Enriches every event once and hands it to each chosen sink.
struct SinkHandler<W: Write> {
    stdout: Option<JsonLinesSink<W>>,
    lake: Option<LakeSink>,
    kafka: Option<KafkaSink>,
    detect: Option<LiveDetector>,
    /// Finding rows from the detection thread, for Kafka (agent mode).
    findings: Option<Receiver<RecordBatch>>,
    enricher: Enricher,
    processes: ProcessTable,
    lineage_depth: usize,
    ip_export: Option<IpExport>,
    node: &'static str,
    /// New containers' events waiting for their identity.
    hold: Hold,
    /// Rows for the SIEM forwarders (docs/siem.md), when `[siem.*]` is configured.
    siem: Option<crate::siem::RunForwarding>,
}

impl<W: Write> EventHandler for SinkHandler<W> {
    fn handle(&mut self, ev: &Event<'_>) {
        self.processes.observe(ev);
        let mut resolved = self.enricher.resolve_with_lineage(ev, &self.processes, self.lineage_depth);
        if self.hold.admit(ev, &mut resolved) == Admit::Pass {
            self.emit(ev, &resolved);
        }
        if self.hold.due() {
            self.release_held(false);
        }
    }

    fn tick(&mut self) {
        metrics::tick(self.lake.as_ref().map(LakeSink::stats), self.hold.stats);
        self.release_held(false);
        if let Some(x) = &mut self.ip_export {
            x.export(self.lake.as_mut(), self.kafka.as_mut(), self.node, false);
        }
        if let Some(l) = &mut self.lake {
            l.tick();
        }
        self.forward_findings();
        if let Some(k) = &mut self.kafka {
            k.tick();
        }
        if let Some(f) = &mut self.siem {
            f.tick(false);
        }
        if let Some(d) = &mut self.detect {
            d.tick();
        }
        self.lake_takes_built();
    }
}

impl<W: Write> SinkHandler<W> {
    /// Hands held events on whose identity arrived (or whose wait is over; all of them with `all`).
    fn release_held(&mut self, all: bool) {
        for (ev, resolved) in self.hold.release(&mut self.enricher, all) {
            self.emit(&ev.as_event(), &resolved);
        }
    }

    /// Writes one enriched event to every sink.
    fn emit(&mut self, ev: &Event<'_>, resolved: &Resolved) {
        if let Some(reason) = resolved.missing {
            self.enricher.unresolved().count(reason, 1, &reason.hint());
        }
        let id = resolved.identity();
        if let Some(s) = &mut self.stdout {
            s.push_with(ev, &id);
        }
        if let Some(k) = &mut self.kafka {
            k.push_with(ev, &id);
        }
        if let Some(f) = &mut self.siem {
            f.push(ev, &id);
        }
        // The rows the detector builds reach the lake as its batches: built once, not twice.
        let shared = self.detect.as_mut().is_some_and(|d| d.push(ev, &id));
        if let Some(l) = &mut self.lake
            && !shared
        {
            l.push_with(ev, &id);
        }
        self.lake_takes_built();
    }

    fn lake_takes_built(&mut self) {
        if let (Some(d), Some(l)) = (&mut self.detect, &mut self.lake) {
            for (table, batch, keys) in d.take_built() {
                l.push_built_keyed(table, batch, keys);
            }
        }
    }

    /// Sends the detection thread's finding rows to Kafka, keyed by node (the lake service writes them into
    /// detection_finding).
    fn forward_findings(&mut self) {
        let (Some(rx), Some(k)) = (&self.findings, &mut self.kafka) else { return };
        while let Ok(batch) = rx.try_recv() {
            k.push_batch(Table::DetectionFinding, self.node, batch);
        }
    }
}

/// A failing disk gets this many more tries at shutdown before rows count as lost.
const CLOSE_RETRIES: u32 = 3;
const CLOSE_BACKOFF: Duration = Duration::from_secs(1);
/// How long shutdown waits for the broker before leaving messages in the spool for the next start.
const KAFKA_CLOSE: Duration = Duration::from_secs(10);
/// How long shutdown sends to the SIEMs before leaving documents in their disk buffers for the next start.
const SIEM_CLOSE: Duration = Duration::from_secs(10);

pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Differs per node and per boot, so event ids never collide across either.
fn node_salt(node: &str) -> u64 {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    node.bytes()
        .chain(boot.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_writer(io::stderr).with_env_filter(filter);
    match crate::cli::LOG_FORMAT.get().copied().unwrap_or_default() {
        // One JSON object per line (timestamp, level, target, fields), for a cluster's log shipper.
        crate::cli::LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).init(),
        crate::cli::LogFormat::Text => builder.with_ansi(io::IsTerminal::is_terminal(&io::stderr())).init(),
    }
}

/// Resolves on ctrl-c, SIGTERM, or after `run_for`.
pub async fn shutdown(run_for: Option<Duration>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sleep = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
        () = sleep => {}
    }
}

/// Runs the sensor into `sinks` until a signal or `run_for`, then flushes every sink.
pub fn run(cfg: &Config, sinks: &Sinks, run_for: Option<Duration>) -> anyhow::Result<()> {
    init_logging();
    let (telemetry, _server) = crate::http::telemetry(cfg, crate::http::Role::Sensor)?;
    // Leaked once per process: the JSON context borrows it for the whole run.
    let node: &'static str = Box::leak(cfg.node_name.clone().unwrap_or_else(node_name).into_boxed_str());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let result = rt.block_on(async {
        let mut sensor = Sensor::start(&cfg.sensor).context("cannot start the sensor")?;
        let ctx = JsonContext { node, clock: Sensor::boot_clock(), node_salt: node_salt(node) };
        let lake = match &sinks.lake {
            Some(lake_cfg) => {
                let sink = LakeSink::open(lake_cfg, ctx)
                    .with_context(|| format!("cannot open the lake at {}", lake_cfg.dir.display()))?;
                tracing::info!(dir = %lake_cfg.dir.display(), "writing the Parquet lake");
                Some(sink)
            }
            None => None,
        };
        let kafka = if sinks.kafka {
            let sink = KafkaSink::open(&cfg.kafka, ctx).context("cannot start the Kafka producer")?;
            metrics::producer(sink.stats());
            tracing::info!(brokers = %cfg.kafka.brokers, spool = %cfg.kafka.spool.dir.display(), "sending to Kafka");
            Some(sink)
        } else {
            None
        };
        let e = &cfg.enricher;
        let enrich::Enrichment { enricher, processes, history, containerd, caches } =
            enrich::build(e, node, sensor.recorded_cgroups())?;
        // SIEM forwarders: a rejected token fails the start; findings reach them from the detection thread.
        let forwarders: Vec<_> = cfg.siem.start()?.into_iter().map(|(f, _)| f).collect();
        let siem_findings = (!forwarders.is_empty()).then(|| {
            Box::new(crate::siem::SiemFindings(forwarders.clone())) as Box<dyn tracelake_queries::live::FindingSink>
        });
        let siem = (!forwarders.is_empty()).then(|| crate::siem::RunForwarding::new(&cfg.siem, forwarders, ctx));
        let (detect, findings) =
            match crate::detect::start(cfg, sinks.lake.as_ref(), kafka.is_some(), ctx, containerd, siem_findings)? {
                Some(l) => (Some(l.detector), l.to_kafka),
                None => (None, None),
            };
        let stdout = sinks.stdout.then(|| JsonLinesSink::new(io::stdout().lock(), &cfg.sinks.stdout, ctx));
        let lineage_depth = e.lineage_depth.min(tracelake_model::json::MAX_ANCESTORS);
        let ip_export = history.filter(|_| lake.is_some() || kafka.is_some()).map(IpExport::new);
        let hold = Hold::new(e.hold_new_containers, e.hold_max_events);
        let mut handler = SinkHandler {
            stdout,
            lake,
            kafka,
            detect,
            findings,
            enricher,
            processes,
            lineage_depth,
            ip_export,
            node,
            hold,
            siem,
        };
        if let (Some(d), Some(_)) = (handler.detect.as_mut(), handler.lake.as_ref()) {
            d.share_batches();
        }
        if cfg.sensor.proc_snapshot {
            let n = sensor.snapshot(&mut handler);
            tracing::info!(processes = n, "reported running processes");
        }
        let summary = sensor.run(&mut handler, shutdown(run_for)).await.context("sensor stopped")?;
        handler.release_held(true);
        let h = handler.hold.stats;
        let unresolved: Vec<String> = handler
            .enricher
            .unresolved()
            .read()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        tracing::info!(
            held = h.held,
            hold_expired = h.expired,
            hold_full = h.full,
            unresolved = %unresolved.join(","),
            "identity"
        );
        let stdout_result = handler.stdout.as_mut().map_or(Ok(()), JsonLinesSink::flush);
        if let Some(x) = handler.ip_export.as_mut() {
            x.export(handler.lake.as_mut(), handler.kafka.as_mut(), handler.node, true);
        }
        // Detections first: their last findings still go to Kafka before it closes, and the rows they built
        // to the lake.
        if let Some(d) = handler.detect.as_mut() {
            d.send_buffered();
        }
        handler.lake_takes_built();
        if let Some(d) = handler.detect.take() {
            crate::detect::log_stats(&d.close());
        }
        handler.forward_findings();
        // After the detections closed: their last findings are in the forwarders.
        if let Some(f) = handler.siem.take() {
            f.close(SIEM_CLOSE);
        }
        let lake_result = handler.lake.take().map(|l| l.close(CLOSE_RETRIES, CLOSE_BACKOFF));
        let kafka_result = handler.kafka.take().map(|k| k.close(KAFKA_CLOSE));
        let s = &summary.stats;
        tracing::info!(
            delivered = s.delivered,
            emitted = s.emitted_total,
            dropped = s.dropped_total,
            aggregated = s.aggregated_total,
            summaries = s.summaries,
            "stopped"
        );
        enrich::log_caches(&caches);
        match &lake_result {
            Some(Ok(l)) => tracing::info!(
                rows = l.rows_written,
                files = l.files_written,
                bytes = l.bytes_written,
                write_errors = l.write_errors,
                "lake flushed"
            ),
            Some(Err(e)) => tracing::error!(error = %error_chain(e), "lake: rows lost"),
            None => {}
        }
        match stdout_result {
            // A closed pipe (| head) is the reader's choice, not an error.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => other.context("stdout")?,
        }
        if let Some(Err(e)) = kafka_result {
            return Err(e).context("kafka");
        }
        match lake_result {
            Some(Err(e)) => Err(e).context("lake"),
            Some(Ok(_)) | None => Ok(()),
        }
    });
    let _ = telemetry.shutdown();
    result
}
