//! The wire format (docs/kafka.md): one message = one Arrow IPC stream of one
//! lake table's rows of one workload, with headers saying what it holds.

use std::sync::OnceLock;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use tracelake_model::json::Identity;

use crate::parquet::{BatchBuilder, BatchKeys, Table};

pub const HEADER_TABLE: &str = "tracelake-table";
pub const HEADER_SCHEMA: &str = "tracelake-schema-version";
pub const HEADER_ROWS: &str = "tracelake-rows";
pub const HEADER_NODE: &str = "tracelake-node";

/// A fingerprint of the table's Arrow schema (names, types, nullability, in
/// order): a consumer built with other columns refuses the message instead of
/// writing a file the lake's readers would trip on.
pub fn schema_version(table: Table) -> &'static str {
    static V: OnceLock<[String; 7]> = OnceLock::new();
    let all = V.get_or_init(|| {
        Table::ALL.map(|t| {
            let mut h = crc32fast::Hasher::new();
            for f in t.schema().fields() {
                h.update(f.name().as_bytes());
                h.update(format!("{}/{}", f.data_type(), f.is_nullable()).as_bytes());
                h.update(&[0]);
            }
            format!("1-{:08x}", h.finalize())
        })
    });
    &all[t_index(table)]
}

fn t_index(table: Table) -> usize {
    Table::ALL.iter().position(|t| *t == table).unwrap_or(0)
}

/// Arrow IPC stream bytes of one batch.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// The batches of an IPC stream.
pub fn decode(bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
    StreamReader::try_new(bytes, None)?.collect()
}

/// The rows of a message by its `tracelake-schema-version` header: the agent's events as records
/// (`records::VERSION`), rows built elsewhere (findings) as Arrow IPC of the table's own schema.
/// `rows`: builders kept from one records message to the next (see `records::to_batch`).
pub fn decode_message(
    table: Table,
    version: &str,
    node: &str,
    payload: &[u8],
    rows: &mut Option<BatchBuilder>,
) -> Result<Vec<RecordBatch>, String> {
    let batches = decode_message_keyed(table, version, node, payload, rows)?;
    Ok(batches.into_iter().map(|(b, _)| b).collect())
}

/// As `decode_message`, with the keys of a records message's rows (`records::to_keyed_batch`; Arrow IPC
/// rows have none).
pub fn decode_message_keyed(
    table: Table,
    version: &str,
    node: &str,
    payload: &[u8],
    rows: &mut Option<BatchBuilder>,
) -> Result<Vec<(RecordBatch, Option<BatchKeys>)>, String> {
    if super::records::READS.contains(&version) {
        return super::records::to_keyed_batch(rows, table, node, payload).map(|b| vec![b]);
    }
    if version != schema_version(table) {
        return Err(format!(
            "schema version {version:?}, this lake reads {} or {}",
            super::records::READS.join(", "),
            schema_version(table)
        ));
    }
    let batches = decode(payload).map_err(|e| format!("arrow ipc: {e}"))?;
    let schema = table.schema();
    if batches.iter().any(|b| b.schema().fields() != schema.fields()) {
        return Err("columns differ from the table's".into());
    }
    Ok(batches.into_iter().map(|b| (b, None)).collect())
}

/// Which workload an event belongs to: the message key, so one workload's
/// events land in one partition, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKey<'a> {
    /// `namespace/workload` (Kubernetes owner, e.g. a Deployment's name).
    Workload(&'a str, &'a str),
    /// A container outside any known workload.
    Container(&'a str),
    /// Host processes: the node name.
    Node(&'a str),
}

impl<'a> WorkloadKey<'a> {
    pub fn of(id: &Identity<'a>, node: &'a str) -> WorkloadKey<'a> {
        match (id.namespace, id.workload, id.container_id) {
            (Some(ns), Some(w), _) => WorkloadKey::Workload(ns, w),
            (_, _, Some(c)) => WorkloadKey::Container(c),
            _ => WorkloadKey::Node(node),
        }
    }

    /// FNV-1a over the key's bytes, as `to_string` spells them.
    pub fn hash(&self) -> u64 {
        let f = |h: u64, b: &[u8]| b.iter().fold(h, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3));
        let h = 0xcbf2_9ce4_8422_2325u64;
        match *self {
            WorkloadKey::Workload(ns, w) => f(f(f(h, ns.as_bytes()), b"/"), w.as_bytes()),
            WorkloadKey::Container(c) | WorkloadKey::Node(c) => f(h, c.as_bytes()),
        }
    }

    /// Whether `s` (a key made by `to_string`) is this key, without allocating.
    pub fn matches(&self, s: &str) -> bool {
        match *self {
            WorkloadKey::Workload(ns, w) => {
                s.len() == ns.len() + 1 + w.len()
                    && s.starts_with(ns)
                    && s.as_bytes()[ns.len()] == b'/'
                    && s.ends_with(w)
            }
            WorkloadKey::Container(c) | WorkloadKey::Node(c) => s == c,
        }
    }
}

impl std::fmt::Display for WorkloadKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkloadKey::Workload(ns, w) => write!(f, "{ns}/{w}"),
            WorkloadKey::Container(c) | WorkloadKey::Node(c) => f.write_str(c),
        }
    }
}

/// One message with what its headers say, as the spool stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub table: Table,
    pub key: String,
    pub rows: u32,
    pub schema_version: String,
    pub payload: Vec<u8>,
}

const SPOOL_FORMAT: u8 = 1;

impl Envelope {
    /// Bytes of a spool record: format, table, key, schema version, rows, payload.
    pub fn to_spool(&self) -> Vec<u8> {
        let name = self.table.name().as_bytes();
        let mut out = Vec::with_capacity(16 + name.len() + self.key.len() + self.payload.len());
        out.push(SPOOL_FORMAT);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        let key = &self.key.as_bytes()[..self.key.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        let sv = &self.schema_version.as_bytes()[..self.schema_version.len().min(255)];
        out.push(sv.len() as u8);
        out.extend_from_slice(sv);
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// None when the record is not one this version wrote.
    pub fn from_spool(b: &[u8]) -> Option<Envelope> {
        let (&fmt, b) = b.split_first()?;
        if fmt != SPOOL_FORMAT {
            return None;
        }
        let (&n, b) = b.split_first()?;
        let (name, b) = b.split_at_checked(n as usize)?;
        let table = Table::from_name(std::str::from_utf8(name).ok()?)?;
        let (kl, b) = b.split_at_checked(2)?;
        let (key, b) = b.split_at_checked(u16::from_le_bytes([kl[0], kl[1]]) as usize)?;
        let (&n, b) = b.split_first()?;
        let (sv, b) = b.split_at_checked(n as usize)?;
        let (rows, payload) = b.split_at_checked(4)?;
        Some(Envelope {
            table,
            key: String::from_utf8(key.to_vec()).ok()?,
            rows: u32::from_le_bytes(rows.try_into().ok()?),
            schema_version: String::from_utf8(sv.to_vec()).ok()?,
            payload: payload.to_vec(),
        })
    }
}
