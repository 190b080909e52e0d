//! Rules planned once and re-executed on every new batch (live), plus the
//! checks `tracelake rules check` runs (header, SQL parse, plan against the
//! lake schemas, output columns).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use tracelake_sinks::parquet::Table;

use crate::finding::{Finding, OutputError, Suppressor, check_output, findings_of};
use crate::rule::{Rule, RuleError};

/// Batches of one event table the live rules read: a shared table holds the current round's, a windowed
/// rule's own table its window (arrival, rows), oldest first.
#[derive(Debug, Default)]
struct TableState {
    batches: VecDeque<(Instant, RecordBatch)>,
}

/// One rule's view of a live table: whatever the table holds now.
#[derive(Debug)]
struct LiveStream {
    schema: SchemaRef,
    state: Arc<Mutex<TableState>>,
}

impl PartitionStream for LiveStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches: Vec<RecordBatch> =
            self.state.lock().map(|s| s.batches.iter().map(|(_, b)| b.clone()).collect()).unwrap_or_default();
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

/// What a windowed rule keeps of one table between its runs: only the rows its own filter lets through,
/// and only the columns it reads. A 60 s window of every connect on a busy node would
/// otherwise be rescanned whole, with every column, on each batch.
#[derive(Debug)]
struct Stage {
    table: Table,
    /// Filter and projection over the batches of the current round.
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    /// The staged batches the rule's own plan reads.
    window: Arc<Mutex<TableState>>,
}

impl Stage {
    async fn run(&self) -> Result<Vec<RecordBatch>, DataFusionError> {
        let plan = reset_plan_states(self.plan.clone())?;
        Ok(collect(plan, self.task.clone()).await?.into_iter().filter(|b| b.num_rows() > 0).collect())
    }
}

