//! SIEM forwarding in the binary (docs/siem.md): the `[siem.*]` sections, their `where` filters compiled by
//! DataFusion and checked at start like the rules, the forwarders `tracelake run` and `tracelake lake` feed,
//! and their counters as metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};
use tracelake_model::Event;
use tracelake_model::json::{Identity, JsonContext};
use tracelake_queries::Finding;
use tracelake_queries::datafusion::common::DFSchema;
use tracelake_queries::datafusion::prelude::SessionContext;
use tracelake_queries::live::FindingSink;
use tracelake_queries::rule::Rule;
use tracelake_sinks::elasticsearch::{Elasticsearch, ElasticsearchConfig};
use tracelake_sinks::forward::{Forwarder, GAUGES, RowFilter, TableRoute};
use tracelake_sinks::parquet::{BatchBuilder, Table};
use tracelake_sinks::splunk_hec::{SplunkHec, SplunkHecConfig};
use tracelake_telemetry::KeyValue;

/// `[siem]`: forwarding to SIEMs; each target is off unless its section is there.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SiemConfig {
    /// Elasticsearch / OpenSearch through `_bulk` (ECS documents).
    #[serde(default)]
    pub elasticsearch: Option<ElasticsearchConfig>,
    /// Splunk HTTP Event Collector (CIM field names, indexer acknowledgements).
    #[serde(default)]
    pub splunk_hec: Option<SplunkHecConfig>,
}

impl SiemConfig {
    /// Checks every setting and compiles every `where` (nothing is contacted).
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(es) = &self.elasticsearch {
            es.validate()?;
            filters(&es.tables, "siem.elasticsearch")?;
        }
        if let Some(hec) = &self.splunk_hec {
            hec.validate()?;
            filters(&hec.tables, "siem.splunk_hec")?;
        }
        Ok(())
    }

    pub fn redact(&mut self) {
        if let Some(es) = &mut self.elasticsearch {
            es.redact();
        }
        if let Some(hec) = &mut self.splunk_hec {
            hec.redact();
        }
    }

    /// Starts the configured forwarders (each checks its credentials: a rejected token fails the start), with
    /// how long a lake flush may wait for each (its spill bound plus a request timeout).
    pub fn start(&self) -> anyhow::Result<Vec<(Arc<Forwarder>, Duration)>> {
        let mut out = Vec::new();
        if let Some(es) = &self.elasticsearch {
            let f = Elasticsearch::forwarder(es, filters(&es.tables, "siem.elasticsearch")?)
                .context("cannot start forwarding to Elasticsearch")?;
            tracing::info!(url = %es.url, "forwarding to Elasticsearch");
            out.push((Arc::new(f), es.buffer.spill_after + es.delivery.request_timeout + Duration::from_secs(5)));
        }
        if let Some(hec) = &self.splunk_hec {
            let f = SplunkHec::forwarder(hec, filters(&hec.tables, "siem.splunk_hec")?)
                .context("cannot start forwarding to Splunk HEC")?;
            tracing::info!(url = %hec.url, "forwarding to Splunk HEC");
            out.push((Arc::new(f), hec.buffer.spill_after + hec.delivery.request_timeout + Duration::from_secs(5)));
        }
        for (f, _) in &out {
            metrics(f);
        }
        Ok(out)
    }
}

/// The `where` of each configured table as a filter over the table's batches.
fn filters(
    tables: &std::collections::BTreeMap<String, TableRoute>,
    what: &str,
) -> anyhow::Result<Vec<(Table, RowFilter)>> {
    let mut out = Vec::new();
    for (name, route) in tables {
        let (Some(sql), Some(table)) = (&route.filter, Table::from_name(name)) else { continue };
        out.push((table, filter(table, sql).with_context(|| format!("{what}.tables.{name}.where = {sql:?}"))?));
    }
    Ok(out)
}

/// Compiles `sql` against `table`'s columns into a filter.
pub fn filter(table: Table, sql: &str) -> anyhow::Result<RowFilter> {
    let schema = table.schema();
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let ctx = SessionContext::new();
    let expr = ctx.parse_sql_expr(sql, &df_schema)?;
    let phys = ctx.create_physical_expr(expr, &df_schema)?;
    let ty = phys.data_type(&schema)?;
    if ty != DataType::Boolean {
        anyhow::bail!("not a condition: it is of type {ty}");
    }
    Ok(Box::new(move |batch: &RecordBatch| {
        let v = phys.evaluate(batch).map_err(|e| e.to_string())?;
        let a = v.into_array(batch.num_rows()).map_err(|e| e.to_string())?;
        a.as_boolean_opt().cloned().ok_or_else(|| "the condition did not give booleans".to_string())
    }))
}

