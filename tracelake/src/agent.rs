//! `tracelake agent`: the node side of the Kafka transport (docs/kafka.md).

use crate::cli::AgentArgs;
use crate::config;
use crate::pipeline::{self, Sinks};

pub fn agent(args: &AgentArgs) -> anyhow::Result<()> {
    let mut cfg = config::load(args.session.config.as_deref())?;
    if let Some(b) = &args.brokers {
        cfg.kafka.brokers.clone_from(b);
    }
    let lake = args.lake.as_ref().map(|dir| {
        let mut l = cfg.sinks.lake.clone();
        l.dir = dir.clone();
        l
    });
    pipeline::run(&cfg, &Sinks { stdout: args.stdout, lake, kafka: true }, args.session.run_for)
}
