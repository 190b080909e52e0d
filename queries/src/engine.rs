//! Rules planned once and re-executed on every new batch (live), plus the
//! checks `tracelake rules check` runs (header, SQL parse, plan against the
//! lake schemas, output columns).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use tracelake_sinks::parquet::Table;

use crate::finding::{Finding, OutputError, Suppressor, check_output, findings_of};
use crate::rule::{Rule, RuleError};

/// Batches of one event table the live rules read.
#[derive(Debug, Default)]
struct TableState {
    /// (round, arrival, rows), oldest first; kept as long as the longest window.
    batches: VecDeque<(u64, Instant, RecordBatch)>,
    round: u64,
}

/// One rule's view of a live table: the batches of this round, or of its window.
#[derive(Debug)]
struct LiveStream {
    schema: SchemaRef,
    state: Arc<Mutex<TableState>>,
    window: Duration,
}

impl PartitionStream for LiveStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches: Vec<RecordBatch> = match self.state.lock() {
            Ok(s) => {
                let since = Instant::now().checked_sub(self.window);
                s.batches
                    .iter()
                    .filter(|(round, at, _)| {
                        *round == s.round || since.is_some_and(|t| *at >= t) && !self.window.is_zero()
                    })
                    .map(|(_, _, b)| b.clone())
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::iter(batches.into_iter().map(Ok))))
    }
}

/// Session settings of rule evaluation: one partition and no repartitioning, so a plan runs on the
/// calling thread without spawning tasks, and spans for error locations.
pub fn session_config() -> SessionConfig {
    let mut cfg = SessionConfig::new()
        .with_target_partitions(1)
        .with_repartition_joins(false)
        .with_repartition_aggregations(false)
        .with_repartition_windows(false)
        .with_repartition_sorts(false)
        .with_round_robin_repartition(false)
        .with_batch_size(64 * 1024);
    cfg.options_mut().sql_parser.collect_spans = true;
    cfg
}

/// A DataFusion error as a rule error: the line inside the file when the error has a location.
pub fn rule_error(rule: &Rule, what: &str, e: &DataFusionError) -> RuleError {
    let located = e.iter().find_map(|e| e.diagnostic().and_then(|d| d.span)).map(|s| s.start.line as usize);
    let line = located.or_else(|| {
        let msg = e.to_string();
        let at = msg.find("Line: ")?;
        msg[at + 6..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    });
    let line = line.filter(|&l| l > 0).map_or(rule.sql_line, |l| rule.sql_line + l - 1);
    let mut msg = format!("{what}: {}", e.strip_backtrace());
    let tables: Vec<&str> = rule.tables.iter().map(|t| t.name()).collect();
    msg.push_str(&format!("\n  tables declared (header `tables:`): {}", tables.join(", ")));
    if msg.contains("No field named") || msg.contains("not found") {
        for t in &rule.tables {
            let cols: Vec<String> = t.schema().fields().iter().map(|f| f.name().clone()).collect();
            msg.push_str(&format!("\n  {} columns: {}", t.name(), cols.join(", ")));
        }
    }
    RuleError::new(&rule.file, line, msg)
}

/// A rule with its physical plan, ready to run again and again.
#[derive(Debug)]
pub struct PlannedRule {
    pub rule: Rule,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    output: SchemaRef,
}

impl PlannedRule {
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output
    }

    /// Runs the plan over what its tables hold now.
    pub async fn run(&self) -> Result<Vec<RecordBatch>, DataFusionError> {
        let plan = reset_plan_states(self.plan.clone())?;
        collect(plan, self.task.clone()).await
    }
}

async fn plan_on(rule: &Rule, states: &[Arc<Mutex<TableState>>; 5]) -> Result<PlannedRule, RuleError> {
    let ctx = SessionContext::new_with_config(session_config());
    for &t in &rule.tables {
        let stream = LiveStream { schema: t.schema(), state: states[slot(t)].clone(), window: rule.window };
        let table = StreamingTable::try_new(t.schema(), vec![Arc::new(stream)])
            .map_err(|e| rule_error(rule, "cannot register the table", &e))?;
        ctx.register_table(t.name(), Arc::new(table)).map_err(|e| rule_error(rule, "cannot register the table", &e))?;
    }
    let state = ctx.state();
    let logical = state.create_logical_plan(&rule.sql).await.map_err(|e| rule_error(rule, "SQL", &e))?;
    match &logical {
        LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Statement(_) | LogicalPlan::Copy(_) => {
            return Err(RuleError::new(&rule.file, rule.sql_line, "a rule must be a query (SELECT ...)"));
        }
        _ => {}
    }
    let output: SchemaRef = Arc::new(logical.schema().as_arrow().clone());
    check_output(&output).map_err(|e| RuleError::new(&rule.file, rule.sql_line, format!("output: {e}")))?;
    if output.field_with_name(&rule.dedup).is_err() {
        return Err(RuleError::new(
            &rule.file,
            rule.sql_line,
            format!("output has no column {:?} to deduplicate on (header `dedup:`)", rule.dedup),
        ));
    }
    let plan = state.create_physical_plan(&logical).await.map_err(|e| rule_error(rule, "plan", &e))?;
    Ok(PlannedRule { rule: rule.clone(), plan, task: ctx.task_ctx(), output })
}

