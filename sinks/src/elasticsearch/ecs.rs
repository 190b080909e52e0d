//! Lake rows as Elastic Common Schema 8 documents (docs/siem.md lists every field). Columns ECS has no
//! field for are kept under `tracelake.*` by name, so nothing in the row is lost; `*_raw` bytes (paths and
//! argv that are not UTF-8) go there as base64 beside the lossy text in the ECS field.

use arrow::array::RecordBatch;

use crate::forward::generic::Rest;
use crate::forward::json::{JsonWriter, rfc3339_ns};
use crate::forward::rows::{Bool, Columns, Int, List, Str};
use crate::parquet::Table;

/// The ECS version the documents follow (`ecs.version`).
pub const ECS_VERSION: &str = "8.11.0";

/// Event-table columns written as ECS fields (the rest go under `tracelake.*`).
const EVENT_MAPPED: &[&str] = &[
    "time",
    "event_id",
    "node",
    "kind",
    "first_time",
    "last_time",
    "namespace",
    "pod",
    "pod_uid",
    "workload_kind",
    "container_id",
    "container_name",
    "image",
    "image_digest",
    "container_runtime",
    "pid",
    "tid",
    "ppid",
    "uid",
    "euid",
    "gid",
    "egid",
    "comm",
    "exe",
    "parent_exe",
    "parent_cmdline",
    "cmdline",
    "args",
    "cwd",
    "exit_code",
    "path",
    "path2",
    "ino",
    "mode",
    "owner_uid",
    "owner_gid",
    "family",
    "protocol",
    "local_ip",
    "local_port",
    "remote_ip",
    "remote_port",
    "bytes_sent",
    "bytes_received",
];

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
    "namespace",
    "pod",
    "pod_uid",
    "workload_kind",
    "container_id",
    "image",
    "pid",
    "exe",
    "cmdline",
];

const OWNERSHIP_MAPPED: &[&str] =
    &["valid_from", "valid_to", "event_id", "node", "namespace", "pod", "pod_uid", "container_id"];

/// The columns of an event batch ECS fields come from, looked up once per batch.
#[derive(Debug)]
pub struct EventCols<'a> {
    time: Int<'a>,
    event_id: Str<'a>,
    node: Str<'a>,
    kind: Str<'a>,
    first: Int<'a>,
    last: Int<'a>,
    summary: Bool<'a>,
    namespace: Str<'a>,
    pod: Str<'a>,
    pod_uid: Str<'a>,
    workload_kind: Str<'a>,
    container_id: Str<'a>,
    container_name: Str<'a>,
    image: Str<'a>,
    image_digest: Str<'a>,
    runtime: Str<'a>,
    pid: Int<'a>,
    tid: Int<'a>,
    ppid: Int<'a>,
    uid: Int<'a>,
    euid: Int<'a>,
    gid: Int<'a>,
    egid: Int<'a>,
    comm: Str<'a>,
    exe: Str<'a>,
    parent_exe: Str<'a>,
    parent_cmdline: Str<'a>,
    cmdline: Str<'a>,
    args: List<'a>,
    cwd: Str<'a>,
    exit_code: Int<'a>,
    path: Str<'a>,
    path2: Str<'a>,
    ino: Int<'a>,
    mode: Int<'a>,
    owner_uid: Int<'a>,
    owner_gid: Int<'a>,
    family: Str<'a>,
    protocol: Str<'a>,
    local_ip: Str<'a>,
    local_port: Int<'a>,
    remote_ip: Str<'a>,
    remote_port: Int<'a>,
    bytes_sent: Int<'a>,
    bytes_received: Int<'a>,
}

