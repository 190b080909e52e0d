//! `tracelake lake`: consumes the Kafka topics and writes the Parquet lake (docs/kafka.md).

use anyhow::Context;
use tracelake_sinks::kafka::{LakeConsumer, StopFlag};

use crate::cli::LakeArgs;
use crate::config;
use crate::metrics;
use crate::pipeline;

pub fn lake(args: &LakeArgs) -> anyhow::Result<()> {
    let mut cfg = config::load(args.session.config.as_deref())?;
    if let Some(b) = &args.brokers {
        cfg.kafka.brokers.clone_from(b);
    }
    if let Some(dir) = &args.lake {
        cfg.sinks.lake.dir.clone_from(dir);
    }
    pipeline::init_logging();
    let (telemetry, _server) = crate::http::telemetry(&cfg, crate::http::Role::Consumer)?;
    let mut consumer = LakeConsumer::open(&cfg.kafka, &cfg.lake_service, &cfg.sinks.lake)
        .with_context(|| format!("cannot start the lake consumer for {}", cfg.sinks.lake.dir.display()))?;
    metrics::consumer(consumer.stats());
    // SIEM forwarders (docs/siem.md): offsets commit only once they hold the rows.
    let forwarders = cfg.siem.start()?;
    let siem: Vec<_> = forwarders.iter().map(|(f, _)| std::sync::Arc::clone(f)).collect();
    consumer.forward_to(forwarders);
    tracing::info!(
        brokers = %cfg.kafka.brokers,
        group = %cfg.lake_service.group_id,
        dir = %cfg.sinks.lake.dir.display(),
        "consuming into the Parquet lake"
    );
    let stop = StopFlag::default();
    let flag = stop.clone();
    let worker = std::thread::Builder::new()
        .name("tl-lake".into())
        .spawn(move || {
            let stats = consumer.run(&flag);
            consumer.close(std::time::Duration::from_secs(10));
            stats
        })
        .context("cannot start the consumer thread")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    // The consumer stops by itself only on a panic; otherwise a signal or --for ends it.
    rt.block_on(async {
        let finished = async {
            while !worker.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            () = pipeline::shutdown(args.session.run_for) => {}
            () = finished => {}
        }
    });
    stop.stop();
    let result = worker.join().map_err(|_| anyhow::anyhow!("the consumer thread panicked"));
    crate::siem::close_all(&siem, std::time::Duration::from_secs(10));
    let _ = telemetry.shutdown();
    result.map(|_| ())
}