fn slot(t: Table) -> usize {
    match t {
        Table::ProcessActivity => 0,
        Table::FileActivity => 1,
        Table::NetworkActivity => 2,
        Table::DnsActivity => 3,
        Table::KernelActivity => 4,
        // Rules read event tables only (`Rule::parse` refuses others).
        Table::DetectionFinding | Table::IpOwnership => 0,
    }
}

/// Plans a rule against the lake schemas: what `rules check` runs.
pub async fn check(rule: &Rule) -> Result<(), RuleError> {
    let states = std::array::from_fn(|_| Arc::default());
    plan_on(rule, &states).await.map(|_| ())
}

/// What one evaluation round found.
#[derive(Debug, Default)]
pub struct Round {
    /// New findings, after suppression.
    pub findings: Vec<Finding>,
    /// Rules that failed at run time (rule id, error); the others ran.
    pub errors: Vec<(String, String)>,
    /// Rules executed this round.
    pub rules_run: usize,
}

/// Every rule, planned once; each `evaluate` re-executes the plans over the new batches.
#[derive(Debug)]
pub struct RuleEngine {
    planned: Vec<PlannedRule>,
    rules: Vec<Rule>,
    states: [Arc<Mutex<TableState>>; 5],
    /// Longest window of a rule per table: how long batches are kept.
    keep: [Duration; 5],
    round: u64,
    suppressor: Suppressor,
}

impl RuleEngine {
    /// Plans every rule; all their errors at once.
    pub async fn new(rules: Vec<Rule>) -> Result<RuleEngine, Vec<RuleError>> {
        let states: [Arc<Mutex<TableState>>; 5] = std::array::from_fn(|_| Arc::default());
        let mut planned = Vec::new();
        let mut errors = Vec::new();
        let mut keep = [Duration::ZERO; 5];
        for r in &rules {
            match plan_on(r, &states).await {
                Ok(p) => {
                    for t in &r.tables {
                        keep[slot(*t)] = keep[slot(*t)].max(r.window);
                    }
                    planned.push(p);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RuleEngine { planned, rules, states, keep, round: 0, suppressor: Suppressor::default() })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Event tables at least one rule reads.
    pub fn tables(&self) -> Vec<Table> {
        Table::EVENT_TABLES.into_iter().filter(|t| self.rules.iter().any(|r| r.tables.contains(t))).collect()
    }

    pub fn suppressed(&self) -> u64 {
        self.suppressor.suppressed
    }

    /// Runs the rules that read a table with new rows over them (and their windows).
    pub async fn evaluate(&mut self, batches: Vec<(Table, RecordBatch)>) -> Round {
        self.round += 1;
        let now = Instant::now();
        let mut fresh = [false; 5];
        for (t, b) in batches {
            if b.num_rows() == 0 || !Table::EVENT_TABLES.contains(&t) {
                continue;
            }
            let i = slot(t);
            fresh[i] = true;
            if let Ok(mut s) = self.states[i].lock() {
                s.batches.push_back((self.round, now, b));
            }
        }
        for (i, state) in self.states.iter().enumerate() {
            if let Ok(mut s) = state.lock() {
                s.round = self.round;
                let keep = self.keep[i];
                while s.batches.front().is_some_and(|(r, at, _)| *r != self.round && now.duration_since(*at) > keep) {
                    s.batches.pop_front();
                }
            }
        }
        let mut round = Round::default();
        let mut found = Vec::new();
        for (idx, p) in self.planned.iter().enumerate() {
            if !p.rule.tables.iter().any(|t| fresh[slot(*t)]) {
                continue;
            }
            round.rules_run += 1;
            let out = match p.run().await {
                Ok(out) => out,
                Err(e) => {
                    round.errors.push((p.rule.id.clone(), e.strip_backtrace()));
                    continue;
                }
            };
            for b in &out {
                if let Err(e) = findings_of(idx, &p.rule, b, &mut found) {
                    round.errors.push((p.rule.id.clone(), OutputError::to_string(&e)));
                }
            }
        }
        round.findings = self.suppressor.filter(&self.rules, found);
        if self.round.is_multiple_of(64) {
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            self.suppressor.prune(&self.rules, now_ns);
        }
        round
    }
}