/// How often a windowed rule re-reads its window: its findings are at most this late, and each staged
/// row is aggregated about `window / cadence` times instead of once per batch.
fn cadence(window: Duration) -> Duration {
    (window / 12).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// A rule with its physical plan, ready to run again and again.
#[derive(Debug)]
pub struct PlannedRule {
    pub rule: Rule,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    output: SchemaRef,
    /// Windowed rules only: one per table read.
    stages: Vec<Stage>,
    /// Windowed rules: staged rows that left the window early (the row bound).
    dropped: u64,
    /// Windowed rules: rows were staged since the last run.
    pending: bool,
    last_run: Option<Instant>,
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

    /// Windowed rules: stages the round's new rows of each table and forgets those older than the window,
    /// and the oldest beyond `max_rows`.
    async fn stage(&mut self, fresh: &[bool; 5], now: Instant, max_rows: usize) -> Result<(), DataFusionError> {
        for s in &self.stages {
            let staged = if fresh[slot(s.table)] { s.run().await? } else { Vec::new() };
            self.pending |= !staged.is_empty();
            let Ok(mut w) = s.window.lock() else { continue };
            w.batches.extend(staged.into_iter().map(|b| (now, b)));
            while w.batches.front().is_some_and(|(at, _)| now.duration_since(*at) > self.rule.window) {
                w.batches.pop_front();
            }
            // The round's own rows stay even beyond the bound.
            let mut rows: usize = w.batches.iter().map(|(_, b)| b.num_rows()).sum();
            while rows > max_rows && w.batches.front().is_some_and(|(at, _)| *at != now) {
                let Some((_, b)) = w.batches.pop_front() else { break };
                rows -= b.num_rows();
                if self.dropped == 0 {
                    tracing::warn!(
                        rule = %self.rule.id,
                        max_rows,
                        "detections: window over its row bound; the oldest rows leave it early (counted)"
                    );
                }
                self.dropped += b.num_rows() as u64;
            }
        }
        Ok(())
    }
}

/// The rule's logical plan over live tables of the given schemas and states; the output checked.
async fn logical_on(
    rule: &Rule,
    tables: &[(Table, SchemaRef, Arc<Mutex<TableState>>)],
) -> Result<(SessionContext, LogicalPlan, SchemaRef), RuleError> {
    let ctx = SessionContext::new_with_config(session_config());
    for (t, schema, state) in tables {
        let stream = LiveStream { schema: schema.clone(), state: state.clone() };
        let table = StreamingTable::try_new(schema.clone(), vec![Arc::new(stream)])
            .map_err(|e| rule_error(rule, "cannot register the table", &e))?;
        ctx.register_table(t.name(), Arc::new(table)).map_err(|e| rule_error(rule, "cannot register the table", &e))?;
    }
    let logical = ctx.state().create_logical_plan(&rule.sql).await.map_err(|e| rule_error(rule, "SQL", &e))?;
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
    Ok((ctx, logical, output))
}

async fn plan_on(rule: &Rule, shared: &[Arc<Mutex<TableState>>; 5]) -> Result<PlannedRule, RuleError> {
    let full: Vec<_> = rule.tables.iter().map(|&t| (t, t.schema(), shared[slot(t)].clone())).collect();
    let (ctx, logical, output) = logical_on(rule, &full).await?;
    let physical = |ctx: SessionContext, logical: LogicalPlan| async move {
        let plan = ctx.state().create_physical_plan(&logical).await.map_err(|e| rule_error(rule, "plan", &e))?;
        Ok::<_, RuleError>((plan, ctx.task_ctx()))
    };
    if rule.window.is_zero() {
        let (plan, task) = physical(ctx, logical).await?;
        return Ok(PlannedRule {
            rule: rule.clone(),
            plan,
            task,
            output,
            stages: Vec::new(),
            pending: false,
            last_run: None,
            dropped: 0,
        });
    }
    // A windowed rule reads its own windows, which hold only the rows and columns it needs: planned again
    // over tables of just those columns.
    let optimized = ctx.state().optimize(&logical).map_err(|e| rule_error(rule, "plan", &e))?;
    let mut own = Vec::new();
    let mut stages = Vec::new();
    for &t in &rule.tables {
        let (columns, predicate) = scan_needs(&optimized, t);
        let schema = Arc::new(t.schema().project(&columns).map_err(|e| rule_error(rule, "plan", &e.into()))?);
        let (plan, task) =
            stage_plan(t, &columns, predicate, &shared[slot(t)]).await.map_err(|e| rule_error(rule, "plan", &e))?;
        let window = Arc::<Mutex<TableState>>::default();
        own.push((t, schema, window.clone()));
        stages.push(Stage { table: t, plan, task, window });
    }
    let (ctx, logical, _) = logical_on(rule, &own).await?;
    let (plan, task) = physical(ctx, logical).await?;
    Ok(PlannedRule { rule: rule.clone(), plan, task, output, stages, pending: false, last_run: None, dropped: 0 })
}

/// The columns a rule reads of `table` (plus those that may not be null) and the filter right above its
/// scan, from the optimized plan. Read twice (a self-join): the union of the columns and no filter.
fn scan_needs(plan: &LogicalPlan, table: Table) -> (Vec<usize>, Option<Expr>) {
    let schema = table.schema();
    let mut columns: Vec<usize> =
        schema.fields().iter().enumerate().filter(|(_, f)| !f.is_nullable()).map(|(i, _)| i).collect();
    let (mut scans, mut filters) = (0, Vec::new());
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::TableScan(scan) if scan.table_name.table() == table.name() => {
                scans += 1;
                match &scan.projection {
                    Some(p) => columns.extend(p),
                    None => columns.extend(0..schema.fields().len()),
                }
            }
            LogicalPlan::Filter(f) => {
                if let LogicalPlan::TableScan(scan) = f.input.as_ref()
                    && scan.table_name.table() == table.name()
                {
                    filters.push(f.predicate.clone());
                }
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    columns.sort_unstable();
    columns.dedup();
    let predicate = if scans == 1 && filters.len() == 1 { filters.pop() } else { None };
    (columns, predicate)
}

/// Filter and projection of one table over the current round's batches (the shared live table).
async fn stage_plan(
    table: Table,
    columns: &[usize],
    predicate: Option<Expr>,
    shared: &Arc<Mutex<TableState>>,
) -> Result<(Arc<dyn ExecutionPlan>, Arc<TaskContext>), DataFusionError> {
    let ctx = SessionContext::new_with_config(session_config());
    let stream = LiveStream { schema: table.schema(), state: shared.clone() };
    let provider = Arc::new(StreamingTable::try_new(table.schema(), vec![Arc::new(stream)])?);
    let mut b = LogicalPlanBuilder::scan(table.name(), provider_as_source(provider), Some(columns.to_vec()))?;
    if let Some(p) = predicate {
        // The rule may have named the table by an alias; the stage scans it by its own name.
        let p = p
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                    e => Transformed::no(e),
                })
            })?
            .data;
        b = b.filter(p)?;
    }
    let plan = ctx.state().create_physical_plan(&b.build()?).await?;
    Ok((plan, ctx.task_ctx()))
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
    round: u64,
    suppressor: Suppressor,
    /// Rows a windowed rule keeps per table (`DetectionsConfig::window_rows`).
    window_rows: usize,
}

