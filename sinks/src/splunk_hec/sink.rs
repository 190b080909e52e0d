//! The HEC target: `/services/collector/event` with newline-separated events (gzip), indexer
//! acknowledgements polled on `/services/collector/ack` over the request channel.

use std::time::Duration;

use arrow::array::RecordBatch;
use serde::Deserialize;

use super::cim::{self, Envelope};
use super::config::SplunkHecConfig;
use crate::forward::config::{TlsConfig, default_dir, routes};
use crate::forward::{
    ForwardError, Forwarder, Http, Options, RowFilter, Selection, SendError, Sent, Target, severity_id,
};
use crate::parquet::Table;

/// Sends CIM events to one collector.
#[derive(Debug)]
pub struct SplunkHec {
    cfg: SplunkHecConfig,
    auth: String,
    channel: String,
    base: String,
    envelopes: Vec<(Table, Envelope)>,
}

#[derive(Deserialize)]
struct EventReply {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    text: String,
    #[serde(default, rename = "ackId")]
    ack_id: Option<u64>,
}

#[derive(Deserialize)]
struct AckReply {
    acks: std::collections::HashMap<String, bool>,
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).replace('\n', " ")
}

/// A request channel GUID from the kernel's random UUID.
fn new_channel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").map(|s| s.trim().to_string()).unwrap_or_else(|_| {
        let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let h = format!("{:032x}", ns ^ (u128::from(std::process::id()) << 64));
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    })
}

impl SplunkHec {
    pub fn new(cfg: &SplunkHecConfig) -> Result<SplunkHec, ForwardError> {
        let token = cfg.validate()?;
        let envelopes = routes(&cfg.tables, "siem.splunk_hec")?
            .into_iter()
            .map(|(t, r)| {
                let env = Envelope {
                    index: r.index.or_else(|| cfg.index.clone()),
                    sourcetype: r.sourcetype.unwrap_or_else(|| cim::sourcetype(t).to_string()),
                    source: r.source.unwrap_or_else(|| "tracelake".into()),
                };
                (t, env)
            })
            .collect();
        Ok(SplunkHec {
            auth: format!("Splunk {token}"),
            channel: cfg.channel.clone().unwrap_or_else(new_channel),
            base: cfg.url.trim_end_matches('/').to_string(),
            envelopes,
            cfg: cfg.clone(),
        })
    }

    /// Starts forwarding with `filters` (the `where` of each table, built by the caller).
    pub fn forwarder(cfg: &SplunkHecConfig, mut filters: Vec<(Table, RowFilter)>) -> Result<Forwarder, ForwardError> {
        let target = std::sync::Arc::new(SplunkHec::new(cfg)?);
        let tables = target
            .envelopes
            .iter()
            .map(|(t, _)| (*t, filters.iter().position(|(ft, _)| ft == t).map(|i| filters.swap_remove(i).1)))
            .collect();
        let min = severity_id(&cfg.findings_min_severity).unwrap_or(0);
        Forwarder::open(
            target,
            Options {
                delivery: cfg.delivery.clone(),
                buffer: cfg.buffer.clone(),
                buffer_dir: cfg.buffer.dir.clone().unwrap_or_else(|| default_dir("splunk_hec", "buffer")),
                dead_letter_dir: cfg
                    .delivery
                    .dead_letter_dir
                    .clone()
                    .unwrap_or_else(|| default_dir("splunk_hec", "dead-letter")),
                selection: Selection { tables, findings_min_severity: min },
                ack_interval: cfg.ack_interval,
                ack_timeout: cfg.ack_timeout,
            },
        )
    }

    /// The request channel (`X-Splunk-Request-Channel`).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    fn headers(&self) -> [(&str, &str); 3] {
        [
            ("Authorization", self.auth.as_str()),
            ("X-Splunk-Request-Channel", self.channel.as_str()),
            ("Content-Type", "application/json"),
        ]
    }

    fn status_error(status: u16, body: &[u8]) -> SendError {
        let detail = format!("{status} {}", excerpt(body));
        match status {
            401 | 403 => SendError::Auth(detail),
            // 503 is HEC's "server is busy" (code 9): back off.
            429 | 500..=599 => SendError::Retry(detail),
            _ => SendError::Rejected(detail),
        }
    }
}

impl Target for SplunkHec {
    fn name(&self) -> &'static str {
        "splunk_hec"
    }

    fn render(&self, table: Table, batch: &RecordBatch, out: &mut Vec<Vec<u8>>) {
        if let Some((_, env)) = self.envelopes.iter().find(|(t, _)| *t == table) {
            cim::render(table, batch, env, out);
        }
    }

    fn send(&self, http: &Http, docs: &[&[u8]]) -> Result<Sent, SendError> {
        let body = docs.concat();
        let url = format!("{}/services/collector/event", self.base);
        let resp = http.post(&url, &self.headers(), &body, self.cfg.delivery.gzip).map_err(SendError::Retry)?;
        if resp.status != 200 {
            return Err(Self::status_error(resp.status, &resp.body));
        }
        let reply: EventReply = serde_json::from_slice(&resp.body)
            .map_err(|e| SendError::Retry(format!("unreadable HEC reply: {e}: {}", excerpt(&resp.body))))?;
        if reply.code != 0 {
            return Err(SendError::Retry(format!("HEC code {}: {}", reply.code, reply.text)));
        }
        match (self.cfg.acknowledgements, reply.ack_id) {
            (true, Some(id)) => Ok(Sent::AwaitAck(id)),
            (true, None) => {
                tracing::warn!(
                    "siem: splunk_hec gave no ackId (acknowledgements off for the token?): counting 200 as delivered"
                );
                Ok(Sent::All)
            }
            (false, _) => Ok(Sent::All),
        }
    }

    fn poll_acks(&self, http: &Http, ids: &[u64]) -> Result<Vec<u64>, SendError> {
        let url = format!("{}/services/collector/ack", self.base);
        let body = serde_json::json!({ "acks": ids }).to_string();
        let resp = http.post(&url, &self.headers(), body.as_bytes(), false).map_err(SendError::Retry)?;
        if resp.status != 200 {
            return Err(Self::status_error(resp.status, &resp.body));
        }
        let reply: AckReply = serde_json::from_slice(&resp.body)
            .map_err(|e| SendError::Retry(format!("unreadable HEC ack reply: {e}: {}", excerpt(&resp.body))))?;
        Ok(reply.acks.into_iter().filter(|(_, done)| *done).filter_map(|(id, _)| id.parse().ok()).collect())
    }

    /// An empty event request: with a good token HEC answers 400 "No data" (code 5), with a bad one 401/403.
    fn check(&self, http: &Http) -> Result<(), SendError> {
        let url = format!("{}/services/collector/event", self.base);
        let resp = http.post(&url, &self.headers(), b"", false).map_err(SendError::Retry)?;
        match resp.status {
            200 | 400 => Ok(()),
            s => Err(Self::status_error(s, &resp.body)),
        }
    }

    fn http_settings(&self) -> (&TlsConfig, Duration) {
        (&self.cfg.tls, self.cfg.delivery.request_timeout)
    }
}
