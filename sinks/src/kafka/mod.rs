//! Kafka transport between `tracelake agent` on every node and `tracelake
//! lake`, the service that writes the Parquet lake (docs/kafka.md).
//!
//! The agent ships its events as records (one table, one workload per
//! message; `records`) and the live findings as Arrow IPC batches, with an
//! idempotent producer; what the broker does not take goes to a checksummed
//! on-disk spool and is replayed in order. The lake consumes in a consumer
//! group, drops duplicates by event id, and commits offsets only after the
//! Parquet file holding the rows is durable.

mod client;
mod config;
mod consumer;
mod journal;
pub mod records;
mod resume;
mod siem;
mod sink;
mod spool;
mod stats;
#[cfg(test)]
mod tests;
mod topics;
pub mod wire;

use rdkafka::error::KafkaError as ClientError;
use rdkafka::types::RDKafkaErrorCode;

pub use config::{KafkaConfig, LakeServiceConfig, SaslConfig, SpoolConfig, SpoolPolicy, TlsConfig};
pub use consumer::{LakeConsumer, StopFlag};
pub use sink::KafkaSink;
pub use spool::{Appended, Spool, SpoolError, Ticket};
pub use stats::{ConsumerStats, ProducerStats};
pub use topics::TopicKeeper;

/// Tables that travel over Kafka, one topic each: the sensor's event tables, the live detections'
/// findings (agent mode sends `detection_finding` rows like any other table), and the pod IP history's
/// intervals (`ip_ownership`), so the central lake answers "who had this IP" for every node.
pub const TABLES: [crate::parquet::Table; 7] = [
    crate::parquet::Table::ProcessActivity,
    crate::parquet::Table::FileActivity,
    crate::parquet::Table::NetworkActivity,
    crate::parquet::Table::DnsActivity,
    crate::parquet::Table::KernelActivity,
    crate::parquet::Table::DetectionFinding,
    crate::parquet::Table::IpOwnership,
];

/// The column the lake deduplicates a table's rows by (a replayed message is dropped row by row).
pub fn id_column(table: crate::parquet::Table) -> &'static str {
    match table {
        crate::parquet::Table::DetectionFinding => "finding_id",
        crate::parquet::Table::ProcessActivity
        | crate::parquet::Table::FileActivity
        | crate::parquet::Table::NetworkActivity
        | crate::parquet::Table::DnsActivity
        | crate::parquet::Table::KernelActivity
        | crate::parquet::Table::IpOwnership => "event_id",
    }
}

/// Why the Kafka transport failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: invalid configuration: {0}")]
    Config(String),
    #[error("kafka: client error")]
    Client(#[source] ClientError),
    #[error("kafka: cannot create topic {topic}: {code}")]
    Topic { topic: String, code: RDKafkaErrorCode },
    #[error("kafka: spool")]
    Spool(#[source] SpoolError),
    #[error("kafka: lake")]
    Lake(#[source] crate::parquet::LakeError),
    #[error("kafka: {what} {}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