impl RuleEngine {
    /// Plans every rule; all their errors at once.
    pub async fn new(rules: Vec<Rule>) -> Result<RuleEngine, Vec<RuleError>> {
        let states: [Arc<Mutex<TableState>>; 5] = std::array::from_fn(|_| Arc::default());
        let mut planned = Vec::new();
        let mut errors = Vec::new();
        for r in &rules {
            match plan_on(r, &states).await {
                Ok(p) => planned.push(p),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RuleEngine {
            planned,
            rules,
            states,
            round: 0,
            suppressor: Suppressor::default(),
            window_rows: crate::config::DetectionsConfig::default().window_rows,
        })
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

    /// Bounds the rows each windowed rule keeps per table.
    pub fn set_window_rows(&mut self, rows: usize) {
        self.window_rows = rows.max(1);
    }

    /// Staged rows that left a window early because of the row bound (all windowed rules).
    pub fn window_rows_dropped(&self) -> u64 {
        self.planned.iter().map(|p| p.dropped).sum()
    }

    /// Rows the windowed rules hold now (all tables).
    pub fn window_rows_held(&self) -> usize {
        let held = |s: &Stage| s.window.lock().map_or(0, |w| w.batches.iter().map(|(_, b)| b.num_rows()).sum());
        self.planned.iter().flat_map(|p| &p.stages).map(held).sum()
    }

    /// Runs the rules that read a table with new rows over them. Windowed rules stage the new rows and
    /// re-read their window at their cadence; call with no batches now and then so they run when idle.
    pub async fn evaluate(&mut self, batches: Vec<(Table, RecordBatch)>) -> Round {
        self.run_round(batches, false).await
    }

    /// Runs every windowed rule with rows staged since its last run, whatever its cadence (at the end).
    pub async fn flush(&mut self) -> Round {
        self.run_round(Vec::new(), true).await
    }

    async fn run_round(&mut self, batches: Vec<(Table, RecordBatch)>, force: bool) -> Round {
        self.round += 1;
        let now = Instant::now();
        // The shared tables hold this round only: windows live in each rule's stages.
        for state in &self.states {
            if let Ok(mut s) = state.lock() {
                s.batches.clear();
            }
        }
        let mut fresh = [false; 5];
        for (t, b) in batches {
            if b.num_rows() == 0 || !Table::EVENT_TABLES.contains(&t) {
                continue;
            }
            let i = slot(t);
            fresh[i] = true;
            if let Ok(mut s) = self.states[i].lock() {
                s.batches.push_back((now, b));
            }
        }
        let mut round = Round::default();
        let mut found = Vec::new();
        for (idx, p) in self.planned.iter_mut().enumerate() {
            let new_rows = p.rule.tables.iter().any(|t| fresh[slot(*t)]);
            if p.stages.is_empty() {
                if !new_rows {
                    continue;
                }
            } else {
                if let Err(e) = p.stage(&fresh, now, self.window_rows).await {
                    round.errors.push((p.rule.id.clone(), e.strip_backtrace()));
                    continue;
                }
                let due = force || p.last_run.is_none_or(|t| now.duration_since(t) >= cadence(p.rule.window));
                if !(p.pending && due) {
                    continue;
                }
                p.pending = false;
                p.last_run = Some(now);
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
