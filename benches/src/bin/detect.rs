//! Detection benchmarks (figures in BENCHMARKS.md, section "Detections").
//!
//! `detect live [--events N] [--batch ROWS]`: the whole built-in rule pack over
//! synthetic enriched events, on one thread: the cost of appending events to
//! the Arrow builders and of evaluating every rule on each batch (plans made
//! once, re-executed per batch).
//!
//! `detect lake --dir DIR [--rows N] [--hours H]`: writes a lake of N
//! network_activity rows over H hours with the real writer, then runs a
//! hunting query over that table with and without a partition filter.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tracelake_model::Kind;
use tracelake_queries::RuleEngine;
use tracelake_queries::builtin;
use tracelake_queries::fixtures::{Fx, Script, context};
use tracelake_queries::lake::Lake;
use tracelake_sinks::parquet::{BatchBuilder, LakeConfig, LakeWriter, Table};

const SHIM: &[(&str, &str)] = &[("/bin/sh", "sh\0-c\0start\0"), ("/usr/bin/containerd-shim-runc-v2", "shim\0")];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

/// A benign mix, as a busy node produces: forks/execs/exits, file opens, connects, a few kernel events.
fn workload(n: usize) -> Vec<Fx> {
    let mut s = Script::new();
    let exes = ["/usr/bin/python3", "/usr/local/bin/node", "/usr/bin/java", "/app/server", "/usr/bin/curl"];
    let paths = ["/etc/hosts", "/app/config.yaml", "/tmp/cache/x", "/var/lib/app/data.db", "/etc/ssl/cert.pem"];
    for i in 0..n {
        let pid = 1000 + (i % 500) as u32;
        match i % 20 {
            0..=3 => {
                let exe = exes[i % exes.len()];
                s.exec(pid, exe, &[exe, "--serve", "--port=8080"]).lineage(SHIM);
            }
            4..=6 => {
                s.file(Kind::FileOpen, pid, "python3", paths[i % paths.len()], 0).exe(exes[i % 5]).lineage(SHIM);
            }
            7..=11 => {
                let ip = ["10.244.1.7", "10.244.2.9", "10.96.12.4", "172.16.0.10"][i % 4];
                s.connect(pid, "java", ip, [8080, 5432, 6379, 9092][i % 4]).exe(exes[i % 5]).lineage(SHIM);
            }
            12..=17 => {
                s.file(Kind::FileOpen, pid, "node", "/app/static/index.html", 0).exe(exes[1]);
            }
            _ => {
                s.syscall(Kind::Setuid, pid, "app", [1000, 0, 0, 0, 0, 0], ["", "", ""]).exe(exes[0]);
            }
        }
    }
    s.events
}

/// Connects only: every row of the lake benchmark lands in the table its query reads.
fn connects(n: usize) -> Vec<Fx> {
    let mut s = Script::new();
    let exes = ["/usr/bin/python3", "/usr/local/bin/node", "/usr/bin/java", "/app/server", "/usr/bin/curl"];
    for i in 0..n {
        let pid = 1000 + (i % 500) as u32;
        let ip = ["10.244.1.7", "10.244.2.9", "10.96.12.4", "172.16.0.10", "10.244.3.3"][i % 5];
        s.connect(pid, "java", ip, [8080, 5432, 6379, 9092, 443][i % 5]).exe(exes[i % 5]).lineage(SHIM);
    }
    s.events
}

