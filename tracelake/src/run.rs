//! `tracelake run`: sensor to sinks in one process.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context;
use std::sync::Arc;

use tracelake_enricher::iphistory::{IpHistory, NodeObserver, ObserverOptions, now_ns};
use tracelake_enricher::kube::KubeMode;
use tracelake_enricher::{ContainerdMeta, Enricher, EnricherConfig, KubeMeta, ProcessTable};
use tracelake_model::Event;
use tracelake_model::json::JsonContext;
use tracelake_sensor::{EventHandler, Sensor};
use tracelake_sinks::parquet::LakeSink;
use tracelake_sinks::stdout::JsonLinesSink;

use crate::cli::RunArgs;
use crate::config;

/// Enriches every event once and hands it to each chosen sink.
struct SinkHandler<W: Write> {
    stdout: Option<JsonLinesSink<W>>,
    lake: Option<LakeSink>,
    enricher: Enricher,
    processes: ProcessTable,
    lineage_depth: usize,
    ip_export: Option<crate::ip_export::IpExport>,
}

impl<W: Write> EventHandler for SinkHandler<W> {
    fn handle(&mut self, ev: &Event<'_>) {
        self.processes.observe(ev);
        let resolved = self.enricher.resolve_with_lineage(ev, &self.processes, self.lineage_depth);
        let id = resolved.identity();
        if let Some(s) = &mut self.stdout {
            s.push_with(ev, &id);
        }
        if let Some(l) = &mut self.lake {
            l.push_with(ev, &id);
        }
    }

    fn tick(&mut self) {
        if let Some(l) = &mut self.lake {
            if let Some(x) = &mut self.ip_export {
                x.export(l, false);
            }
            l.tick();
        }
    }
}

/// A failing disk gets this many more tries at shutdown before rows count as lost.
const CLOSE_RETRIES: u32 = 3;
const CLOSE_BACKOFF: Duration = Duration::from_secs(1);

