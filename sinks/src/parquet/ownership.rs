//! Rows of the `ip_ownership` table: intervals of the enricher's pod IP
//! history, written as they open and close.
//!
//! An interval is written again when it changes (opened, then closed, or
//! its owner learnt more), so one interval can have several rows; the row
//! with the highest `seq` of an (`ip`, `valid_from`) is the current one. Each version carries an `event_id`, so
//! the central lake keeps a version that arrives twice (through Kafka) once.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampNanosecondBuilder, UInt64Builder};
use arrow::record_batch::RecordBatch;

use super::id_chunk::hex16;
use super::{LakeError, Table};
use crate::hash::{content_fingerprint, mix};

/// One interval of one IP, as the history knows it now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnershipRow<'a> {
    pub ip: &'a str,
    /// Unix nanoseconds.
    pub valid_from: i64,
    /// Unix nanoseconds; None while the IP is still held.
    pub valid_to: Option<i64>,
    pub node: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub pod_uid: Option<&'a str>,
    pub workload_kind: Option<&'a str>,
    pub workload: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub service: Option<&'a str>,
    /// `kube` or `node`.
    pub source: &'a str,
    /// Version of the interval: later changes have higher numbers.
    pub seq: u64,
}

/// The `event_id` of a row: one version (`seq`) of one interval as one node reported it.
pub fn version_id(r: &OwnershipRow<'_>) -> u64 {
    let h = content_fingerprint(r.node.unwrap_or_default().as_bytes());
    let h = mix(h, content_fingerprint(r.ip.as_bytes()));
    let h = mix(h, r.valid_from as u64);
    mix(h, r.seq)
}

/// One `ip_ownership` batch of `rows`, in the table's schema.
pub fn ownership_batch(rows: &[OwnershipRow<'_>]) -> Result<RecordBatch, LakeError> {
    let schema = Table::IpOwnership.schema();
    let tz = Some(Arc::from("UTC"));
    let mut ip = StringBuilder::new();
    let mut from = TimestampNanosecondBuilder::new().with_timezone_opt(tz.clone());
    let mut to = TimestampNanosecondBuilder::new().with_timezone_opt(tz);
    let mut strings: [StringBuilder; 8] = Default::default();
    let mut source = StringBuilder::new();
    let mut seq = UInt64Builder::new();
    let mut ids = StringBuilder::new();
    for r in rows {
        ip.append_value(r.ip);
        from.append_value(r.valid_from);
        to.append_option(r.valid_to);
        let values = [r.node, r.namespace, r.pod, r.pod_uid, r.workload_kind, r.workload, r.container_id, r.service];
        for (b, v) in strings.iter_mut().zip(values) {
            b.append_option(v);
        }
        source.append_value(r.source);
        seq.append_value(r.seq);
        let id = version_id(r);
        ids.append_value(std::str::from_utf8(&hex16(id)).unwrap_or_default());
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ip.finish()), Arc::new(from.finish()), Arc::new(to.finish())];
    columns.extend(strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(source.finish()));
    columns.push(Arc::new(seq.finish()));
    columns.push(Arc::new(ids.finish()));
    RecordBatch::try_new(schema, columns)
        .map_err(|source| LakeError::Arrow { table: Table::IpOwnership.name(), source })
}