impl<'a> EventCols<'a> {
    pub fn new(c: &Columns<'a>) -> EventCols<'a> {
        EventCols {
            time: c.int("time"),
            event_id: c.str("event_id"),
            node: c.str("node"),
            kind: c.str("kind"),
            first: c.int("first_time"),
            last: c.int("last_time"),
            summary: c.bool("summary"),
            namespace: c.str("namespace"),
            pod: c.str("pod"),
            pod_uid: c.str("pod_uid"),
            workload_kind: c.str("workload_kind"),
            container_id: c.str("container_id"),
            container_name: c.str("container_name"),
            image: c.str("image"),
            image_digest: c.str("image_digest"),
            runtime: c.str("container_runtime"),
            pid: c.int("pid"),
            tid: c.int("tid"),
            ppid: c.int("ppid"),
            uid: c.int("uid"),
            euid: c.int("euid"),
            gid: c.int("gid"),
            egid: c.int("egid"),
            comm: c.str("comm"),
            exe: c.str("exe"),
            parent_exe: c.str("parent_exe"),
            parent_cmdline: c.str("parent_cmdline"),
            cmdline: c.str("cmdline"),
            args: c.list("args"),
            cwd: c.str("cwd"),
            exit_code: c.int("exit_code"),
            path: c.str("path"),
            path2: c.str("path2"),
            ino: c.int("ino"),
            mode: c.int("mode"),
            owner_uid: c.int("owner_uid"),
            owner_gid: c.int("owner_gid"),
            family: c.str("family"),
            protocol: c.str("protocol"),
            local_ip: c.str("local_ip"),
            local_port: c.int("local_port"),
            remote_ip: c.str("remote_ip"),
            remote_port: c.int("remote_port"),
            bytes_sent: c.int("bytes_sent"),
            bytes_received: c.int("bytes_received"),
        }
    }
}

/// ECS `event.category` and `event.type` of an event kind.
pub fn categorize(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        "exec" | "fork" => (&["process"], &["start"]),
        "exit" => (&["process"], &["end"]),
        "clone_thread" => (&["process"], &["start"]),
        "process_snapshot" => (&["process"], &["info"]),
        "file_open" => (&["file"], &["access"]),
        "file_rename" | "file_chmod" | "file_chown" => (&["file"], &["change"]),
        "file_unlink" => (&["file"], &["deletion"]),
        "net_connect" | "net_accept" => (&["network"], &["connection", "start"]),
        "net_close" => (&["network"], &["connection", "end"]),
        "net_listen" | "net_bind" | "net_udp_send" => (&["network"], &["connection"]),
        "setuid" | "setgid" | "capset" => (&["process", "iam"], &["change"]),
        "ptrace" => (&["process"], &["access"]),
        "module_load" => (&["driver"], &["start"]),
        "mount" | "umount" | "chroot" | "pivot_root" => (&["file", "configuration"], &["change"]),
        "unshare" | "setns" | "bpf" | "memfd_create" => (&["process"], &["info"]),
        _ => (&["host"], &["info"]),
    }
}

fn id_str(v: Option<i64>) -> Option<String> {
    v.map(|n| n.to_string())
}

/// The file name after the last `/`, and the directory before it.
pub fn split_path(p: &str) -> (Option<&str>, Option<&str>) {
    match p.rfind('/') {
        Some(0) => (Some(&p[1..]).filter(|s| !s.is_empty()), Some("/")),
        Some(i) => (Some(&p[i + 1..]).filter(|s| !s.is_empty()), Some(&p[..i])),
        None => (Some(p).filter(|s| !s.is_empty()), None),
    }
}

/// Renders each row of a batch of `table` as one document appended to `out`: `prefix` writes what goes
/// before the JSON object (a `_bulk` action line), then the object and a newline.
pub fn render(table: Table, batch: &RecordBatch, out: &mut Vec<Vec<u8>>, mut prefix: impl FnMut(usize, &mut Vec<u8>)) {
    let cols = Columns::new(batch);
    let mut w = JsonWriter::new();
    let mut row_doc = |row: usize, w: &mut JsonWriter, fields: &mut dyn FnMut(&mut JsonWriter)| {
        let mut buf = Vec::with_capacity(1024);
        prefix(row, &mut buf);
        w.start(buf);
        fields(w);
        let mut doc = w.finish();
        doc.push(b'\n');
        out.push(doc);
    };
    match table {
        Table::ProcessActivity
        | Table::FileActivity
        | Table::NetworkActivity
        | Table::DnsActivity
        | Table::KernelActivity => {
            let e = EventCols::new(&cols);
            let rest = Rest::new(batch, &cols, EVENT_MAPPED);
            for row in 0..batch.num_rows() {
                row_doc(row, &mut w, &mut |w| {
                    event(table, &e, row, w);
                    w.begin("tracelake");
                    rest.write(w, row);
                    w.end();
                });
            }
        }
        Table::DetectionFinding => {
            let rest = Rest::new(batch, &cols, FINDING_MAPPED);
            for row in 0..batch.num_rows() {
                row_doc(row, &mut w, &mut |w| {
                    finding(&cols, row, w);
                    w.begin("tracelake");
                    rest.write(w, row);
                    w.end();
                });
            }
        }
        Table::IpOwnership => {
            let rest = Rest::new(batch, &cols, OWNERSHIP_MAPPED);
            for row in 0..batch.num_rows() {
                row_doc(row, &mut w, &mut |w| {
                    ownership(&cols, row, w);
                    w.begin("tracelake");
                    rest.write(w, row);
                    w.end();
                });
            }
        }
    }
}

