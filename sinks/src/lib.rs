//! Sinks: one folder per sink, each with `config.rs`, `sink.rs`, `tests.rs`.

#[cfg(any(feature = "kafka", feature = "parquet"))]
mod hash;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod stdout;
