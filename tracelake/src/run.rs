//! `tracelake run`: sensor to local sinks in one process.

use crate::cli::RunArgs;
use crate::config;
use crate::pipeline::{self, Sinks};

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = config::load(args.session.config.as_deref())?;
    // --stdout alone: JSON lines only, as before the lake; the lake otherwise, or when --lake names it.
    let lake = (!args.stdout || args.lake.is_some()).then(|| {
        let mut l = cfg.sinks.lake.clone();
        if let Some(dir) = &args.lake {
            l.dir = dir.clone();
        }
        l
    });
    pipeline::run(&cfg, &Sinks { stdout: args.stdout, lake, kafka: false }, args.session.run_for)
}
