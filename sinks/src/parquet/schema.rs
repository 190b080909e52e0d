//! The lake's tables: which events go where, and the Arrow schema of each.
//!
//! Column names, types and their OCSF 1.3 / ECS equivalents are documented
//! in docs/schema.md; `schema_doc_lists_every_column` keeps the two in step.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tracelake_model::{Body, Event, Kind};

use super::classes::Extra;
use super::columns::Common;

/// One table of the lake, named after the OCSF 1.3 class its rows follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// OCSF Process Activity (1007): exec, fork, exit, threads, the /proc walk.
    ProcessActivity,
    /// OCSF File System Activity (1001).
    FileActivity,
    /// OCSF Network Activity (4001), except port 53.
    NetworkActivity,
    /// OCSF DNS Activity (4003): UDP/TCP to or from port 53 (no payload parsing).
    DnsActivity,
    /// Privilege and escape signals: OCSF Kernel Activity (1003), Kernel
    /// Extension Activity (1002) for module loads, Process Activity
    /// (1007, Set User ID / Inject) for setuid/setgid/capset/ptrace; the
    /// row's `class_uid` says which.
    KernelActivity,
    /// OCSF Detection Finding (2004): written by the detections.
    DetectionFinding,
    /// Which workload held an IP when (from the enricher's pod IP history).
    IpOwnership,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::ProcessActivity,
        Table::FileActivity,
        Table::NetworkActivity,
        Table::DnsActivity,
        Table::KernelActivity,
        Table::DetectionFinding,
        Table::IpOwnership,
    ];

    /// Tables rows of sensor events go to (the others are filled by other writers).
    pub const EVENT_TABLES: [Table; 5] = [
        Table::ProcessActivity,
        Table::FileActivity,
        Table::NetworkActivity,
        Table::DnsActivity,
        Table::KernelActivity,
    ];

    /// Directory name under the lake root.
    pub fn name(self) -> &'static str {
        match self {
            Table::ProcessActivity => "process_activity",
            Table::FileActivity => "file_activity",
            Table::NetworkActivity => "network_activity",
            Table::DnsActivity => "dns_activity",
            Table::KernelActivity => "kernel_activity",
            Table::DetectionFinding => "detection_finding",
            Table::IpOwnership => "ip_ownership",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The timestamp column files are sorted by and partitioned on.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::IpOwnership => "valid_from",
            Table::ProcessActivity
            | Table::FileActivity
            | Table::NetworkActivity
            | Table::DnsActivity
            | Table::KernelActivity
            | Table::DetectionFinding => "time",
        }
    }

    /// Columns with a bloom filter: ids and addresses hunts look up by equality.
    pub fn bloom_columns(self) -> &'static [&'static str] {
        match self {
            Table::ProcessActivity | Table::FileActivity | Table::KernelActivity => {
                &["event_id", "container_id", "pod_uid"]
            }
            Table::NetworkActivity | Table::DnsActivity => {
                &["event_id", "container_id", "pod_uid", "local_ip", "remote_ip"]
            }
            Table::DetectionFinding => &["finding_id", "container_id", "pod_uid"],
            Table::IpOwnership => &["ip", "container_id", "pod_uid", "event_id"],
        }
    }

    /// Where an event's row goes. Every kind is listed: a new kind must pick its table.
    pub fn of(ev: &Event<'_>) -> Table {
        match ev.kind {
            Kind::Exec | Kind::Fork | Kind::Exit | Kind::CloneThread | Kind::ProcessSnapshot => Table::ProcessActivity,
            Kind::FileOpen | Kind::FileRename | Kind::FileUnlink | Kind::FileChmod | Kind::FileChown => {
                Table::FileActivity
            }
            Kind::NetConnect
            | Kind::NetAccept
            | Kind::NetListen
            | Kind::NetClose
            | Kind::NetUdpSend
            | Kind::NetBind => match ev.body {
                Body::Net { family: 2 | 10, protocol: 6 | 17, local, remote, .. }
                    if remote.port == 53 || local.port == 53 =>
                {
                    Table::DnsActivity
                }
                _ => Table::NetworkActivity,
            },
            Kind::Setuid
            | Kind::Setgid
            | Kind::Capset
            | Kind::Ptrace
            | Kind::Mount
            | Kind::Umount
            | Kind::Unshare
            | Kind::Setns
            | Kind::ModuleLoad
            | Kind::Bpf
            | Kind::MemfdCreate
            | Kind::Chroot
            | Kind::PivotRoot => Table::KernelActivity,
        }
    }

    /// The Arrow schema of the table's files.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 7]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| Table::ALL.map(build_schema));
        all[self as usize].clone()
    }
}

