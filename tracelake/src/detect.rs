//! Live detections in `tracelake run`: the rule pack, its sinks, its stats.

use anyhow::Context;
use tracelake_model::json::JsonContext;
use tracelake_queries::live::{DetectError, DetectStats, FindingSink, LakeFindings, LiveDetector, LogFindings};
use tracelake_sinks::parquet::LakeConfig;

use crate::config::Config;
use crate::query::load_rules;

/// Starts live detection if enabled: built-in and configured rules minus the disabled ones; findings are
/// logged and, with the lake on, written to its detection_finding table.
pub fn start(
    cfg: &Config,
    lake: Option<&LakeConfig>,
    ctx: JsonContext<'static>,
) -> anyhow::Result<Option<LiveDetector>> {
    let d = &cfg.detections;
    if !d.enabled {
        return Ok(None);
    }
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
    let n = rules.len();
    let detector = LiveDetector::start(rules, d, ctx, sinks).map_err(|e| match e {
        DetectError::Plan(errors) => {
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("detection rules do not plan:\n{}", all.join("\n"))
        }
        other => anyhow::Error::new(other),
    })?;
    tracing::info!(rules = n, "detections live");
    Ok(Some(detector))
}

pub fn log_stats(s: &DetectStats) {
    tracing::info!(
        rounds = s.rounds,
        events = s.events,
        findings = s.findings,
        suppressed = s.suppressed,
        rule_errors = s.rule_errors,
        events_dropped = s.events_dropped,
        "detections stopped"
    );
}
