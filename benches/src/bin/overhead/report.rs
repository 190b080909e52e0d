//! The summary table and the per-run details printed after it.

use std::fmt::Write as _;

use tracelake_model::Kind;

use super::{Config, Detail, LoopRun, Opts};

fn kind_count(list: &[(Kind, u64)], kind: Kind) -> u64 {
    list.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Per-round ratios of `runs` to `to` (rounds where both were measured):
/// pairing runs of one round cancels drift slower than a round.
fn paired(runs: &[LoopRun], to: &[LoopRun]) -> Vec<f64> {
    runs.iter().zip(to).map(|(r, t)| r.rate() / t.rate()).collect()
}

pub fn table(opts: &Opts, runs: &[Vec<LoopRun>], unavailable: &[Option<String>]) -> String {
    let wall: Vec<f64> = runs.iter().map(|r| median(&r.iter().map(LoopRun::rate).collect::<Vec<_>>())).collect();
    let cpu: Vec<f64> = runs.iter().map(|r| median(&r.iter().map(LoopRun::cpu_rate).collect::<Vec<_>>())).collect();
    let ratio = |x: f64, to: f64| if to.is_finite() && x.is_finite() { format!("{:.3}", x / to) } else { "-".into() };
    let spread = |v: Vec<f64>| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if v.is_empty() { "-".to_string() } else { format!("{:.3} {lo:.2}-{hi:.2}", median(&v)) }
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nmedian of {} round(s)                    {:>13} {:>11} {:>9} {:>19} | {:>14} {:>11} {:>9}",
        opts.rounds,
        "iterations/s",
        "vs baseline",
        "vs floor",
        "paired, range",
        "per CPU-second",
        "vs baseline",
        "vs floor"
    );
    for &cfg in &opts.only {
        let i = cfg.index();
        let (base, floor) = cfg.reference();
        let name = format!("{} {}", cfg.letter(), cfg.label());
        if let Some(why) = &unavailable[i] {
            let _ = writeln!(t, "{name:<40} not measured: {why}");
            continue;
        }
        let _ = writeln!(
            t,
            "{name:<40} {:>13.0} {:>11} {:>9} {:>19} | {:>14.0} {:>11} {:>9}",
            wall[i],
            ratio(wall[i], wall[base]),
            ratio(wall[i], wall[floor]),
            spread(paired(&runs[i], &runs[floor])),
            cpu[i],
            ratio(cpu[i], cpu[base]),
            ratio(cpu[i], cpu[floor])
        );
    }
    let dirty = runs.iter().flatten().filter(|r| r.foreign > 0).count();
    if dirty > 0 {
        let _ = writeln!(
            t,
            "WARNING: {dirty} run(s) overlapped other tracing programs (see below); their figures are not clean."
        );
    }
    let _ = writeln!(
        t,
        "vs baseline / vs floor: ratio of the medians. paired: median, min and max over rounds of the\n\
         ratio to that round's floor run. per CPU-second: iterations per second of the loop's own CPU time.\n\
         Exec storm (i-k): iterations are spawns of /bin/true, ratios to i and j; its per CPU-second figure\n\
         leaves out the children's CPU, so read its wall figures."
    );
    t
}

pub fn details(details: &[(usize, Config, LoopRun, Detail)], comm: &str) -> String {
    let mut t = String::new();
    for (round, cfg, run, d) in details {
        let _ = write!(
            t,
            "round {round} {}: {:.0} iterations/s, {:.0} per CPU-second ({} opens in {:.2} s, {:.2} s CPU, {:.2} s steal)",
            cfg.letter(),
            run.rate(),
            run.cpu_rate(),
            run.iters,
            run.secs,
            run.cpu_secs,
            run.steal_secs
        );
        if run.foreign > 0 {
            let _ = write!(t, " [{} other tracing programs loaded: not a clean run]", run.foreign);
        }
        match d {
            Detail::None => {}
            Detail::Sensor(b) => {
                let (s, o) = &**b;
                let _ = write!(
                    t,
                    "\n    loop's file_open records: {} first occurrence(s) + {} summary(ies) folding {} repeats = {} opens\
                     \n    kernel, all processes: emitted {} (file_open {}), aggregated {} (file_open {}), dropped {}, filtered {}, agg_full {}; reader delivered {} incl. {} summaries",
                    o.first,
                    o.summaries,
                    o.folded,
                    o.first + o.folded,
                    s.emitted_total,
                    kind_count(&s.emitted, Kind::FileOpen),
                    s.aggregated_total,
                    kind_count(&s.aggregated, Kind::FileOpen),
                    s.dropped_total,
                    s.filtered,
                    s.agg_full,
                    s.delivered,
                    s.summaries,
                );
            }
            Detail::Bpftrace { counted } => {
                let counted = counted.map_or_else(|| "?".to_string(), |n| n.to_string());
                let _ = write!(t, "\n    bpftrace counted {counted} openat for comm {comm:?}");
            }
            Detail::Audit { lost } => {
                let _ = write!(t, "\n    audit records lost (kernel backlog full): {lost}");
            }
        }
        t.push('\n');
    }
    t
}