/// OCSF class_uid of an event's row.
pub fn ocsf_class_uid(kind: Kind) -> i32 {
    match kind {
        Kind::Exec
        | Kind::Fork
        | Kind::Exit
        | Kind::CloneThread
        | Kind::ProcessSnapshot
        | Kind::Setuid
        | Kind::Setgid
        | Kind::Capset
        | Kind::Ptrace => 1007,
        Kind::FileOpen | Kind::FileRename | Kind::FileUnlink | Kind::FileChmod | Kind::FileChown => 1001,
        Kind::NetConnect | Kind::NetAccept | Kind::NetListen | Kind::NetClose | Kind::NetUdpSend | Kind::NetBind => {
            4001
        }
        Kind::ModuleLoad => 1002,
        Kind::Mount
        | Kind::Umount
        | Kind::Unshare
        | Kind::Setns
        | Kind::Bpf
        | Kind::MemfdCreate
        | Kind::Chroot
        | Kind::PivotRoot => 1003,
    }
}

pub(crate) fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

pub(crate) fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn build_schema(table: Table) -> SchemaRef {
    let mut fields = Vec::new();
    match table {
        Table::ProcessActivity
        | Table::FileActivity
        | Table::NetworkActivity
        | Table::DnsActivity
        | Table::KernelActivity => {
            Common::fields(&mut fields);
            Extra::fields(table, &mut fields);
        }
        Table::DetectionFinding => detection_finding_fields(&mut fields),
        Table::IpOwnership => ip_ownership_fields(&mut fields),
    }
    Arc::new(Schema::new(fields))
}

fn detection_finding_fields(f: &mut Vec<Field>) {
    use DataType::{Int32, UInt32, Utf8};
    f.push(Field::new("time", ts_type(), false));
    for (name, ty, nullable) in [
        ("finding_id", Utf8, false),
        ("rule_id", Utf8, false),
        ("rule_name", Utf8, false),
        ("severity", Utf8, false),
        ("severity_id", Int32, false),
        ("message", Utf8, true),
        ("tactic", Utf8, true),
        ("technique", Utf8, true),
        ("node", Utf8, true),
        ("namespace", Utf8, true),
        ("pod", Utf8, true),
        ("pod_uid", Utf8, true),
        ("workload_kind", Utf8, true),
        ("workload", Utf8, true),
        ("container_id", Utf8, true),
        ("image", Utf8, true),
        ("pid", UInt32, true),
        ("exe", Utf8, true),
        ("cmdline", Utf8, true),
    ] {
        f.push(Field::new(name, ty, nullable));
    }
    f.push(Field::new("event_ids", list_of(Utf8), true));
}

fn ip_ownership_fields(f: &mut Vec<Field>) {
    use DataType::Utf8;
    f.push(Field::new("ip", Utf8, false));
    f.push(Field::new("valid_from", ts_type(), false));
    f.push(Field::new("valid_to", ts_type(), true));
    for name in ["node", "namespace", "pod", "pod_uid", "workload_kind", "workload", "container_id", "service"] {
        f.push(Field::new(name, Utf8, true));
    }
    f.push(Field::new("source", Utf8, false));
    f.push(Field::new("seq", DataType::UInt64, false));
    // One version of one interval as one node reported it (hash of node, ip, valid_from and seq): a version
    // that reaches the central lake twice (Kafka replays, an agent restarting) is kept once.
    f.push(Field::new("event_id", Utf8, false));
}
