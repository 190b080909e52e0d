//! SQL over the Parquet lake: every table as a ListingTable over its
//! hive-partitioned directory (`date`, `hour` partition columns: partition
//! pruning), with Parquet statistics, page index and bloom filter pruning
//! and filter pushdown on; plus views hunts start from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use tracelake_sinks::parquet::Table;

use crate::engine::rule_error;
use crate::finding::{Finding, Suppressor, findings_of};
use crate::rule::{Rule, RuleError};

/// Views registered next to the tables (in this order: later ones use earlier ones).
pub const VIEWS: [(&str, &str); 6] = [
    (
        // ip_ownership holds every version of an interval (written when it opens, again when it closes or
        // its owner is learnt better), from every node: of an (ip, valid_from) the closed version wins, then
        // the highest `seq` (versions of one interval come from one node, whose `seq` orders them).
        "ip_owners",
        "SELECT ip, valid_from, valid_to, node, namespace, pod, pod_uid, workload_kind, workload, container_id, \
         service, source, seq, date, hour FROM (SELECT *, row_number() OVER (PARTITION BY ip, valid_from \
         ORDER BY valid_to IS NULL, seq DESC) AS version_rank FROM ip_ownership) WHERE version_rank = 1",
    ),
    (
        "process_tree",
        "SELECT time, node, namespace, pod, workload_kind, workload, container_id, image, pid, ppid, \
         proc_start_ns, uid, euid, comm, exe, cmdline, cwd, parent_exe, parent_cmdline, ancestor_pids, \
         ancestor_exes, event_id, date, hour \
         FROM process_activity WHERE kind IN ('exec', 'process_snapshot')",
    ),
    (
        "exe_counts",
        "SELECT namespace, workload_kind, workload, exe, count(*) AS execs, \
         count(DISTINCT container_id) AS containers, min(time) AS first_seen, max(time) AS last_seen \
         FROM process_activity WHERE kind IN ('exec', 'process_snapshot') \
         GROUP BY namespace, workload_kind, workload, exe",
    ),
    (
        "connections",
        "SELECT n.time, n.node, n.namespace, n.pod, n.workload_kind, n.workload, n.container_id, n.pid, \
         n.exe, n.kind, n.protocol, n.local_ip, n.local_port, n.remote_ip, n.remote_port, n.ret, \
         o.namespace AS peer_namespace, o.pod AS peer_pod, o.workload_kind AS peer_workload_kind, \
         o.workload AS peer_workload, n.event_id, n.date, n.hour \
         FROM network_activity n LEFT JOIN ip_owners o \
         ON n.remote_ip = o.ip AND n.time >= o.valid_from AND n.time < coalesce(o.valid_to, now())",
    ),
    (
        // Rare values per workload: destinations a workload reached, fewest first is where to look.
        "destination_counts",
        "SELECT namespace, workload_kind, workload, remote_ip, remote_port, protocol, count(*) AS connects, \
         count(DISTINCT container_id) AS containers, min(time) AS first_seen, max(time) AS last_seen \
         FROM network_activity WHERE kind = 'net_connect' AND family IN ('inet', 'inet6') \
         GROUP BY namespace, workload_kind, workload, remote_ip, remote_port, protocol",
    ),
    (
        "file_counts",
        "SELECT namespace, workload_kind, workload, kind, path, count(*) AS events, \
         count(DISTINCT container_id) AS containers, min(time) AS first_seen, max(time) AS last_seen \
         FROM file_activity GROUP BY namespace, workload_kind, workload, kind, path",
    ),
];

/// Why a lake query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot open table {table} at {}", path.display())]
    Open {
        table: &'static str,
        path: PathBuf,
        #[source]
        source: DataFusionError,
    },
    /// The DataFusion message, then what exists.
    #[error("{message}\n{hint}")]
    Sql { message: String, hint: String },
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("rule {rule}: {message}")]
    Output { rule: String, message: String },
}

/// Session settings for lake queries: pruning and pushdown on.
pub fn lake_config() -> SessionConfig {
    let mut cfg = SessionConfig::new().with_information_schema(true);
    let p = &mut cfg.options_mut().execution.parquet;
    p.pruning = true;
    p.pushdown_filters = true;
    p.reorder_filters = true;
    p.bloom_filter_on_read = true;
    p.enable_page_index = true;
    cfg
}

