//! The Elasticsearch target: `_bulk` requests (NDJSON, gzip), one outcome per document from the response.

use std::time::Duration;

use arrow::array::RecordBatch;
use serde::Deserialize;

use super::config::{Auth, ElasticsearchConfig};
use super::{ecs, template};
use crate::forward::config::{TlsConfig, default_dir, routes};
use crate::forward::json::{day, escape_into};
use crate::forward::rows::Columns;
use crate::forward::{
    ForwardError, Forwarder, Http, Item, Options, RowFilter, Selection, SendError, Sent, Target, severity_id,
};
use crate::parquet::Table;

/// Sends ECS documents to one cluster.
#[derive(Debug)]
pub struct Elasticsearch {
    cfg: ElasticsearchConfig,
    auth: Option<String>,
    base: String,
    index: String,
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", crate::forward::json::base64(format!("{user}:{password}").as_bytes()))
}

/// The first bytes of a response body, for errors.
fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]);
    s.replace('\n', " ")
}

#[derive(Deserialize)]
struct BulkHead {
    errors: bool,
}

#[derive(Deserialize)]
struct BulkFull {
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl BulkItem {
    fn outcome(&self) -> Item {
        let why = || {
            let e = self.error.as_ref();
            let ty = e.and_then(|e| e.get("type")).and_then(|t| t.as_str()).unwrap_or("error");
            let reason = e.and_then(|e| e.get("reason")).and_then(|t| t.as_str()).unwrap_or("");
            format!("{} {ty}: {reason}", self.status)
        };
        match self.status {
            200..=299 => Item::Delivered,
            // `create` of a document that is there: a replay of one delivered before.
            409 => Item::Delivered,
            429 | 500..=599 => Item::Retry(why()),
            _ => Item::Reject(why()),
        }
    }
}

/// The column a table's documents take their `_id` from.
pub fn id_column(table: Table) -> &'static str {
    match table {
        Table::DetectionFinding => "finding_id",
        Table::ProcessActivity
        | Table::FileActivity
        | Table::NetworkActivity
        | Table::DnsActivity
        | Table::KernelActivity
        | Table::IpOwnership => "event_id",
    }
}

impl Elasticsearch {
    pub fn new(cfg: &ElasticsearchConfig) -> Result<Elasticsearch, ForwardError> {
        let auth = match cfg.validate()? {
            Auth::None => None,
            Auth::Basic { user, password } => Some(basic(&user, &password)),
            Auth::ApiKey(key) => Some(format!("ApiKey {key}")),
        };
        Ok(Elasticsearch {
            base: cfg.url.trim_end_matches('/').to_string(),
            index: cfg.index_template(),
            auth,
            cfg: cfg.clone(),
        })
    }

    /// Starts forwarding with `filters` (the `where` of each table, built by the caller from the text in
    /// `cfg.tables`).
    pub fn forwarder(
        cfg: &ElasticsearchConfig,
        mut filters: Vec<(Table, RowFilter)>,
    ) -> Result<Forwarder, ForwardError> {
        let target = std::sync::Arc::new(Elasticsearch::new(cfg)?);
        let tables = routes(&cfg.tables, "siem.elasticsearch")?
            .into_iter()
            .map(|(t, _)| {
                let f = filters.iter().position(|(ft, _)| *ft == t).map(|i| filters.swap_remove(i).1);
                (t, f)
            })
            .collect();
        let min = severity_id(&cfg.findings_min_severity).unwrap_or(0);
        Forwarder::open(
            target,
            Options {
                delivery: cfg.delivery.clone(),
                buffer: cfg.buffer.clone(),
                buffer_dir: cfg.buffer.dir.clone().unwrap_or_else(|| default_dir("elasticsearch", "buffer")),
                dead_letter_dir: cfg
                    .delivery
                    .dead_letter_dir
                    .clone()
                    .unwrap_or_else(|| default_dir("elasticsearch", "dead-letter")),
                selection: Selection { tables, findings_min_severity: min },
                ack_interval: Duration::from_secs(1),
                ack_timeout: Duration::from_secs(3600),
            },
        )
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = vec![("Content-Type", "application/x-ndjson")];
        if let Some(a) = &self.auth {
            h.push(("Authorization", a.as_str()));
        }
        h
    }

