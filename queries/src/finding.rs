//! Findings: rule output rows turned into `detection_finding` rows, with
//! the rule's metadata and the identity chain, deduplicated per rule,
//! container (or workload) and key within the rule's suppression window.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Builder, ListBuilder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
    UInt32Builder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, TimeUnit};
use tracelake_sinks::parquet::Table;

use crate::rule::Rule;

/// Most event ids kept in one finding (an aggregate can match thousands).
pub const MAX_EVENT_IDS: usize = 256;

/// Identity columns a rule's output may carry, copied into the finding.
pub const IDENTITY: [&str; 10] =
    ["node", "namespace", "pod", "pod_uid", "workload_kind", "workload", "container_id", "image", "exe", "cmdline"];

/// Output columns with a meaning of their own; any other column is added to the message as `name=value`.
const KNOWN: [&str; 4] = ["time", "event_id", "event_ids", "pid"];

/// One finding, before it becomes a row.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// Index of the rule in the engine's list.
    pub rule: usize,
    pub rule_id: String,
    /// Of the (first) matching event, ns since the epoch.
    pub time_ns: i64,
    pub event_ids: Vec<String>,
    /// In `IDENTITY` order.
    pub identity: [Option<String>; 10],
    pub pid: Option<u32>,
    /// Value of the rule's `dedup` column.
    pub key: String,
    pub message: String,
}

impl Finding {
    pub fn get(&self, column: &str) -> Option<&str> {
        IDENTITY.iter().position(|&c| c == column).and_then(|i| self.identity[i].as_deref())
    }

    /// Sets an identity column the finding does not have yet (`IDENTITY` names them); a known value stays.
    pub fn fill(&mut self, column: &str, value: Option<&str>) {
        if let (Some(i), Some(v)) = (IDENTITY.iter().position(|&c| c == column), value)
            && self.identity[i].is_none()
        {
            self.identity[i] = Some(v.to_string());
        }
    }