/// Registers a forwarder's counters as `tracelake.siem.<target>.<name>`.
fn metrics(f: &Arc<Forwarder>) {
    let meter = tracelake_telemetry::meter("tracelake.siem");
    let stats = f.stats();
    for (name, _) in stats.snapshot() {
        let metric: &'static str = Box::leak(format!("tracelake.siem.{}.{name}", f.name()).into_boxed_str());
        let s = Arc::clone(&stats);
        let read = move |report: &mut dyn FnMut(u64, &[KeyValue])| {
            let v = s.snapshot().into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v);
            report(v, &[]);
        };
        if GAUGES.contains(&name) {
            tracelake_telemetry::observe_gauges(&meter, metric, "SIEM forwarder (see docs/siem.md)", read);
        } else {
            tracelake_telemetry::observe_counters(&meter, metric, "SIEM forwarder (see docs/siem.md)", read);
        }
    }
}

/// Rows are handed to the forwarders at least this often in `tracelake run`.
const RUN_FLUSH: Duration = Duration::from_secs(1);
const RUN_ROWS: usize = 8192;

/// `tracelake run`: builds each forwarded event table's rows from the enriched events (as the lake sink does;
/// a second builder so forwarding does not wait for the lake's file rotation) and pushes a batch every second.
pub struct RunForwarding {
    forwarders: Vec<Arc<Forwarder>>,
    builders: Vec<(BatchBuilder, Option<Instant>)>,
    ctx: JsonContext<'static>,
}

impl std::fmt::Debug for RunForwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunForwarding").field("forwarders", &self.forwarders.len()).finish()
    }
}

impl RunForwarding {
    /// Rows are built only for the event tables some forwarder takes.
    pub fn new(cfg: &SiemConfig, forwarders: Vec<Arc<Forwarder>>, ctx: JsonContext<'static>) -> RunForwarding {
        let mut names: Vec<&String> = Vec::new();
        if let Some(es) = &cfg.elasticsearch {
            names.extend(es.tables.keys());
        }
        if let Some(hec) = &cfg.splunk_hec {
            names.extend(hec.tables.keys());
        }
        let builders = Table::EVENT_TABLES
            .into_iter()
            .filter(|t| names.iter().any(|n| *n == t.name()))
            .filter_map(BatchBuilder::new)
            .map(|b| (b, None))
            .collect();
        RunForwarding { forwarders, builders, ctx }
    }

    pub fn push(&mut self, ev: &Event<'_>, id: &Identity<'_>) {
        let table = Table::of(ev);
        let Some(i) = self.builders.iter().position(|(b, _)| b.table() == table) else { return };
        let (b, since) = &mut self.builders[i];
        b.append(&self.ctx, ev, id);
        since.get_or_insert_with(Instant::now);
        if b.rows() >= RUN_ROWS {
            self.flush(i);
        }
    }

    /// Pushes batches due (all with `all`).
    pub fn tick(&mut self, all: bool) {
        for i in 0..self.builders.len() {
            if self.builders[i].1.is_some_and(|t| all || t.elapsed() >= RUN_FLUSH) {
                self.flush(i);
            }
        }
    }

    fn flush(&mut self, i: usize) {
        let (b, since) = &mut self.builders[i];
        *since = None;
        match b.finish() {
            Ok(batch) => {
                for f in &self.forwarders {
                    f.push(b.table(), &batch);
                }
            }
            Err(e) => tracing::error!(error = %tracelake_model::error_chain(&e), "siem: cannot build rows to forward"),
        }
    }

    /// Sends what is buffered and closes the forwarders (what they cannot deliver in `timeout` stays in their
    /// disk buffers for the next start).
    pub fn close(mut self, timeout: Duration) {
        self.tick(true);
        close_all(&self.forwarders, timeout);
    }
}

pub fn close_all(forwarders: &[Arc<Forwarder>], timeout: Duration) {
    for f in forwarders {
        let r = f.close(timeout);
        tracing::info!(target = f.name(), buffered = r.buffered, lost = r.lost, "siem: forwarder closed");
    }
}

/// Findings of `tracelake run`'s live detections to the forwarders (in `tracelake lake` they arrive as
/// `detection_finding` rows like any other table).
pub struct SiemFindings(pub Vec<Arc<Forwarder>>);

