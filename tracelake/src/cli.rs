//! Command-line interface.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tracelake", version, about = "Runtime security for Kubernetes nodes, built on eBPF")]
pub struct Cli {
    /// Log lines on standard error: `text` for people, `json` (one object per line: timestamp,
    /// level, target, fields) for a cluster's log shipper.
    #[arg(long, global = true, value_enum, env = "TRACELAKE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `--log-format` of this process, set once by `main` for `init_logging`.
pub static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node sensor (embedded all-in-one mode).
    Run(RunArgs),
    /// Node agent: sensor + enricher, batches to Kafka (docs/kafka.md), spooled on disk while the broker is away.
    Agent(AgentArgs),
    /// Lake service: consumes the Kafka topics in a consumer group and writes the Parquet lake.
    Lake(LakeArgs),
    /// Check a configuration file and print the effective configuration.
    Config(ConfigArgs),
    /// Who held an IP address (at a time, or its whole history), from the persisted IP history.
    Whois(WhoisArgs),
    /// Detection rules: list them, or check them (header, SQL, plan against the lake schemas).
    Rules(RulesArgs),
    /// Run SQL over the Parquet lake (every table, with `date`/`hour` partition columns, and views).
    Query(QueryArgs),
    /// Run one detection rule over the lake (back-testing, hunting).
    Hunt(HuntArgs),
    /// Behaviour profiles of this node's workloads: export, import (reviewed, edited, locked), diff.
    Profile(ProfileArgs),
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(subcommand)]
    pub command: ProfileCommand,
    /// The node's profile file (default: detections.profiles.file, else profiles.yaml in enricher.state_dir).
    #[arg(long, global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// TOML configuration file (for the default file).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Print the node's profiles as YAML.
    Export,
    /// Check a YAML file of profiles and put them into the node's file (same workload container: replaced);
    /// the agent reads it at its next start.
    Import {
        /// The YAML file.
        from: PathBuf,
    },
    /// What B has that A lacks (+) and the other way round (-), per profile and class.
    Diff {
        /// The old file.
        a: PathBuf,
        /// The new file.
        b: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print every rule: built-in, from `[detections] rule_dirs`, and from --dir.
    List(RuleSourceArgs),
    /// Validate every rule; errors name the file and line. Exit status 1 on any error.
    Check(RuleSourceArgs),
}

#[derive(Debug, Args)]
pub struct RuleSourceArgs {
    /// Also (with --only-dir: only) the rules of this directory; repeatable.
    #[arg(long, value_name = "DIR")]
    pub dir: Vec<PathBuf>,
    /// Leave out the built-in rules and the configured rule_dirs.
    #[arg(long)]
    pub only_dir: bool,
    /// TOML configuration file (for `[detections] rule_dirs`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The lake's directory (default: sinks.lake.dir of the configuration).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// TOML configuration file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The SQL query; `-` reads it from standard input, `@FILE` from a file.
    pub sql: String,
}

#[derive(Debug, Args)]
pub struct HuntArgs {
    /// Rule id (built-in, or in --dir / rule_dirs).
    #[arg(long)]
    pub rule: String,
    /// How far back (e.g. 24h, 7d); only those hour partitions are read.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    pub since: Duration,
    /// The lake's directory (default: sinks.lake.dir of the configuration).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of more rules; repeatable.
    #[arg(long, value_name = "DIR")]
    pub dir: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// TOML configuration file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WhoisArgs {
    /// The IP address (IPv4 or IPv6).
    pub ip: String,
    /// RFC 3339 time (2026-11-24T14:03:00Z, offsets allowed) or "now"; without it, the whole history.
    #[arg(long)]
    pub at: Option<String>,
    /// State dir of `tracelake run` (default: enricher.state_dir of the configuration).
    #[arg(long, conflicts_with = "lake")]
    pub state_dir: Option<PathBuf>,
    /// Answer from a lake's `ip_ownership` table instead (the central lake `tracelake lake` writes holds every
    /// node's history).
    #[arg(long, value_name = "DIR")]
    pub lake: Option<PathBuf>,
    /// TOML configuration file (for the default state dir).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What every long-running command takes.
#[derive(Debug, Args)]
pub struct Session {
    /// Stop after this long (e.g. 10s, 5m) and exit cleanly.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub run_for: Option<Duration>,
    /// TOML configuration file; TRACELAKE__SECTION__KEY variables override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Bootstrap brokers, host:port comma separated (overrides kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Also write a local Parquet lake into this directory.
    #[arg(long, value_name = "DIR")]
    pub lake: Option<PathBuf>,
    /// Also write JSON lines to standard output.
    #[arg(long)]
    pub stdout: bool,
    #[command(flatten)]
    pub session: Session,
}

#[derive(Debug, Args)]
pub struct LakeArgs {
    /// Bootstrap brokers, host:port comma separated (overrides kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Lake directory (overrides sinks.lake.dir).
    #[arg(long, value_name = "DIR")]
    pub lake: Option<PathBuf>,
    #[command(flatten)]
    pub session: Session,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Write events to standard output as JSON lines (docs/events.md). Alone, only there; without it
    /// (or with --lake) events go to the Parquet lake (docs/schema.md).
    #[arg(long)]
    pub stdout: bool,
    /// Write the Parquet lake into this directory (overrides sinks.lake.dir).
    #[arg(long, value_name = "DIR")]
    pub lake: Option<PathBuf>,
    #[command(flatten)]
    pub session: Session,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML configuration file to check.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}
