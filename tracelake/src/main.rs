//! The tracelake binary: parses the command line and hands off.

mod cli;
mod config;
mod detect;
mod query;
mod run;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Config(args) => config::command(&args),
        cli::Command::Rules(args) => query::rules(&args),
        cli::Command::Query(args) => query::query(&args),
        cli::Command::Hunt(args) => query::hunt(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracelake: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
