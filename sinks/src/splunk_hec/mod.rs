//! Splunk HTTP Event Collector forwarding: lake rows as events with CIM field names (Endpoint, Network
//! Traffic, Alerts), counted delivered only once Splunk acknowledges them as indexed (docs/siem.md).

pub mod cim;
mod config;
mod sink;
#[cfg(test)]
mod tests;

pub use config::SplunkHecConfig;
pub use sink::SplunkHec;
