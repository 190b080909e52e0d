//! The tracelake binary: parses the command line and hands off.

mod agent;
mod cli;
mod config;
mod detect;
mod enrich;
mod hold;
mod http;
mod ip_export;
mod lake;
mod metrics;
mod pipeline;
mod profile;
mod query;
mod run;
mod siem;
mod whois;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let _ = cli::LOG_FORMAT.set(cli.log_format);
    let result = match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Agent(args) => agent::agent(&args),
        cli::Command::Lake(args) => lake::lake(&args),
        cli::Command::Config(args) => config::command(&args),
        cli::Command::Rules(args) => query::rules(&args),
        cli::Command::Query(args) => query::query(&args),
        cli::Command::Hunt(args) => query::hunt(&args),
        cli::Command::Whois(args) => whois::command(&args),
        cli::Command::Profile(args) => profile::command(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if cli.log_format == cli::LogFormat::Json => {
            let line =
                serde_json::json!({"level": "ERROR", "fields": {"message": format!("{e:#}")}, "target": "tracelake"});
            eprintln!("{line}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tracelake: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
