//! `tracelake profile export|import|diff`: the node's behaviour profiles as reviewable YAML.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use tracelake_queries::profile::{self, Profile};

use crate::cli::{ProfileArgs, ProfileCommand};
use crate::config::{self, Config};

/// Where the node keeps its profiles: `detections.profiles.file`, else `profiles.yaml` in the state dir.
pub fn node_file(cfg: &Config) -> PathBuf {
    cfg.detections.profiles.file.clone().unwrap_or_else(|| cfg.enricher.state_dir.join("profiles.yaml"))
}

pub fn command(args: &ProfileArgs) -> anyhow::Result<()> {
    let file = match &args.file {
        Some(f) => f.clone(),
        None => node_file(&config::load(args.config.as_deref())?),
    };
    match &args.command {
        ProfileCommand::Export => {
            let text = profile::render(profile::load(&file)?).context("cannot render the profiles")?;
            std::io::stdout().lock().write_all(text.as_bytes()).context("stdout")
        }
        ProfileCommand::Import { from } => {
            anyhow::ensure!(from.exists(), "no such file: {}", from.display());
            let incoming = profile::load(from)?;
            let mut all: Vec<Profile> = profile::load(&file)?;
            let n = incoming.len();
            for p in incoming {
                all.retain(|q| q.key != p.key);
                all.push(p);
            }
            all.sort_by(|a, b| a.key.cmp(&b.key));
            profile::save(&file, all)?;
            eprintln!("{n} profile(s) imported into {} (read at the agent's next start)", file.display());
            Ok(())
        }
        ProfileCommand::Diff { a, b } => {
            let lines = profile::diff(&profile::load(a)?, &profile::load(b)?);
            let mut out = std::io::stdout().lock();
            for l in lines {
                writeln!(out, "{l}")?;
            }
            Ok(())
        }
    }
}
