use serde::{Deserialize, Serialize};

/// `[sinks.stdout]`: how JSON lines are written.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// Bytes buffered before a write; lines are never split across writes.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
}

fn default_buffer_bytes() -> usize {
    64 * 1024
}

impl Default for StdoutConfig {
    fn default() -> Self {
        StdoutConfig { buffer_bytes: default_buffer_bytes() }
    }
}