fn head(w: &mut JsonWriter, time: Option<i64>, kind: &str, dataset: &str, id: Option<&str>) {
    w.str("@timestamp", time.map(rfc3339_ns).as_deref());
    w.begin("ecs");
    w.str("version", Some(ECS_VERSION));
    w.end();
    w.begin("event");
    w.str("kind", Some(kind));
    w.str("module", Some("tracelake"));
    w.str("dataset", Some(dataset));
    w.str("id", id);
}

fn orchestrator(w: &mut JsonWriter, ns: Option<&str>, pod: Option<&str>, uid: Option<&str>, wk: Option<&str>) {
    w.begin("orchestrator");
    if ns.is_some() || pod.is_some() {
        w.str("type", Some("kubernetes"));
    }
    w.str("namespace", ns);
    w.begin("resource");
    if pod.is_some() {
        w.str("type", Some("pod"));
    }
    w.str("name", pod);
    w.str("id", uid);
    w.begin("parent");
    w.str("type", wk);
    w.end();
    w.end();
    w.end();
}

fn event(table: Table, e: &EventCols<'_>, r: usize, w: &mut JsonWriter) {
    let kind = e.kind.get(r).unwrap_or_default();
    head(w, e.time.i64(r), "event", &format!("tracelake.{}", table.name()), e.event_id.get(r));
    w.str("action", Some(kind));
    let (category, types) = categorize(kind);
    w.strs("category", category.iter().copied());
    w.strs("type", types.iter().copied());
    if e.summary.get(r) == Some(true) {
        w.str("start", e.first.i64(r).map(rfc3339_ns).as_deref());
        w.str("end", e.last.i64(r).map(rfc3339_ns).as_deref());
    }
    w.end();
    w.begin("host");
    w.str("name", e.node.get(r));
    w.str("hostname", e.node.get(r));
    w.end();
    orchestrator(w, e.namespace.nonempty(r), e.pod.nonempty(r), e.pod_uid.nonempty(r), e.workload_kind.nonempty(r));
    w.begin("container");
    w.str("id", e.container_id.nonempty(r));
    w.str("name", e.container_name.nonempty(r));
    w.str("runtime", e.runtime.nonempty(r));
    w.begin("image");
    w.str("name", e.image.nonempty(r));
    w.begin("hash");
    w.strs("all", e.image_digest.nonempty(r));
    w.end();
    w.end();
    w.end();
    w.begin("process");
    w.i64("pid", e.pid.i64(r));
    w.str("name", e.comm.get(r));
    w.str("executable", e.exe.get(r));
    w.str("command_line", e.cmdline.get(r));
    let args = e.args.strs(r);
    if !args.is_empty() {
        w.i64("args_count", Some(args.len() as i64));
    }
    w.strs("args", args);
    w.str("working_directory", e.cwd.get(r));
    w.i64("exit_code", e.exit_code.i64(r));
    w.begin("thread");
    w.i64("id", e.tid.i64(r));
    w.end();
    w.begin("parent");
    w.i64("pid", e.ppid.i64(r));
    w.str("executable", e.parent_exe.get(r));
    w.str("command_line", e.parent_cmdline.get(r));
    w.end();
    for (key, v) in [("user", e.euid), ("real_user", e.uid), ("group", e.egid), ("real_group", e.gid)] {
        w.begin(key);
        w.str("id", id_str(v.i64(r)).as_deref());
        w.end();
    }
    w.end();
    match table {
        Table::FileActivity | Table::KernelActivity => file(e, r, w),
        Table::NetworkActivity | Table::DnsActivity => network(table, e, r, kind, w),
        Table::ProcessActivity | Table::DetectionFinding | Table::IpOwnership => {}
    }
}

