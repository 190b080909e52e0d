//! The tracelake node sensor: loads the eBPF programs with aya, fills their
//! configuration maps, reads the ring buffer with tokio and hands decoded,
//! borrowed events to an `EventHandler`.

pub mod agg;
pub mod config;
pub mod decode;
pub mod hooks;
pub mod loader;
pub mod procfs;
mod sensor;
pub mod stats;
pub mod tracefs;

pub use config::SensorConfig;
pub use sensor::{RecordedCgroups, RunSummary, Sensor};
pub use stats::SensorStats;
use tracelake_model::Event;

/// Receives every event, synchronously, on the reader task. Events borrow
/// the ring buffer: copy what must outlive the call.
pub trait EventHandler {
    fn handle(&mut self, ev: &Event<'_>);
    /// Called about once a second from the reader loop, events or not:
    /// time-driven work of sinks (age rotation, retries) goes here.
    fn tick(&mut self) {}
    /// Called when the sensor stops, after the last event.
    fn flush(&mut self) {}
}

/// Why the sensor cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("invalid configuration: {0}")]
    Config(#[from] config::InvalidConfig),
    #[error("cannot mount tracefs at {path}")]
    Tracefs {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the eBPF object (are you root, with BPF and BTF enabled?)")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("cannot read kernel BTF at /sys/kernel/btf/vmlinux")]
    Btf(#[source] Box<aya::BtfError>),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl SensorError {
    pub(crate) fn map(name: &'static str, e: aya::maps::MapError) -> Self {
        SensorError::Map { name, source: Box::new(e) }
    }
    pub(crate) fn program(name: &'static str, e: aya::programs::ProgramError) -> Self {
        SensorError::Program { name, source: Box::new(e) }
    }
}
