//! `tracelake rules list|check`, `tracelake query`, `tracelake hunt`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tracelake_queries::lake::{Format, Lake, format_batches};
use tracelake_queries::{Rule, RuleError, builtin, engine, findings_batch};

use crate::cli::{HuntArgs, OutputFormat, QueryArgs, RuleSourceArgs, RulesArgs, RulesCommand};
use crate::config;

/// Built-in rules, then each configured directory's, then each `extra` directory's: every file's result.
pub fn load_rules(builtin_too: bool, dirs: &[PathBuf]) -> Vec<Result<Rule, RuleError>> {
    let mut all = Vec::new();
    if builtin_too {
        all.extend(
            builtin::RULES.iter().map(|(name, text)| Rule::parse(&std::path::Path::new("builtin").join(name), text)),
        );
    }
    for d in dirs {
        match Rule::load_dir(d) {
            Ok(rules) => all.extend(rules),
            Err(e) => all.push(Err(e)),
        }
    }
    all
}

fn sources(args: &RuleSourceArgs) -> anyhow::Result<Vec<Result<Rule, RuleError>>> {
    let mut dirs = Vec::new();
    if !args.only_dir {
        dirs.extend(config::load(args.config.as_deref())?.detections.rule_dirs);
    }
    dirs.extend(args.dir.iter().cloned());
    Ok(load_rules(!args.only_dir, &dirs))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")
}

pub fn rules(args: &RulesArgs) -> anyhow::Result<()> {
    match &args.command {
        RulesCommand::List(src) => {
            let mut out = Vec::new();
            for r in sources(src)? {
                match r {
                    Ok(r) => writeln!(
                        out,
                        "{:<12} {:<13} {:<20} {:<45} {:<10} {}  [{}]",
                        r.id,
                        r.severity,
                        r.tactic,
                        r.technique,
                        r.mitre,
                        r.title,
                        r.file.display()
                    )?,
                    Err(e) => writeln!(out, "{e}")?,
                }
            }
            write_out(&out)
        }
        RulesCommand::Check(src) => {
            let rt = runtime()?;
            let mut bad = 0;
            let mut ok = 0;
            let mut ids = std::collections::HashMap::new();
            for r in sources(src)? {
                let result = match r {
                    Ok(r) => {
                        if let Some(first) = ids.insert(r.id.clone(), r.file.clone()) {
                            Err(RuleError::new(&r.file, 1, format!("id {} already used by {}", r.id, first.display())))
                        } else {
                            rt.block_on(engine::check(&r))
                        }
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} rule(s) with errors, {ok} ok");
            }
            println!("{ok} rules ok");
            Ok(())
        }
    }
}

fn format(f: OutputFormat) -> Format {
    match f {
        OutputFormat::Table => Format::Table,
        OutputFormat::Json => Format::Json,
        OutputFormat::Csv => Format::Csv,
    }
}

fn data_dir(arg: &Option<PathBuf>, cfg: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    Ok(match arg {
        Some(d) => d.clone(),
        None => config::load(cfg)?.sinks.lake.dir,
    })
}

pub fn query(args: &QueryArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args.data_dir, args.config.as_deref())?;
    let sql = if args.sql == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the query from stdin")?;
        s
    } else if let Some(path) = args.sql.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("cannot read the query from {path}"))?
    } else {
        args.sql.clone()
    };
    let rt = runtime()?;
    let batches = rt.block_on(async {
        let lake = Lake::open(&dir, None).await?;
        lake.sql(&sql).await
    })?;
    let out = format_batches(&batches, format(args.format))?;
    write_out(&out)
}

fn write_out(out: &[u8]) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("stdout"),
    }
}

pub fn hunt(args: &HuntArgs) -> anyhow::Result<()> {
    let cfg = config::load(args.config.as_deref())?;
    let dir = args.data_dir.clone().unwrap_or(cfg.sinks.lake.dir);
    let mut dirs = cfg.detections.rule_dirs;
    dirs.extend(args.dir.iter().cloned());
    let rule = load_rules(true, &dirs)
        .into_iter()
        .filter_map(Result::ok)
        .find(|r| r.id == args.rule)
        .with_context(|| format!("no rule {} (see `tracelake rules list`)", args.rule))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let since = i64::try_from(now.saturating_sub(args.since.as_nanos())).unwrap_or(0);
    let rt = runtime()?;
    let (findings, suppressed) = rt.block_on(async {
        let lake = Lake::open(&dir, Some(since)).await?;
        lake.hunt(&rule).await
    })?;
    eprintln!("{}: {} finding(s), {} suppressed as repeats ({})", rule.id, findings.len(), suppressed, rule.title);
    let batch = findings_batch(std::slice::from_ref(&rule), &findings)?;
    write_out(&format_batches(&[batch], format(args.format))?)
}
