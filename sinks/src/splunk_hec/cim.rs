//! Lake rows as Splunk events named for the Common Information Model: Endpoint (Processes, Filesystem) for
//! process, file and kernel rows, Network Traffic for network and DNS rows, Alerts / Intrusion Detection for
//! findings (docs/siem.md lists every field). Columns CIM has no name for keep their lake name, so nothing
//! in the row is lost; `*_raw` bytes as base64.

use arrow::array::RecordBatch;

use crate::elasticsearch::ecs::split_path;
use crate::forward::generic::Rest;
use crate::forward::json::{JsonWriter, escape_into};
use crate::forward::rows::{Columns, Int};
use crate::parquet::Table;

/// The default `sourcetype` of a table's events.
pub fn sourcetype(table: Table) -> &'static str {
    match table {
        Table::ProcessActivity => "tracelake:process",
        Table::FileActivity => "tracelake:file",
        Table::NetworkActivity => "tracelake:network",
        Table::DnsActivity => "tracelake:dns",
        Table::KernelActivity => "tracelake:kernel",
        Table::DetectionFinding => "tracelake:finding",
        Table::IpOwnership => "tracelake:ip_ownership",
    }
}

const PROCESS_MAPPED: &[&str] = &[
    "time",
    "event_id",
    "node",
    "pid",
    "ppid",
    "euid",
    "comm",
    "exe",
    "cmdline",
    "cwd",
    "parent_exe",
    "parent_cmdline",
];
const FILE_MAPPED: &[&str] = &["path", "path2", "mode"];
const NET_MAPPED: &[&str] =
    &["local_ip", "local_port", "remote_ip", "remote_port", "protocol", "family", "bytes_sent", "bytes_received"];
const FINDING_MAPPED: &[&str] = &[
    "time",
    "finding_id",
    "rule_id",
    "rule_name",
    "severity",
    "severity_id",
    "message",
    "tactic",
    "technique",
    "node",
    "pid",
    "exe",
    "cmdline",
];

/// O_WRONLY | O_RDWR, O_CREAT, O_TRUNC (x86_64).
const O_WRITE: i64 = 0o3;
const O_CREAT: i64 = 0o100;
const O_TRUNC: i64 = 0o1000;

/// The CIM Filesystem `action` of a file event.
fn file_action(kind: &str, open_flags: Option<i64>) -> &'static str {
    match kind {
        "file_unlink" => "deleted",
        "file_chmod" | "file_chown" => "acl_modified",
        "file_rename" => "modified",
        _ => match open_flags {
            Some(f) if f & O_CREAT != 0 => "created",
            Some(f) if f & (O_WRITE | O_TRUNC) != 0 => "modified",
            Some(_) | None => "read",
        },
    }
}

/// HEC's `time`: seconds since the epoch with microseconds.
fn epoch(ns: i64) -> String {
    format!("{}.{:06}", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) / 1000)
}

/// Where and how a table's events go: the HEC envelope fields.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub index: Option<String>,
    pub sourcetype: String,
    pub source: String,
}

/// Renders each row of a batch of `table` as one HEC event (`{"time", "host", "source", "sourcetype",
/// "index", "event": {...}}` and a newline), appended to `out`.
pub fn render(table: Table, batch: &RecordBatch, env: &Envelope, out: &mut Vec<Vec<u8>>) {
    let c = Columns::new(batch);
    let time = c.int(table.time_column());
    let node = c.str("node");
    let mapped: Vec<&str> = match table {
        Table::ProcessActivity | Table::KernelActivity => PROCESS_MAPPED.to_vec(),
        Table::FileActivity => [PROCESS_MAPPED, FILE_MAPPED].concat(),
        Table::NetworkActivity | Table::DnsActivity => [PROCESS_MAPPED, NET_MAPPED].concat(),
        Table::DetectionFinding => FINDING_MAPPED.to_vec(),
        Table::IpOwnership => vec!["valid_from", "node"],
    };
    let rest = Rest::new(batch, &c, &mapped);
    let mut w = JsonWriter::new();
    for row in 0..batch.num_rows() {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(b"{\"time\":");
        buf.extend_from_slice(epoch(time.i64(row).unwrap_or(0)).as_bytes());
        if let Some(h) = node.get(row) {
            buf.extend_from_slice(b",\"host\":");
            escape_into(&mut buf, h);
        }
        buf.extend_from_slice(b",\"source\":");
        escape_into(&mut buf, &env.source);
        buf.extend_from_slice(b",\"sourcetype\":");
        escape_into(&mut buf, &env.sourcetype);
        if let Some(i) = &env.index {
            buf.extend_from_slice(b",\"index\":");
            escape_into(&mut buf, i);
        }
        buf.extend_from_slice(b",\"event\":");
        w.start(buf);
        match table {
            Table::ProcessActivity | Table::FileActivity | Table::KernelActivity => {
                endpoint(table, &c, row, &mut w);
            }
            Table::NetworkActivity | Table::DnsActivity => {
                endpoint(table, &c, row, &mut w);
                traffic(table, &c, row, &mut w);
            }
            Table::DetectionFinding => alert(&c, row, &mut w),
            Table::IpOwnership => {
                w.str("dest", node.get(row));
                w.str("vendor_product", Some("tracelake"));
            }
        }
        rest.write(&mut w, row);
        let mut doc = w.finish();
        doc.extend_from_slice(b"}\n");
        out.push(doc);
    }
}

