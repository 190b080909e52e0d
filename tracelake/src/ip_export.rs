//! Writes the pod IP history's changed intervals into the lake's
//! `ip_ownership` table (and sends them through Kafka in agent mode, where
//! the central lake service writes them), so hunts can join network rows
//! with who held an IP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracelake_enricher::iphistory::IpHistory;
use tracelake_sinks::kafka::KafkaSink;
use tracelake_sinks::parquet::{LakeSink, OwnershipRow, Table, ownership_batch};

/// Exports changes at most this often: intervals change at pod churn rate.
const EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct IpExport {
    history: Arc<IpHistory>,
    next_seq: u64,
    next_at: Instant,
}

impl IpExport {
    pub fn new(history: Arc<IpHistory>) -> IpExport {
        IpExport { history, next_seq: 0, next_at: Instant::now() }
    }

    /// Writes what changed since the last export to the lake and to Kafka (keyed by `node`), when due (or
    /// `force`d).
    pub fn export(&mut self, lake: Option<&mut LakeSink>, kafka: Option<&mut KafkaSink>, node: &str, force: bool) {
        let now = Instant::now();
        if !force && now < self.next_at {
            return;
        }
        self.next_at = now + EVERY;
        let changes = self.history.changes_since(self.next_seq);
        if changes.rows.is_empty() {
            self.next_seq = changes.next_seq;
            return;
        }
        let ips: Vec<String> = changes.rows.iter().map(|r| r.ip.to_string()).collect();
        let rows: Vec<OwnershipRow<'_>> = changes
            .rows
            .iter()
            .zip(&ips)
            .map(|(r, ip)| OwnershipRow {
                ip,
                valid_from: r.valid_from,
                valid_to: r.valid_to,
                node: r.owner.node.as_deref(),
                namespace: r.owner.namespace.as_deref(),
                pod: r.owner.pod.as_deref(),
                pod_uid: r.owner.pod_uid.as_deref(),
                workload_kind: r.owner.workload_kind.as_deref(),
                workload: r.owner.workload.as_deref(),
                container_id: r.owner.container_id.as_deref(),
                service: r.owner.service.as_deref(),
                source: r.owner.source.name(),
                seq: r.seq,
            })
            .collect();
        match ownership_batch(&rows) {
            Ok(batch) => {
                if let Some(k) = kafka {
                    k.push_batch(Table::IpOwnership, node, batch.clone());
                }
                if let Some(l) = lake {
                    l.push_batch(Table::IpOwnership, batch);
                }
                self.next_seq = changes.next_seq;
            }
            // Schema drift is a bug: said loudly, and retried at the next export.
            Err(e) => {
                tracing::error!(error = %tracelake_sinks::parquet::error_chain(&e), "ip_ownership rows not built")
            }
        }
    }
}