impl FindingSink for SiemFindings {
    fn findings(&mut self, rules: &[Rule], findings: &[Finding]) {
        match tracelake_queries::finding::findings_batch(rules, findings) {
            Ok(batch) => {
                for f in &self.0 {
                    f.push(Table::DetectionFinding, &batch);
                }
            }
            Err(e) => tracing::error!(error = %e, "siem: cannot build finding rows to forward"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use crate::config::parse;

    const TEXT: &str = "[siem.elasticsearch]\nurl = \"http://127.0.0.1:9200\"\nusername = \"tl\"\n\
                        findings_min_severity = \"medium\"\n\
                        [siem.elasticsearch.tables.process_activity]\nwhere = \"kind = 'exec' AND container\"\n\
                        [siem.splunk_hec]\nurl = \"https://splunk:8088\"\n\
                        [siem.splunk_hec.tables.network_activity]\nwhere = \"remote_ip = '169.254.169.254'\"\n\
                        sourcetype = \"k8s:net\"\n";

    #[test]
    fn sections_parse_with_env_secrets_filters_checked_and_secrets_redacted() {
        let env = [
            ("TRACELAKE__SIEM__ELASTICSEARCH__PASSWORD".to_string(), "s3cr3t".to_string()),
            ("TRACELAKE__SIEM__SPLUNK_HEC__TOKEN".to_string(), "tok-123".to_string()),
        ];
        let mut cfg = parse(TEXT, &env).unwrap();
        let es = cfg.siem.elasticsearch.as_ref().unwrap();
        assert_eq!(es.password.as_deref(), Some("s3cr3t"));
        assert_eq!(es.tables["process_activity"].filter.as_deref(), Some("kind = 'exec' AND container"));
        cfg.siem.redact();
        let shown = toml::to_string_pretty(&cfg).unwrap();
        assert!(!shown.contains("s3cr3t") && !shown.contains("tok-123") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn bad_sections_are_named() {
        let cases = [
            ("[siem.elasticsearch]\nurl = \"http://e:9200\"\nurll = 1\n", "urll"),
            (
                "[siem.elasticsearch]\nurl = \"http://e:9200\"\n[siem.elasticsearch.tables.process_activity]\nwhere = \"kind = \"\n",
                "process_activity.where",
            ),
            (
                "[siem.elasticsearch]\nurl = \"http://e:9200\"\n[siem.elasticsearch.tables.process_activity]\nwhere = \"no_such_column = 1\"\n",
                "no_such_column",
            ),
            (
                "[siem.elasticsearch]\nurl = \"http://e:9200\"\n[siem.elasticsearch.tables.process_activity]\nwhere = \"pid + 1\"\n",
                "not a condition",
            ),
            (
                "[siem.splunk_hec]\nurl = \"http://s:8088\"\ntoken = \"t\"\nfindings_min_severity = \"urgent\"\n",
                "findings_min_severity",
            ),
            (
                "[siem.splunk_hec]\nurl = \"http://s:8088\"\ntoken = \"t\"\n[siem.splunk_hec.buffer]\nwhen_full = \"drop_newest\"\n",
                "drop_newest",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(text, &[]).unwrap_err());
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn a_filter_keeps_the_rows_it_selects() {
        use arrow::array::{RecordBatch, StringArray};
        let mut f =
            super::filter(tracelake_sinks::parquet::Table::NetworkActivity, "remote_ip = '169.254.169.254'").unwrap();
        // All columns nullable (null but for the filter's), in the table's order: the filter reads by position.
        let table_schema = tracelake_sinks::parquet::Table::NetworkActivity.schema();
        let fields: Vec<_> = table_schema.fields().iter().map(|fd| fd.as_ref().clone().with_nullable(true)).collect();
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        let cols: Vec<_> = schema
            .fields()
            .iter()
            .map(|fd| match fd.name().as_str() {
                "remote_ip" => {
                    std::sync::Arc::new(StringArray::from(vec![Some("169.254.169.254"), Some("10.0.0.1"), None])) as _
                }
                _ => arrow::array::new_null_array(fd.data_type(), 3),
            })
            .collect();
        let batch = RecordBatch::try_new(schema, cols).unwrap();
        let mask = f(&batch).unwrap();
        assert_eq!(mask.iter().collect::<Vec<_>>(), vec![Some(true), Some(false), None]);
    }
}