fn exec_name(path: Option<&str>) -> Option<&str> {
    path.and_then(|p| split_path(p).0)
}

fn num(w: &mut JsonWriter, key: &str, v: Int<'_>, row: usize) {
    w.i64(key, v.i64(row));
}

/// CIM Endpoint (Processes; Filesystem for file rows).
fn endpoint(table: Table, c: &Columns<'_>, r: usize, w: &mut JsonWriter) {
    let kind = c.str("kind").get(r).unwrap_or_default();
    w.str("event_id", c.str("event_id").get(r));
    w.str("vendor_product", Some("tracelake"));
    // Endpoint's `dest` is the host the event happened on; Network Traffic's is the remote end (`traffic`).
    if !matches!(table, Table::NetworkActivity | Table::DnsActivity) {
        w.str("dest", c.str("node").get(r));
    }
    w.str("dvc", c.str("node").get(r));
    let exe = c.str("exe").get(r);
    num(w, "process_id", c.int("pid"), r);
    w.str("process_name", c.str("comm").get(r));
    w.str("process_path", exe);
    w.str("process_exec", exec_name(exe));
    w.str("process", c.str("cmdline").get(r));
    w.str("process_current_directory", c.str("cwd").get(r));
    let parent = c.str("parent_exe").get(r);
    num(w, "parent_process_id", c.int("ppid"), r);
    w.str("parent_process_path", parent);
    w.str("parent_process_exec", exec_name(parent));
    w.str("parent_process", c.str("parent_cmdline").get(r));
    w.str("user_id", c.int("euid").i64(r).map(|u| u.to_string()).as_deref());
    match table {
        Table::FileActivity => {
            w.str("action", Some(file_action(kind, c.int("open_flags").i64(r))));
            if let Some(p) = c.str("path").get(r) {
                let (name, dir) = split_path(p);
                w.str("file_path", Some(p));
                w.str("file_name", name);
                w.str("file_dir", dir);
            }
            w.str("file_target_path", c.str("path2").get(r));
            w.str("file_acl", c.int("mode").u64(r).map(|m| format!("{:o}", m & 0o7777)).as_deref());
        }
        Table::ProcessActivity | Table::KernelActivity | Table::NetworkActivity | Table::DnsActivity => {
            w.str("action", Some("allowed"));
        }
        Table::DetectionFinding | Table::IpOwnership => {}
    }
}

/// CIM Network Traffic.
fn traffic(table: Table, c: &Columns<'_>, r: usize, w: &mut JsonWriter) {
    let kind = c.str("kind").get(r).unwrap_or_default();
    let (src, dest) = (c.str("local_ip").nonempty(r), c.str("remote_ip").nonempty(r));
    w.str("src", src);
    w.str("src_ip", src);
    w.i64("src_port", c.int("local_port").i64(r).filter(|&p| p != 0));
    w.str("dest", dest);
    w.str("dest_ip", dest);
    w.i64("dest_port", c.int("remote_port").i64(r).filter(|&p| p != 0));
    w.str("transport", c.str("protocol").nonempty(r));
    w.str("protocol", Some("ip"));
    let version = match c.str("family").get(r) {
        Some("inet") => Some(4),
        Some("inet6") => Some(6),
        Some(_) | None => None,
    };
    w.i64("protocol_version", version);
    let (out_b, in_b) = (c.int("bytes_sent").i64(r), c.int("bytes_received").i64(r));
    w.i64("bytes_out", out_b);
    w.i64("bytes_in", in_b);
    if out_b.is_some() || in_b.is_some() {
        w.i64("bytes", Some(out_b.unwrap_or(0) + in_b.unwrap_or(0)));
    }
    let direction = match kind {
        "net_connect" | "net_udp_send" => Some("outbound"),
        "net_accept" | "net_listen" | "net_bind" => Some("inbound"),
        _ => None,
    };
    w.str("direction", direction);
    if table == Table::DnsActivity {
        w.str("app", Some("dns"));
    }
}

/// CIM Alerts and Intrusion Detection.
fn alert(c: &Columns<'_>, r: usize, w: &mut JsonWriter) {
    w.str("id", c.str("finding_id").get(r));
    w.str("type", Some("alert"));
    w.str("ids_type", Some("host"));
    w.str("app", Some("tracelake"));
    w.str("vendor_product", Some("tracelake"));
    w.str("signature", c.str("rule_name").get(r));
    w.str("signature_id", c.str("rule_id").get(r));
    w.str("severity", c.str("severity").get(r));
    num(w, "severity_id", c.int("severity_id"), r);
    w.str("description", c.str("message").get(r));
    w.str("mitre_tactic", c.str("tactic").nonempty(r));
    w.str("mitre_technique_id", c.str("technique").nonempty(r));
    w.str("dest", c.str("node").get(r));
    num(w, "process_id", c.int("pid"), r);
    w.str("process_path", c.str("exe").get(r));
    w.str("process", c.str("cmdline").get(r));
}