fn live(args: &[String]) -> anyhow::Result<()> {
    let events: usize = arg(args, "--events").map_or(Ok(2_000_000), |v| v.parse())?;
    let batch: usize = arg(args, "--batch").map_or(Ok(65_536), |v| v.parse())?;
    let fx = workload(batch.min(events));
    let ctx = context(now_ns() - 60_000_000_000);
    let ids: Vec<_> = fx.iter().map(Fx::identity).collect();
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    // `--skip ID,ID`: leave rules out, to see what each costs.
    let skip = arg(args, "--skip").unwrap_or_default();
    let rules: Vec<_> = builtin::rules()?.into_iter().filter(|r| !skip.split(',').any(|s| s == r.id)).collect();
    let n_rules = rules.len();
    let mut engine = rt.block_on(RuleEngine::new(rules)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let window_rows: usize = arg(args, "--window-rows").map_or(Ok(2_000_000), |v| v.parse())?;
    engine.set_window_rows(window_rows);
    let mut builders: Vec<BatchBuilder> = Table::EVENT_TABLES.into_iter().filter_map(BatchBuilder::new).collect();
    let (mut t_build, mut t_eval, mut done, mut findings, mut rounds) = (Duration::ZERO, Duration::ZERO, 0, 0, 0);
    // Warm-up round (first execution allocates).
    while done < events {
        let t0 = Instant::now();
        let take = batch.min(events - done);
        for (f, id) in fx.iter().zip(&ids).cycle().take(take) {
            let ev = f.event.as_event();
            let t = Table::of(&ev);
            if let Some(b) = builders.iter_mut().find(|b| b.table() == t) {
                b.append(&ctx, &ev, id);
            }
        }
        let mut batches = Vec::new();
        for b in &mut builders {
            if !b.is_empty() {
                batches.push((b.table(), b.finish()?));
            }
        }
        let t1 = Instant::now();
        let round = rt.block_on(engine.evaluate(batches));
        let t2 = Instant::now();
        if !round.errors.is_empty() {
            bail!("rule errors: {:?}", round.errors);
        }
        findings += round.findings.len();
        if rounds > 0 {
            t_build += t1 - t0;
            t_eval += t2 - t1;
            done += take;
        }
        rounds += 1;
    }
    // Windowed rules run at their cadence: the last rows they staged are read at the end, and that counts.
    let t0 = Instant::now();
    let last = rt.block_on(engine.flush());
    t_eval += t0.elapsed();
    findings += last.findings.len();
    let per_s = |d: Duration| done as f64 / d.as_secs_f64() / 1e6;
    println!(
        "live: {n_rules} rules, {done} events in batches of {batch}: evaluate {:.2} M events/s ({:.0} ns/event), \
         build {:.2} M events/s, both {:.2} M events/s per core; {} findings (suppressed repeats: {}); \
         windows hold {} rows, let {} go early (bound {})",
        per_s(t_eval),
        t_eval.as_nanos() as f64 / done as f64,
        per_s(t_build),
        per_s(t_eval + t_build),
        findings,
        engine.suppressed(),
        engine.window_rows_held(),
        engine.window_rows_dropped(),
        window_rows,
    );
    Ok(())
}

fn lake(args: &[String]) -> anyhow::Result<()> {
    let dir = PathBuf::from(arg(args, "--dir").context("--dir DIR")?);
    let rows: usize = arg(args, "--rows").map_or(Ok(10_000_000), |v| v.parse())?;
    let hours: i128 = arg(args, "--hours").map_or(Ok(48), |v| v.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    const HOUR: i128 = 3_600_000_000_000;
    let start = now_ns() - hours * HOUR;
    if !dir.join("network_activity").exists() {
        let t0 = Instant::now();
        let cfg = LakeConfig { dir: dir.clone(), ..LakeConfig::default() };
        let mut writer = LakeWriter::new(&cfg)?;
        let chunk = 1_000_000;
        let fx = connects(chunk.min(rows));
        let ids: Vec<_> = fx.iter().map(Fx::identity).collect();
        let mut builders: Vec<BatchBuilder> = Table::EVENT_TABLES.into_iter().filter_map(BatchBuilder::new).collect();
        let mut written = 0usize;
        let per_hour = (rows as i128 / hours).max(1);
        while written < rows {
            // Each chunk lands in the hour its position says; events 1 ms apart inside it.
            let hour = (written as i128 / per_hour).min(hours - 1);
            let ctx = context(start + hour * HOUR + ((written as i128 % per_hour) * 1_000_000) % HOUR / 2);
            let take = chunk.min(rows - written);
            for (f, id) in fx.iter().zip(&ids).take(take) {
                let ev = f.event.as_event();
                let t = Table::of(&ev);
                if let Some(b) = builders.iter_mut().find(|b| b.table() == t) {
                    b.append(&ctx, &ev, id);
                }
            }
            for b in &mut builders {
                if !b.is_empty() {
                    let batch = b.finish()?;
                    writer.write(b.table(), &batch).map_err(|e| anyhow::anyhow!("{}", e.error))?;
                }
            }
            written += take;
        }
        println!("lake: wrote {rows} rows over {hours} hours in {:.1} s", t0.elapsed().as_secs_f64());
    }
    let last = tracelake_queries::lake::partition_of((start + (hours - 1) * HOUR + HOUR / 4) as i64);
    let queries = [
        (
            "one hour, partition filter",
            format!(
                "SELECT container_id, pid, exe, count(*) AS n FROM network_activity \
                 WHERE date = '{}' AND hour = '{}' AND remote_ip = '172.16.0.10' GROUP BY 1, 2, 3",
                last.0, last.1
            ),
        ),
        (
            "whole lake, no partition filter",
            "SELECT container_id, pid, exe, count(*) AS n FROM network_activity \
             WHERE remote_ip = '172.16.0.10' GROUP BY 1, 2, 3"
                .to_string(),
        ),
    ];
    rt.block_on(async {
        let lake = Lake::open(&dir, None).await?;
        let total = lake.sql("SELECT count(*) FROM network_activity").await?;
        println!("lake: network_activity rows: {:?}", arrow_count(&total));
        for (name, sql) in &queries {
            let mut best = Duration::MAX;
            let mut n = 0;
            for _ in 0..3 {
                let t0 = Instant::now();
                let out = lake.sql(sql).await?;
                best = best.min(t0.elapsed());
                n = out.iter().map(|b| b.num_rows()).sum::<usize>();
            }
            println!("lake query ({name}): best of 3 {:.3} s, {n} groups", best.as_secs_f64());
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

fn arrow_count(b: &[arrow::array::RecordBatch]) -> Option<i64> {
    use arrow::array::AsArray;
    b.first().map(|b| b.column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("live") => live(&args),
        Some("lake") => lake(&args),
        _ => bail!(
            "usage: detect live [--events N] [--batch ROWS] [--skip ID,ID] [--window-rows N] | detect lake --dir DIR [--rows N] [--hours H]"
        ),
    }
}