/// Schema of a table as queried: its columns plus the `date` and `hour` partition columns.
pub fn queried_schema(t: Table) -> SchemaRef {
    let mut fields: Vec<Field> = t.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("date", DataType::Utf8, false));
    fields.push(Field::new("hour", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// `date=` and `hour=` values of a time (ns since the epoch, UTC).
pub fn partition_of(ns: i64) -> (String, String) {
    let hours = ns.div_euclid(3_600_000_000_000);
    let days = hours.div_euclid(24);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{:02}", hours.rem_euclid(24)))
}

/// A DataFusion session over one lake directory.
pub struct Lake {
    ctx: SessionContext,
    root: PathBuf,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("root", &self.root).finish_non_exhaustive()
    }
}

impl Lake {
    /// Registers every table of the lake at `root`. With `since_ns`, each table is a view of the rows
    /// from then on (partition filter on `date`/`hour`, then `time`), so whole hours are never opened.
    pub async fn open(root: &Path, since_ns: Option<i64>) -> Result<Lake, QueryError> {
        Lake::open_with(root, since_ns, lake_config()).await
    }

    pub async fn open_with(root: &Path, since_ns: Option<i64>, cfg: SessionConfig) -> Result<Lake, QueryError> {
        let ctx = SessionContext::new_with_config(cfg);
        for t in Table::ALL {
            let name = if since_ns.is_some() { format!("__lake_{}", t.name()) } else { t.name().to_string() };
            let dir = root.join(t.name());
            let open_err = |source| QueryError::Open { table: t.name(), path: dir.clone(), source };
            if dir.is_dir() {
                let opts = ListingOptions::new(Arc::new(ParquetFormat::default().with_enable_pruning(true)))
                    .with_file_extension(".parquet")
                    .with_table_partition_cols(vec![("date".into(), DataType::Utf8), ("hour".into(), DataType::Utf8)])
                    .with_file_sort_order(vec![vec![datafusion::prelude::col(t.time_column()).sort(true, false)]]);
                let url = ListingTableUrl::parse(format!("{}/", dir.display())).map_err(open_err)?;
                let config = ListingTableConfig::new(url).with_listing_options(opts).with_schema(t.schema());
                let table = ListingTable::try_new(config).map_err(open_err)?;
                ctx.register_table(name.as_str(), Arc::new(table)).map_err(open_err)?;
            } else {
                // A table nothing was written to yet: empty, same columns.
                let table = MemTable::try_new(queried_schema(t), vec![vec![]]).map_err(open_err)?;
                ctx.register_table(name.as_str(), Arc::new(table)).map_err(open_err)?;
            }
            if let Some(since) = since_ns {
                let (date, hour) = partition_of(since);
                let sql = format!(
                    "CREATE VIEW {} AS SELECT * FROM {name} WHERE (date > '{date}' OR (date = '{date}' AND hour >= \
                     '{hour}')) AND {} >= to_timestamp_nanos({since})",
                    t.name(),
                    t.time_column()
                );
                ctx.sql(&sql).await.map_err(open_err)?;
            }
        }
        for (name, sql) in VIEWS {
            ctx.sql(&format!("CREATE VIEW {name} AS {sql}")).await.map_err(|source| QueryError::Open {
                table: "views",
                path: root.to_path_buf(),
                source,
            })?;
        }
        Ok(Lake { ctx, root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one SQL query; a failure carries DataFusion's message plus the tables and columns that exist.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let run = async {
            let df = self.ctx.sql(sql).await?;
            df.collect().await
        };
        run.await.map_err(|e| QueryError::Sql { message: e.strip_backtrace(), hint: hint(sql, &e) })
    }

    /// Runs a rule over the lake: its findings, suppressed as live evaluation would.
    pub async fn hunt(&self, rule: &Rule) -> Result<(Vec<Finding>, u64), QueryError> {
        let df = self.ctx.sql(&rule.sql).await.map_err(|e| rule_error(rule, "SQL", &e))?;
        let batches = df.collect().await.map_err(|e| rule_error(rule, "run", &e))?;
        let mut found = Vec::new();
        for b in &batches {
            findings_of(0, rule, b, &mut found)
                .map_err(|e| QueryError::Output { rule: rule.id.clone(), message: e.to_string() })?;
        }
        let mut s = Suppressor::default();
        let kept = s.filter(std::slice::from_ref(rule), found);
        Ok((kept, s.suppressed))
    }
}

/// Tables and views that exist; with a column error, the columns of the tables the query names.
fn hint(sql: &str, e: &DataFusionError) -> String {
    let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).chain(VIEWS.iter().map(|v| v.0)).collect();
    let mut h = format!("tables: {}", names.join(", "));
    let msg = e.to_string();
    let lower = sql.to_ascii_lowercase();
    if msg.contains("No field named") || msg.contains("Schema error") || msg.contains("not found") {
        for t in Table::ALL {
            if lower.contains(t.name()) {
                let cols: Vec<String> = queried_schema(t).fields().iter().map(|f| f.name().clone()).collect();
                h.push_str(&format!("\n{} columns: {}", t.name(), cols.join(", ")));
            }
        }
    }
    h
}

/// Output formats of `tracelake query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Renders query results.
pub fn format_batches(batches: &[RecordBatch], format: Format) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    match format {
        Format::Table => {
            out.extend_from_slice(arrow::util::pretty::pretty_format_batches(batches)?.to_string().as_bytes());
            out.push(b'\n');
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
    }
    Ok(out)
}
