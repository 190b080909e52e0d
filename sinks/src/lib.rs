//! Sinks: one folder per sink, each with `config.rs`, `sink.rs`, `tests.rs`.

#[cfg(feature = "siem")]
pub mod elasticsearch;
#[cfg(feature = "siem")]
pub mod forward;
#[cfg(any(feature = "kafka", feature = "parquet"))]
mod hash;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "siem")]
pub mod splunk_hec;
pub mod stdout;
