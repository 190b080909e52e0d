//! Live detections in `tracelake run`: the rule pack, its sinks, its stats.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use anyhow::Context;
use arrow::array::RecordBatch;
use tracelake_enricher::ContainerdMeta;
use tracelake_model::json::JsonContext;
use tracelake_queries::Finding;
use tracelake_queries::live::{
    ChannelFindings, CompletingSinks, DetectError, DetectStats, FindingSink, LakeFindings, LiveDetector, LogFindings,
};
use tracelake_sinks::parquet::LakeConfig;

use crate::config::Config;
use crate::query::load_rules;

/// Finding batches waiting for the sensor thread to send them to Kafka.
const FORWARD_BATCHES: usize = 1024;

/// Live detection and, in agent mode, the finding rows for Kafka.
pub struct Live {
    pub detector: LiveDetector,
    /// `detection_finding` batches for the Kafka sink (agent mode).
    pub to_kafka: Option<Receiver<RecordBatch>>,
}

/// Starts live detection if enabled: built-in and configured rules minus the disabled ones; findings are
/// logged, written to the lake's detection_finding table with the lake on, and handed over for Kafka with
/// `kafka` (agent mode: the lake service writes them into detection_finding).
pub fn start(
    cfg: &Config,
    lake: Option<&LakeConfig>,
    kafka: bool,
    ctx: JsonContext<'static>,
    containerd: Option<Arc<ContainerdMeta>>,
    siem: Option<Box<dyn FindingSink>>,
) -> anyhow::Result<Option<Live>> {
    let mut d = cfg.detections.clone();
    if !d.enabled {
        return Ok(None);
    }
    // The node's behaviour profiles live with its other state (docs/profiles.md).
    if d.profiles.file.is_none() {
        d.profiles.file = Some(crate::profile::node_file(cfg));
    }
    let d = &d;
    let mut rules = Vec::new();
    for r in load_rules(true, &d.rule_dirs) {
        let r = r.context("invalid detection rule (`tracelake rules check` lists every error)")?;
        if !d.disabled.contains(&r.id) {
            rules.push(r);
        }
    }
    let mut sinks: Vec<Box<dyn FindingSink>> = vec![Box::new(LogFindings)];
    if let Some(lake) = lake {
        sinks.push(Box::new(LakeFindings::open(lake).context("cannot open the lake for findings")?));
    }
    let to_kafka = kafka.then(|| {
        let (sink, rx) = ChannelFindings::new(FORWARD_BATCHES);
        sinks.push(Box::new(sink));
        rx
    });
    // Findings to the SIEM forwarders of `tracelake run` (docs/siem.md).
    sinks.extend(siem);
    if let Some(meta) = containerd {
        sinks = vec![Box::new(CompletingSinks::new(Box::new(move |f| complete(&meta, f)), sinks))];
    }
    let n = rules.len();
    let detector = LiveDetector::start(rules, d, ctx, sinks).map_err(|e| match e {
        DetectError::Plan(errors) => {
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("detection rules do not plan:\n{}", all.join("\n"))
        }
        other => anyhow::Error::new(other),
    })?;
    crate::metrics::detections(detector.counters());
    tracing::info!(rules = n, kafka, "detections live");
    Ok(Some(Live { detector, to_kafka }))
}

/// A finding on an event that came before containerd's answer gets the container's pod, namespace, workload
/// and image as the node knows them now.
fn complete(meta: &ContainerdMeta, f: &mut Finding) {
    let Some(m) = f.get("container_id").and_then(|id| meta.cached(id)) else { return };
    f.fill("namespace", m.pod_namespace.as_deref());
    f.fill("pod", m.pod_name.as_deref());
    f.fill("pod_uid", m.pod_uid.as_deref());
    f.fill("image", Some(m.image.as_str()).filter(|i| !i.is_empty()));
    if let Some(w) = &m.workload {
        f.fill("workload_kind", Some(w.kind.as_str()));
        f.fill("workload", Some(&w.name));
    }
}

pub fn log_stats(s: &DetectStats) {
    tracing::info!(
        rounds = s.rounds,
        events = s.events,
        findings = s.findings,
        suppressed = s.suppressed,
        rule_errors = s.rule_errors,
        events_dropped = s.events_dropped,
        window_rows_dropped = s.window_rows_dropped,
        "detections stopped"
    );
}