fn file(e: &EventCols<'_>, r: usize, w: &mut JsonWriter) {
    w.begin("file");
    if let Some(p) = e.path.get(r) {
        let (name, dir) = split_path(p);
        w.str("path", Some(p));
        w.str("name", name);
        w.str("directory", dir);
    }
    w.str("target_path", e.path2.get(r));
    w.str("inode", e.ino.u64(r).map(|n| n.to_string()).as_deref());
    w.str("mode", e.mode.u64(r).map(|m| format!("{:o}", m & 0o7777)).as_deref());
    w.str("uid", e.owner_uid.i64(r).filter(|&u| u >= 0).map(|u| u.to_string()).as_deref());
    w.str("gid", e.owner_gid.i64(r).filter(|&g| g >= 0).map(|g| g.to_string()).as_deref());
    w.end();
}

fn network(table: Table, e: &EventCols<'_>, r: usize, kind: &str, w: &mut JsonWriter) {
    w.begin("source");
    w.str("ip", e.local_ip.nonempty(r));
    w.i64("port", e.local_port.i64(r).filter(|&p| p != 0));
    w.i64("bytes", e.bytes_sent.i64(r));
    w.end();
    w.begin("destination");
    w.str("ip", e.remote_ip.nonempty(r));
    w.i64("port", e.remote_port.i64(r).filter(|&p| p != 0));
    w.i64("bytes", e.bytes_received.i64(r));
    w.end();
    w.begin("network");
    w.str("transport", e.protocol.nonempty(r));
    let family = match e.family.get(r) {
        Some("inet") => Some("ipv4"),
        Some("inet6") => Some("ipv6"),
        Some(_) | None => None,
    };
    w.str("type", family);
    let direction = match kind {
        "net_connect" | "net_udp_send" => Some("egress"),
        "net_accept" | "net_listen" | "net_bind" => Some("ingress"),
        _ => None,
    };
    w.str("direction", direction);
    if table == Table::DnsActivity {
        w.str("protocol", Some("dns"));
    }
    w.end();
}

fn finding(c: &Columns<'_>, r: usize, w: &mut JsonWriter) {
    head(w, c.int("time").i64(r), "alert", "tracelake.detection_finding", c.str("finding_id").get(r));
    w.strs("category", ["intrusion_detection"]);
    w.strs("type", ["indicator"]);
    w.i64("severity", c.int("severity_id").i64(r));
    w.end();
    w.str("message", c.str("message").get(r));
    w.begin("rule");
    w.str("id", c.str("rule_id").get(r));
    w.str("name", c.str("rule_name").get(r));
    w.str("ruleset", Some("tracelake"));
    w.end();
    w.begin("log");
    w.str("level", c.str("severity").get(r));
    w.end();
    w.begin("threat");
    let (tactic, technique) = (c.str("tactic").nonempty(r), c.str("technique").nonempty(r));
    if tactic.is_some() || technique.is_some() {
        w.str("framework", Some("MITRE ATT&CK"));
    }
    w.begin("tactic");
    w.strs("name", tactic);
    w.end();
    w.begin("technique");
    w.strs("id", technique);
    w.end();
    w.end();
    w.begin("host");
    w.str("name", c.str("node").get(r));
    w.end();
    let s = |n| c.str(n).nonempty(r);
    orchestrator(w, s("namespace"), s("pod"), s("pod_uid"), s("workload_kind"));
    w.begin("container");
    w.str("id", s("container_id"));
    w.begin("image");
    w.str("name", s("image"));
    w.end();
    w.end();
    w.begin("process");
    w.i64("pid", c.int("pid").i64(r));
    w.str("executable", c.str("exe").get(r));
    w.str("command_line", c.str("cmdline").get(r));
    w.end();
}

fn ownership(c: &Columns<'_>, r: usize, w: &mut JsonWriter) {
    head(w, c.int("valid_from").i64(r), "state", "tracelake.ip_ownership", c.str("event_id").get(r));
    w.str("start", c.int("valid_from").i64(r).map(rfc3339_ns).as_deref());
    w.str("end", c.int("valid_to").i64(r).map(rfc3339_ns).as_deref());
    w.end();
    w.begin("host");
    w.str("name", c.str("node").get(r));
    w.end();
    let s = |n| c.str(n).nonempty(r);
    orchestrator(w, s("namespace"), s("pod"), s("pod_uid"), None);
    w.begin("container");
    w.str("id", s("container_id"));
    w.end();
}
