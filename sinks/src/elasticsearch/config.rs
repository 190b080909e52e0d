use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::forward::config::{BufferConfig, DeliveryConfig, TableRoute, TlsConfig, redact, secret};
use crate::forward::{ForwardError, severity_id};

/// `[siem.elasticsearch]`: forwarding to Elasticsearch (or OpenSearch) with `_bulk` (docs/siem.md).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL of the cluster, e.g. `https://es.example:9200` (a path prefix is kept).
    pub url: String,
    /// Index name template: `{table}` is the lake table, `{date}` the row's UTC day (`YYYY.MM.DD`). With
    /// `data_stream`, the data stream's name (default `logs-tracelake.{table}-default`).
    #[serde(default)]
    pub index: Option<String>,
    /// Write to data streams (bulk action `create`, which a data stream requires); else to indices with
    /// `index` actions (a replayed document overwrites itself).
    #[serde(default)]
    pub data_stream: bool,
    /// Findings (`detection_finding`, always forwarded) below this severity are not:
    /// `informational`, `low`, `medium`, `high` or `critical`.
    #[serde(default = "default_min_severity")]
    pub findings_min_severity: String,
    /// Event tables to forward, each with an optional `where` filter, e.g.
    /// `[siem.elasticsearch.tables.process_activity] where = "kind = 'exec' AND container"`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableRoute>,
    /// Basic auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password; prefer `TRACELAKE__SIEM__ELASTICSEARCH__PASSWORD` or `password_file`.
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the basic auth password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// API key (the base64 `id:key` Elasticsearch returns as `encoded`), sent as `Authorization: ApiKey`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// File holding the API key.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Install the `tracelake` index template (ECS mappings) at start.
    #[serde(default = "default_true")]
    pub install_template: bool,
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

/// How requests authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic { user: String, password: String },
    ApiKey(String),
}

impl ElasticsearchConfig {
    /// A configuration with defaults for `url`.
    pub fn new(url: &str) -> ElasticsearchConfig {
        ElasticsearchConfig {
            url: url.into(),
            index: None,
            data_stream: false,
            findings_min_severity: default_min_severity(),
            tables: BTreeMap::new(),
            username: None,
            password: None,
            password_file: None,
            api_key: None,
            api_key_file: None,
            install_template: true,
            tls: TlsConfig::default(),
            delivery: DeliveryConfig::default(),
            buffer: BufferConfig::default(),
        }
    }

    /// The index template with its default.
    pub fn index_template(&self) -> String {
        match (&self.index, self.data_stream) {
            (Some(i), _) => i.clone(),
            (None, true) => "logs-tracelake.{table}-default".into(),
            (None, false) => "tracelake-{table}-{date}".into(),
        }
    }

    /// Checks what can be checked without the cluster, and reads secret files.
    pub fn validate(&self) -> Result<Auth, ForwardError> {
        let what = "siem.elasticsearch";
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ForwardError::Config(format!("{what}.url = {:?}: not an http:// or https:// URL", self.url)));
        }
        if severity_id(&self.findings_min_severity).is_none() {
            return Err(ForwardError::Config(format!(
                "{what}.findings_min_severity = {:?}: one of informational, low, medium, high, critical",
                self.findings_min_severity
            )));
        }
        let index = self.index_template();
        if index.is_empty() || index.chars().any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?#".contains(c)) {
            return Err(ForwardError::Config(format!(
                "{what}.index = {index:?}: index names are lowercase, without spaces or \" * \\ < | , > / ? #"
            )));
        }
        for (name, route) in &self.tables {
            if route.sourcetype.is_some() || route.source.is_some() {
                return Err(ForwardError::Config(format!("{what}.tables.{name}: sourcetype and source are Splunk's")));
            }
        }
        crate::forward::config::routes(&self.tables, what)?;
        self.delivery.validate(what)?;
        self.buffer.validate(what)?;
        let password = secret(self.password.as_deref(), self.password_file.as_ref(), "password")?;
        let api_key = secret(self.api_key.as_deref(), self.api_key_file.as_ref(), "api_key")?;
        match (&self.username, password, api_key) {
            (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
                Err(ForwardError::Config(format!("{what}: set username/password or api_key, not both")))
            }
            (None, None, Some(key)) => Ok(Auth::ApiKey(key)),
            (Some(user), Some(password), None) => Ok(Auth::Basic { user: user.clone(), password }),
            (None, None, None) => Ok(Auth::None),
            (Some(_), None, None) | (None, Some(_), None) => {
                Err(ForwardError::Config(format!("{what}: username and password go together")))
            }
        }
    }

    /// Replaces secrets for printing.
    pub fn redact(&mut self) {
        redact(&mut self.password);
        redact(&mut self.api_key);
    }
}