    /// Stable id: the same rule on the same first event gives the same id (live and hunt agree).
    pub fn finding_id(&self) -> String {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in self.rule_id.bytes().chain([0]).chain(self.event_ids.first().map_or("", String::as_str).bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        for b in self.time_ns.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// Why a rule's output could not be read as findings.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("the query's output has no column {0:?}")]
    Missing(&'static str),
    #[error("output column {column:?} is {found}, expected {expected}")]
    Type { column: String, found: DataType, expected: &'static str },
    #[error("cannot convert output column {column:?}")]
    Cast {
        column: String,
        #[source]
        source: arrow::error::ArrowError,
    },
}

/// Checks that an output schema can be read as findings.
pub fn check_output(schema: &arrow::datatypes::Schema) -> Result<(), OutputError> {
    match schema.field_with_name("time").map(|f| f.data_type().clone()) {
        Ok(DataType::Timestamp(_, _)) => {}
        Ok(found) => return Err(OutputError::Type { column: "time".into(), found, expected: "a timestamp" }),
        Err(_) => return Err(OutputError::Missing("time")),
    }
    let id = schema.field_with_name("event_id").ok();
    let ids = schema.field_with_name("event_ids").ok();
    match (id, ids) {
        (None, None) => return Err(OutputError::Missing("event_id")),
        (_, Some(f)) if !matches!(f.data_type(), DataType::List(_) | DataType::LargeList(_)) => {
            return Err(OutputError::Type {
                column: "event_ids".into(),
                found: f.data_type().clone(),
                expected: "a list of strings (array_agg(event_id))",
            });
        }
        _ => {}
    }
    Ok(())
}

fn is_table_column(name: &str) -> bool {
    Table::EVENT_TABLES.iter().any(|t| t.schema().field_with_name(name).is_ok())
}

fn text_column(batch: &RecordBatch, name: &str) -> Result<Option<ArrayRef>, OutputError> {
    let Some(col) = batch.column_by_name(name) else { return Ok(None) };
    if col.data_type() == &DataType::Utf8 {
        return Ok(Some(col.clone()));
    }
    cast(col, &DataType::Utf8).map(Some).map_err(|source| OutputError::Cast { column: name.into(), source })
}

fn str_at(col: &Option<ArrayRef>, row: usize) -> Option<String> {
    let c = col.as_ref()?;
    (!c.is_null(row)).then(|| c.as_string::<i32>().value(row).to_string())
}

/// Reads a rule's output batch into findings (before suppression).
pub fn findings_of(
    rule_idx: usize,
    rule: &Rule,
    batch: &RecordBatch,
    out: &mut Vec<Finding>,
) -> Result<(), OutputError> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    check_output(batch.schema_ref())?;
    let time_col = batch.column_by_name("time").ok_or(OutputError::Missing("time"))?;
    let time = cast(time_col, &DataType::Timestamp(TimeUnit::Nanosecond, None))
        .map_err(|source| OutputError::Cast { column: "time".into(), source })?;
    let time = time.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
    let event_id = text_column(batch, "event_id")?;
    let ids_type = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let event_ids = match batch.column_by_name("event_ids") {
        Some(c) => Some(cast(c, &ids_type).map_err(|source| OutputError::Cast { column: "event_ids".into(), source })?),
        None => None,
    };
    let identity: Vec<Option<ArrayRef>> = IDENTITY.iter().map(|c| text_column(batch, c)).collect::<Result<_, _>>()?;
    let pid = match batch.column_by_name("pid") {
        Some(c) => {
            Some(cast(c, &DataType::UInt32).map_err(|source| OutputError::Cast { column: "pid".into(), source })?)
        }
        None => None,
    };
    let schema = batch.schema();
    // Computed columns (counts, peers) go into the message; the tables' own columns do not (SELECT *).
    let extra: Vec<(String, ArrayRef)> = schema
        .fields()
        .iter()
        .filter(|f| !KNOWN.contains(&f.name().as_str()) && !is_table_column(f.name()))
        .filter_map(|f| Some((f.name().clone(), text_column(batch, f.name()).ok()??)))
        .collect();
    let key = text_column(batch, &rule.dedup)?;
    for row in 0..batch.num_rows() {
        let mut ids = Vec::new();
        if let Some(v) = str_at(&event_id, row) {
            ids.push(v);
        }
        if let Some(list) = &event_ids {
            let list = list.as_list::<i32>();
            if !list.is_null(row) {
                let values = list.value(row);
                let values = values.as_string::<i32>();
                for v in values.iter().flatten() {
                    if ids.len() >= MAX_EVENT_IDS {
                        break;
                    }
                    if !ids.iter().any(|x| x == v) {
                        ids.push(v.to_string());
                    }
                }
            }
        }
        let mut message = rule.title.clone();
        let mut sep = " (";
        for (name, col) in &extra {
            if let Some(v) = str_at(&Some(col.clone()), row) {
                message.push_str(sep);
                message.push_str(name);
                message.push('=');
                message.push_str(&v);
                sep = ", ";
            }
        }
        if sep == ", " {
            message.push(')');
        }
        out.push(Finding {
            rule: rule_idx,
            rule_id: rule.id.clone(),
            time_ns: if time.is_null(row) { 0 } else { time.value(row) },
            event_ids: ids,
            identity: std::array::from_fn(|i| str_at(&identity[i], row)),
            pid: pid.as_ref().and_then(|p| {
                let p = p.as_primitive::<arrow::datatypes::UInt32Type>();
                (!p.is_null(row)).then(|| p.value(row))
            }),
            key: str_at(&key, row).unwrap_or_default(),
            message,
        });
    }
    Ok(())
}

/// Remembers when each (rule, container or workload, key) last produced a finding.
#[derive(Debug, Default)]
pub struct Suppressor {
    last: HashMap<(usize, String, String), i64>,
    /// Findings dropped as repeats.
    pub suppressed: u64,
}

impl Suppressor {
    /// Keeps the findings that are not repeats within their rule's window; in time order.
    pub fn filter(&mut self, rules: &[Rule], mut findings: Vec<Finding>) -> Vec<Finding> {
        findings.sort_by_key(|f| f.time_ns);
        let mut kept = Vec::new();
        for f in findings {
            let rule = &rules[f.rule];
            let scope = f.get("container_id").or(f.get("workload")).or(f.get("node")).unwrap_or("").to_string();
            let key = f.key.clone();
            let window = i64::try_from(rule.suppress.as_nanos()).unwrap_or(i64::MAX);
            let slot = self.last.entry((f.rule, scope, key)).or_insert(i64::MIN);
            if *slot != i64::MIN && f.time_ns >= *slot && f.time_ns - *slot < window {
                self.suppressed += 1;
                continue;
            }
            *slot = (*slot).max(f.time_ns);
            kept.push(f);
        }
        kept
    }

    /// Forgets keys whose window ended before `now_ns` (bounds the memory).
    pub fn prune(&mut self, rules: &[Rule], now_ns: i64) {
        self.last.retain(|(rule, _, _), t| {
            let w = i64::try_from(rules[*rule].suppress.as_nanos()).unwrap_or(i64::MAX);
            now_ns.saturating_sub(*t) < w
        });
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// `detection_finding` rows (docs/schema.md) of findings.
pub fn findings_batch(rules: &[Rule], findings: &[Finding]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut time = TimestampNanosecondBuilder::new().with_timezone("UTC");
    // finding_id, rule_id, rule_name, severity (then severity_id), message, tactic, technique.
    let mut text: [StringBuilder; 7] = Default::default();
    let mut severity_id = Int32Builder::new();
    let mut ids: [StringBuilder; 8] = Default::default(); // node .. image
    let mut pid = UInt32Builder::new();
    let mut exe = StringBuilder::new();
    let mut cmdline = StringBuilder::new();
    let mut event_ids = ListBuilder::new(StringBuilder::new());
    for f in findings {
        let r = &rules[f.rule];
        time.append_value(f.time_ns);
        let fid = f.finding_id();
        let values = [&fid, &r.id, &r.title, &r.severity, &f.message, &r.tactic, &r.mitre];
        for (b, v) in text.iter_mut().zip(values) {
            b.append_value(v);
        }
        severity_id.append_value(r.severity_id);
        for (b, col) in ids.iter_mut().zip(&IDENTITY[..8]) {
            b.append_option(f.get(col));
        }
        pid.append_option(f.pid);
        exe.append_option(f.get("exe"));
        cmdline.append_option(f.get("cmdline"));
        for id in &f.event_ids {
            event_ids.values().append_value(id);
        }
        event_ids.append(true);
    }
    let [mut finding_id, mut rule_id, mut rule_name, mut severity, mut message, mut tactic, mut technique] = text;
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(finding_id.finish()),
        Arc::new(rule_id.finish()),
        Arc::new(rule_name.finish()),
        Arc::new(severity.finish()),
        Arc::new(severity_id.finish()),
        Arc::new(message.finish()),
        Arc::new(tactic.finish()),
        Arc::new(technique.finish()),
    ];
    for b in &mut ids {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(pid.finish()));
    cols.push(Arc::new(exe.finish()));
    cols.push(Arc::new(cmdline.finish()));
    cols.push(Arc::new(event_ids.finish()));
    RecordBatch::try_new(Table::DetectionFinding.schema(), cols)
}
