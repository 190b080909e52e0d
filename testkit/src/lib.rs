//! Test support for tracelake's end-to-end tests: everything here drives real
//! parts of this machine (containerd, runc, the kernel, a Kafka broker, an Elasticsearch-API server),
//! nothing is mocked, except `hec`: a stand-in for Splunk's HTTP Event Collector (no Splunk runs here).

pub mod broker;
pub mod cri_lab;
pub mod hec;
pub mod http;
pub mod lab;
pub mod osmem;