    /// Installs the index template (`PUT _index_template/tracelake`).
    pub fn install_template(&self, http: &Http) -> Result<(), SendError> {
        let body = template::body(&self.index, self.cfg.data_stream, &[]);
        let mut headers = self.headers();
        headers[0] = ("Content-Type", "application/json");
        let url = format!("{}/_index_template/tracelake", self.base);
        let resp = http.put(&url, &headers, body.to_string().into_bytes()).map_err(SendError::Retry)?;
        match resp.status {
            200..=299 => Ok(()),
            401 | 403 => Err(SendError::Auth(format!("{} {}", resp.status, excerpt(&resp.body)))),
            s => Err(SendError::Rejected(format!("index template: {s} {}", excerpt(&resp.body)))),
        }
    }
}

impl Target for Elasticsearch {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn render(&self, table: Table, batch: &RecordBatch, out: &mut Vec<Vec<u8>>) {
        let cols = Columns::new(batch);
        let ids = cols.str(id_column(table));
        let times = cols.int(table.time_column());
        let action = if self.cfg.data_stream { "create" } else { "index" };
        let templ = self.index.replace("{table}", table.name());
        let dated = templ.contains("{date}");
        // Rows of a batch are mostly of one day: the index name is formatted once per day seen.
        let mut last_day: Option<(i64, String)> = None;
        ecs::render(table, batch, out, |row, head| {
            let index = if dated {
                let t = times.i64(row).unwrap_or(0);
                let d = t.div_euclid(86_400_000_000_000);
                if last_day.as_ref().is_none_or(|(ld, _)| *ld != d) {
                    last_day = Some((d, templ.replace("{date}", &day(t))));
                }
                last_day.as_ref().map_or(templ.as_str(), |(_, s)| s.as_str())
            } else {
                templ.as_str()
            };
            head.extend_from_slice(b"{\"");
            head.extend_from_slice(action.as_bytes());
            head.extend_from_slice(b"\":{\"_index\":");
            escape_into(head, index);
            if let Some(id) = ids.get(row) {
                head.extend_from_slice(b",\"_id\":");
                escape_into(head, id);
            }
            head.extend_from_slice(b"}}\n");
        });
    }

    fn send(&self, http: &Http, docs: &[&[u8]]) -> Result<Sent, SendError> {
        let body: Vec<u8> = docs.concat();
        let url = format!("{}/_bulk", self.base);
        let resp = http.post(&url, &self.headers(), &body, self.cfg.delivery.gzip).map_err(SendError::Retry)?;
        match resp.status {
            200 => {}
            401 | 403 => return Err(SendError::Auth(format!("{} {}", resp.status, excerpt(&resp.body)))),
            413 => return Err(SendError::Rejected("413 request too large".into())),
            429 | 500..=599 => return Err(SendError::Retry(format!("{} {}", resp.status, excerpt(&resp.body)))),
            s => return Err(SendError::Rejected(format!("{s} {}", excerpt(&resp.body)))),
        }
        let head: BulkHead = serde_json::from_slice(&resp.body)
            .map_err(|e| SendError::Retry(format!("unreadable _bulk response: {e}: {}", excerpt(&resp.body))))?;
        if !head.errors {
            return Ok(Sent::All);
        }
        let full: BulkFull = serde_json::from_slice(&resp.body)
            .map_err(|e| SendError::Retry(format!("unreadable _bulk response: {e}")))?;
        let items = full
            .items
            .into_iter()
            .map(|m| m.into_values().next().map_or(Item::Retry("empty item".into()), |i| i.outcome()));
        Ok(Sent::Items(items.collect()))
    }

    fn check(&self, http: &Http) -> Result<(), SendError> {
        let url = format!("{}/", self.base);
        let resp = http.get(&url, &self.headers()).map_err(SendError::Retry)?;
        match resp.status {
            401 | 403 => return Err(SendError::Auth(format!("{} {}", resp.status, excerpt(&resp.body)))),
            200..=299 => {}
            s => return Err(SendError::Retry(format!("{s} {}", excerpt(&resp.body)))),
        }
        if self.cfg.install_template {
            match self.install_template(http) {
                Ok(()) => {
                    tracing::info!(pattern = %template::pattern(&self.index), "siem: elasticsearch index template installed")
                }
                Err(SendError::Auth(e)) => return Err(SendError::Auth(e)),
                Err(SendError::Retry(e) | SendError::Rejected(e)) => {
                    tracing::warn!(error = %e, "siem: cannot install the elasticsearch index template; documents are mapped dynamically")
                }
            }
        }
        Ok(())
    }

    fn http_settings(&self) -> (&TlsConfig, Duration) {
        (&self.cfg.tls, self.cfg.delivery.request_timeout)
    }
}
