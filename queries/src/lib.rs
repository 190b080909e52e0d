//! Detections and hunting (DataFusion SQL): rules in `.sql` files with a
//! metadata header, evaluated live on each Arrow batch before it reaches
//! the lake and over the Parquet lake for back-testing and hunting
//! (docs/detections.md).

pub mod builtin;
mod config;
pub mod engine;
pub mod finding;
pub mod fixtures;
pub mod lake;
pub mod live;
pub mod profile;
pub mod rule;
#[cfg(test)]
mod tests;

pub use config::DetectionsConfig;
pub use datafusion;
pub use engine::{PlannedRule, Round, RuleEngine};
pub use finding::{Finding, Suppressor, findings_batch};
pub use rule::{Rule, RuleError};
