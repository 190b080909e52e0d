//! The tracelake binary: parses the command line and hands off.

mod cli;
mod config;
mod ip_export;
mod run;
mod whois;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Config(args) => config::command(&args),
        cli::Command::Whois(args) => whois::command(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracelake: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
