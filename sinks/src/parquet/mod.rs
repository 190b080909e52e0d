//! The Parquet data lake: one table per OCSF class, Hive partitions by
//! hour, complete files only (docs/schema.md). `tracelake run` writes it by
//! default; `LakeWriter` is public for other producers (Kafka consumer,
//! detections, IP history).

pub(crate) mod batch;
mod classes;
mod columns;
mod config;
mod constant_chunk;
pub(crate) mod dict_chunk;
mod id_chunk;
mod identity;
mod keyed;
mod lineage;
pub mod maintain;
mod numbers;
mod ownership;
mod pages;
mod schema;
mod sink;
mod subject;
#[cfg(test)]
mod tests;
mod writer;

pub use batch::{BatchBuilder, BatchKeys};
pub use config::LakeConfig;
pub use maintain::MaintenanceReport;
pub use ownership::{OwnershipRow, ownership_batch};
pub use schema::{Table, ocsf_class_uid};
pub use sink::{LakeSink, LakeStats, error_chain};
pub use writer::{LakeError, LakeWriter, PartialWrite, WrittenFile};