fn node_name() -> String {
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

/// The persisted IP history (in memory only if the state dir is unusable:
/// peers still resolve, history just does not survive a restart) and the
/// thread that feeds it from this node's containers.
fn ip_history(
    e: &EnricherConfig,
    node: &str,
    containerd: Option<Arc<ContainerdMeta>>,
) -> (Arc<IpHistory>, Option<NodeObserver>) {
    let c = &e.ip_history;
    let dir = e.ip_history_dir();
    let history = IpHistory::open(&dir, c.retention, now_ns()).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "IP history kept in memory only");
        IpHistory::in_memory(c.retention)
    });
    let history = Arc::new(history);
    let opts = ObserverOptions {
        cgroup_root: e.cgroup_root(),
        node: node.to_string(),
        containerd,
        interval: c.scan_interval,
        observe: c.observe_node,
        compact_after_bytes: c.compact_after_bytes,
    };
    let observer = NodeObserver::start(Arc::clone(&history), opts)
        .inspect_err(|err| tracing::warn!(error = %err, "cannot start the IP observer thread"))
        .ok();
    (history, observer)
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = config::load(args.config.as_deref())?;
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let telemetry = tracelake_telemetry::init(&cfg.telemetry).context("cannot set up telemetry")?;
    // --stdout alone: JSON lines only, as before the lake; the lake otherwise, or when --lake names it.
    let use_lake = !args.stdout || args.lake.is_some();
    let mut lake_cfg = cfg.sinks.lake.clone();
    if let Some(dir) = &args.lake {
        lake_cfg.dir = dir.clone();
    }
    // Leaked once per process: the JSON context borrows it for the whole run.
    let node: &'static str = Box::leak(cfg.node_name.clone().unwrap_or_else(node_name).into_boxed_str());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let result = rt.block_on(async {
        let mut sensor = Sensor::start(&cfg.sensor).context("cannot start the sensor")?;
        let ctx = JsonContext { node, clock: Sensor::boot_clock(), node_salt: node_salt(node) };
        let lake = if use_lake {
            let sink = LakeSink::open(&lake_cfg, ctx)
                .with_context(|| format!("cannot open the lake at {}", lake_cfg.dir.display()))?;
            tracing::info!(dir = %lake_cfg.dir.display(), "writing the Parquet lake");
            Some(sink)
        } else {
            None
        };
        let stdout = args.stdout.then(|| JsonLinesSink::new(io::stdout().lock(), &cfg.sinks.stdout, ctx));
        let e = &cfg.enricher;
        let mut enricher =
            Enricher::new(&e.cgroup_root(), e.cache_entries, e.tombstone_ttl).context("cannot start the enricher")?;
        let containerd = if e.containerd_socket.exists() {
            let meta =
                ContainerdMeta::start(e.containerd_socket.clone(), e.runtime_timeout, e.cache_entries, e.tombstone_ttl);
            enricher = enricher.with_containerd(Arc::clone(&meta));
            Some(meta)
        } else {
            tracing::info!(socket = %e.containerd_socket.display(), "no containerd socket: container metadata off");
            None
        };
        let mut history = None;
        if e.ip_history.enabled {
            let (h, observer) = ip_history(e, node, containerd);
            enricher = enricher.with_ip_history(Arc::clone(&h), observer, Sensor::boot_clock());
            history = Some(h);
        }
        match KubeMeta::start_thread(&e.kubernetes, e.tombstone_ttl) {
            Ok(Some(kube)) => {
                if let Some(h) = &history {
                    tracelake_enricher::iphistory::kube_feed::spawn(&kube, Arc::clone(h));
                }
                enricher = enricher.with_kube(kube);
            }
            Ok(None) => {}
            Err(err) if e.kubernetes.mode == KubeMode::On => {
                return Err(err).context("enricher.kubernetes.mode = \"on\"");
            }
            Err(err) => tracing::warn!(
                error = format!("{:#}", anyhow::Error::from(err)),
                "kubernetes: off; workloads are inferred from pod names"
            ),
        }
        let processes = ProcessTable::new(e.tombstone_ttl, e.cache_entries, e.max_processes);
        let mut caches = enricher.cache_counters();
        caches.push(("process", std::sync::Arc::clone(processes.counters())));
        tracelake_enricher::metrics::register(&caches);
        let lineage_depth = e.lineage_depth.min(tracelake_model::json::MAX_ANCESTORS);
        let ip_export = history.filter(|_| lake.is_some()).map(crate::ip_export::IpExport::new);
        let mut handler = SinkHandler { stdout, lake, enricher, processes, lineage_depth, ip_export };
        if cfg.sensor.proc_snapshot {
            let n = sensor.snapshot(&mut handler);
            tracing::info!(processes = n, "reported running processes");
        }
        let run_for = args.run_for;
        let shutdown = async move {
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
        };
        let summary = sensor.run(&mut handler, shutdown).await.context("sensor stopped")?;
        let stdout_result = handler.stdout.as_mut().map_or(Ok(()), JsonLinesSink::flush);
        if let (Some(l), Some(x)) = (handler.lake.as_mut(), handler.ip_export.as_mut()) {
            x.export(l, true);
        }
        let lake_result = handler.lake.take().map(|l| l.close(CLOSE_RETRIES, CLOSE_BACKOFF));
        let s = &summary.stats;
        tracing::info!(
            delivered = s.delivered,
            emitted = s.emitted_total,
            dropped = s.dropped_total,
            aggregated = s.aggregated_total,
            summaries = s.summaries,
            "stopped"
        );
        for (cache, c) in &caches {
            let c = c.read();
            tracing::info!(cache, hits = c.hits, misses = c.misses, evicted = c.evicted, expired = c.expired, "enricher cache");
        }
        match &lake_result {
            Some(Ok(l)) => tracing::info!(
                rows = l.rows_written,
                files = l.files_written,
                bytes = l.bytes_written,
                write_errors = l.write_errors,
                "lake flushed"
            ),
            Some(Err(e)) => tracing::error!(error = %tracelake_sinks::parquet::error_chain(e), "lake: rows lost"),
            None => {}
        }
        match stdout_result {
            // A closed pipe (| head) is the reader's choice, not an error.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => other.context("stdout")?,
        }
        match lake_result {
            Some(Err(e)) => Err(e).context("lake"),
            Some(Ok(_)) | None => Ok(()),
        }
    });
    let _ = telemetry.shutdown();
    result
}
