use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::forward::config::{BufferConfig, DeliveryConfig, TableRoute, TlsConfig, redact, secret};
use crate::forward::{ForwardError, severity_id};

/// `[siem.splunk_hec]`: forwarding to a Splunk HTTP Event Collector (docs/siem.md).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// Base URL of the collector, e.g. `https://splunk.example:8088`.
    pub url: String,
    /// The HEC token (`Authorization: Splunk <token>`); prefer `TRACELAKE__SIEM__SPLUNK_HEC__TOKEN` or
    /// `token_file`.
    #[serde(default)]
    pub token: Option<String>,
    /// File holding the HEC token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Index for every table without its own `index`; unset: the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// Findings (`detection_finding`, always forwarded) below this severity are not:
    /// `informational`, `low`, `medium`, `high` or `critical`.
    #[serde(default = "default_min_severity")]
    pub findings_min_severity: String,
    /// Event tables to forward, each with an optional `where` filter and its own `index`, `sourcetype`,
    /// `source`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableRoute>,
    /// Use indexer acknowledgements (the token must have them on): an event counts as delivered only when
    /// Splunk says it is indexed. Off: delivered when the collector answers 200.
    #[serde(default = "default_true")]
    pub acknowledgements: bool,
    /// How often pending acknowledgements are asked for. Humantime string.
    #[serde(default = "default_ack_interval", with = "humantime_serde")]
    pub ack_interval: Duration,
    /// A request not acknowledged by then is sent again (Splunk may have lost it; a duplicate is possible).
    /// Humantime string.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// The `X-Splunk-Request-Channel` GUID; a new one per start when unset.
    #[serde(default)]
    pub channel: Option<String>,
    /// TLS (https URLs).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Batching, retries, dead letters.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Memory and disk buffer.
    #[serde(default)]
    pub buffer: BufferConfig,
}

fn default_true() -> bool {
    true
}
fn default_min_severity() -> String {
    "informational".into()
}
fn default_ack_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(120)
}

impl SplunkHecConfig {
    /// A configuration with defaults for `url` and `token`.
    pub fn new(url: &str, token: &str) -> SplunkHecConfig {
        SplunkHecConfig {
            url: url.into(),
            token: Some(token.into()),
            token_file: None,
            index: None,
            findings_min_severity: default_min_severity(),
            tables: BTreeMap::new(),
            acknowledgements: true,
            ack_interval: default_ack_interval(),
            ack_timeout: default_ack_timeout(),
            channel: None,
            tls: TlsConfig::default(),
            delivery: DeliveryConfig::default(),
            buffer: BufferConfig::default(),
        }
    }

    /// Checks what can be checked without Splunk; returns the token.
    pub fn validate(&self) -> Result<String, ForwardError> {
        let what = "siem.splunk_hec";
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ForwardError::Config(format!("{what}.url = {:?}: not an http:// or https:// URL", self.url)));
        }
        if severity_id(&self.findings_min_severity).is_none() {
            return Err(ForwardError::Config(format!(
                "{what}.findings_min_severity = {:?}: one of informational, low, medium, high, critical",
                self.findings_min_severity
            )));
        }
        if self.ack_interval.is_zero() || self.ack_timeout < self.ack_interval {
            return Err(ForwardError::Config(format!(
                "{what}: ack_interval above 0, ack_timeout at least ack_interval"
            )));
        }
        if let Some(c) = &self.channel
            && (c.is_empty() || !c.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '-'))
        {
            return Err(ForwardError::Config(format!("{what}.channel = {c:?}: a GUID")));
        }
        crate::forward::config::routes(&self.tables, what)?;
        self.delivery.validate(what)?;
        self.buffer.validate(what)?;
        secret(self.token.as_deref(), self.token_file.as_ref(), "token")?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ForwardError::Config(format!("{what}: token or token_file is required")))
    }

    /// Replaces secrets for printing.
    pub fn redact(&mut self) {
        redact(&mut self.token);
    }
}
