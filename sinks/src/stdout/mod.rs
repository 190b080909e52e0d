//! JSON lines on standard output (or any writer): `tracelake run --stdout`.

mod config;
mod sink;
#[cfg(test)]
mod tests;

pub use config::StdoutConfig;
pub use sink::JsonLinesSink;
