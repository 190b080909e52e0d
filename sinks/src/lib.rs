//! Sinks: one folder per sink, each with `config.rs`, `sink.rs`, `tests.rs`.

pub mod stdout;
