//! Elasticsearch (and OpenSearch) forwarding: lake rows as ECS documents through `_bulk`, idempotent by
//! `_id` = `event_id` / `finding_id` (docs/siem.md).

mod config;
pub mod ecs;
mod sink;
pub mod template;
#[cfg(test)]
mod tests;

pub use config::{Auth, ElasticsearchConfig};
pub use sink::Elasticsearch;
