#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder,
    TimestampNanosecondArray, UInt16Array, UInt32Array, UInt32Builder, UInt64Array, UInt64Builder, new_null_array,
};
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::buffer::DiskBuffer;
use super::config::WhenFull;
use super::json::{JsonWriter, base64, day, rfc3339_ns};
use crate::parquet::Table;

/// 2023-11-14T22:13:20.123456789Z
pub(crate) const T0: i64 = 1_700_000_000_123_456_789;

/// Argv bytes that are not UTF-8, as `args_raw` holds them.
pub(crate) const RAW_ARGV: &[u8] = b"/tmp/\xff\xfeevil\0-c\0id\0";

/// A row's value for column `name` of `table`: plausible defaults; with `hostile`, the strings a SIEM
/// mapping must survive (newline, NUL, quotes, backslash, U+FFFD beside the raw bytes).
fn value(table: Table, name: &str, row: usize, hostile: bool) -> Value {
    let evil = "/tmp/\u{fffd}\u{fffd}evil\nline2\u{0}\"q\"\\";
    match name {
        "event_id" => json!(format!("{:016x}", 0x1000_0000_0000 + row)),
        "finding_id" => json!(format!("f{:015x}", 0x2000 + row)),
        "node" => json!("node-1"),
        "kind" => json!(match table {
            Table::ProcessActivity => "exec",
            Table::FileActivity => "file_open",
            Table::NetworkActivity | Table::DnsActivity => "net_connect",
            Table::KernelActivity => "setuid",
            Table::DetectionFinding | Table::IpOwnership => "",
        }),
        "class_uid" => json!(1007),
        "count" => json!(1),
        "summary" | "core_dump" | "fileless" | "enrichment_partial" => json!(false),
        "container" => json!(true),
        "first_time" | "last_time" | "valid_to" | "child_pid" | "child_start_ns" | "exit_code" | "signal" => {
            Value::Null
        }
        "time" | "valid_from" => json!(T0 + row as i64),
        "flags" => json!(if hostile { vec!["args_truncated"] } else { vec![] }),
        "namespace" => json!("shop"),
        "pod" => json!("web-7d9f-abcde"),
        "pod_uid" => json!("2d5e1c9a-0b1f-4c3e-9a7d-5f6e7d8c9b0a"),
        "workload_kind" => json!("Deployment"),
        "workload" => json!("web"),
        "workload_source" => json!("api"),
        "container_id" => json!("4f".repeat(32)),
        "container_name" => json!("app"),
        "image" => json!("registry.example/shop/web:1.4"),
        "image_digest" => json!("sha256:".to_string() + &"ab".repeat(32)),
        "container_runtime" => json!("containerd"),
        "cgroup" => json!("/kubepods.slice/pod.slice/cri-containerd-4f4f.scope"),
        "comm" => json!(if hostile { "ev\nil" } else { "curl" }),
        "exe" | "path" | "cwd" | "path2" if hostile => json!(evil),
        "exe_raw" | "path_raw" | "cwd_raw" | "comm_raw" | "path2_raw" if hostile => json!(base64(b"/tmp/\xff\xfeevil")),
        "args_raw" if hostile => json!(base64(RAW_ARGV)),
        "exe" => json!("/usr/bin/curl"),
        "parent_exe" | "exe_ancestor" => json!("/bin/sh"),
        "parent_cmdline" => json!("sh -c curl -s http://169.254.169.254/"),
        "cmdline" => json!(if hostile { "/tmp/\u{fffd}\u{fffd}evil -c id" } else { "curl -s http://169.254.169.254/" }),
        "args" => json!(if hostile {
            vec!["/tmp/\u{fffd}\u{fffd}evil", "-c", "id"]
        } else {
            vec!["curl", "-s", "http://169.254.169.254/"]
        }),
        "ancestor_exes" => json!(["/bin/sh", "/usr/bin/containerd-shim-runc-v2"]),
        "ancestor_pids" => json!([41, 1]),
        "event_ids" => json!(["0000100000000000", "0000100000000001"]),
        "cwd" => json!("/app"),
        "path" => json!("/etc/shadow"),
        "family" => json!("inet"),
        "protocol" => json!("tcp"),
        "local_ip" | "pod_ip" | "ip" => json!("10.244.1.7"),
        "remote_ip" => json!("169.254.169.254"),
        "local_port" => json!(41000),
        "remote_port" => json!(if table == Table::DnsActivity { 53 } else { 80 }),
        "rule_id" => json!("TL-K8S-007"),
        "rule_name" => json!("Cloud metadata service contacted from a container"),
        "severity" => json!("high"),
        "severity_id" => json!(4),
        "message" => {
            json!(if hostile { "curl\nreached \"metadata\"\u{0}" } else { "curl reached the metadata service" })
        }
        "tactic" => json!("Credential Access"),
        "technique" => json!("T1552.005"),
        "source" if table == Table::IpOwnership => json!("observed"),
        "syscall_args" => json!([0, 18446744073709551615u64, 3]),
        "open_flags" => json!(0),
        n if n.ends_with("_raw") => Value::Null,
        "service" | "peer_service" | "containerd_namespace" => Value::Null,
        n if n.starts_with("peer_") => Value::Null,
        _ => json!(row + 1),
    }
}

fn column(table: Table, f: &Field, rows: usize, hostile: bool) -> ArrayRef {
    let vals: Vec<Value> = (0..rows).map(|r| value(table, f.name(), r, hostile)).collect();
    let u = |v: &Value| v.as_u64();
    match f.data_type() {
        DataType::Utf8 => Arc::new(StringArray::from_iter(vals.iter().map(|v| match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }))),
        DataType::Binary => {
            let decoded: Vec<Option<Vec<u8>>> = vals.iter().map(|v| v.as_str().map(debase64)).collect();
            Arc::new(BinaryArray::from_iter(decoded))
        }
        DataType::Boolean => Arc::new(BooleanArray::from_iter(vals.iter().map(Value::as_bool))),
        DataType::Int32 => Arc::new(Int32Array::from_iter(vals.iter().map(|v| v.as_i64().map(|n| n as i32)))),
        DataType::Int64 => Arc::new(Int64Array::from_iter(vals.iter().map(Value::as_i64))),
        DataType::UInt16 => Arc::new(UInt16Array::from_iter(vals.iter().map(|v| u(v).map(|n| n as u16)))),
        DataType::UInt32 => Arc::new(UInt32Array::from_iter(vals.iter().map(|v| u(v).map(|n| n as u32)))),
        DataType::UInt64 => Arc::new(UInt64Array::from_iter(vals.iter().map(u))),
        DataType::Timestamp(_, _) => {
            Arc::new(TimestampNanosecondArray::from_iter(vals.iter().map(Value::as_i64)).with_timezone("UTC"))
        }
        DataType::List(item) => match item.data_type() {
            DataType::Utf8 => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for v in &vals {
                    for s in v.as_array().into_iter().flatten() {
                        b.values().append_value(s.as_str().unwrap_or_default());
                    }
                    b.append(!v.is_null() || !f.is_nullable());
                }
                Arc::new(b.finish())
            }
            DataType::UInt32 => {
                let mut b = ListBuilder::new(UInt32Builder::new());
                for v in &vals {
                    for n in v.as_array().into_iter().flatten() {
                        b.values().append_value(n.as_u64().unwrap_or(0) as u32);
                    }
                    b.append(true);
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = ListBuilder::new(UInt64Builder::new());
                for v in &vals {
                    for n in v.as_array().into_iter().flatten() {
                        b.values().append_value(n.as_u64().unwrap_or(0));
                    }
                    b.append(true);
                }
                Arc::new(b.finish())
            }
        },
        other => new_null_array(other, rows),
    }
}

fn debase64(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | A.iter().position(|&a| a == c).unwrap_or(0) as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `rows` rows of `table` in the lake's schema; with `hostile`, the strings SIEM documents must survive.
pub(crate) fn sample_batch(table: Table, rows: usize, hostile: bool) -> RecordBatch {
    let schema = table.schema();
    let cols: Vec<ArrayRef> = schema.fields().iter().map(|f| column(table, f, rows, hostile)).collect();
    RecordBatch::try_new(schema, cols).unwrap()
}

/// Compares `got` with the checked-in `path` (relative to sinks/); `TRACELAKE_BLESS=1` writes it instead.
pub(crate) fn golden(path: &str, got: &Value) {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = serde_json::to_string_pretty(got).unwrap() + "\n";
    if std::env::var_os("TRACELAKE_BLESS").is_some() {
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{}: {e} (TRACELAKE_BLESS=1 writes it)", full.display()));
    let want: Value = serde_json::from_str(&want).unwrap();
    assert_eq!(got, &want, "{} differs (TRACELAKE_BLESS=1 rewrites it after review)", full.display());
}

#[test]
fn json_writer_escapes_controls_and_skips_empty_objects() {
    let mut w = JsonWriter::new();
    w.start(Vec::new());
    w.str("a", Some("x\n\u{0}\"\\\u{7f}é"));
    w.begin("empty");
    w.begin("deeper");
    w.str("none", None);
    w.end();
    w.end();
    w.begin("p");
    w.begin("q");
    w.u64("n", Some(u64::MAX));
    w.end();
    w.i64("m", Some(-1));
    w.end();
    let out = w.finish();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, json!({"a": "x\n\u{0}\"\\\u{7f}é", "p": {"q": {"n": u64::MAX}, "m": -1}}));
    assert!(!String::from_utf8(out).unwrap().contains("empty"));
}

#[test]
fn times_and_base64() {
    assert_eq!(rfc3339_ns(T0), "2023-11-14T22:13:20.123456789Z");
    assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(day(T0), "2023.11.14");
    assert_eq!(base64(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(debase64(&base64(RAW_ARGV)), RAW_ARGV);
}

#[test]
fn disk_buffer_keeps_order_across_reopen_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = DiskBuffer::open(dir.path(), 1 << 20, 256, WhenFull::Block).unwrap();
    let docs: Vec<Vec<u8>> = (0..20).map(|i| format!("doc-{i:03}").into_bytes()).collect();
    let refs: Vec<&[u8]> = docs.iter().map(Vec::as_slice).collect();
    b.append(&refs).unwrap();
    b.sync().unwrap();
    drop(b);
    // A torn write at the end of the newest segment.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &[9, 0, 0, 0, 1, 2]).unwrap();
    let mut b = DiskBuffer::open(dir.path(), 1 << 20, 256, WhenFull::Block).unwrap();
    assert_eq!(b.truncated_bytes, 6);
    assert_eq!(b.pending(), 20);
    let mut got = Vec::new();
    while let Some((seg, d)) = b.next_unread().unwrap() {
        got.push(d);
        b.resolve(seg).unwrap();
    }
    assert_eq!(got, docs);
    assert_eq!(b.pending(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "delivered segments are deleted");
}

#[test]
fn full_disk_buffer_blocks_or_drops_oldest_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let doc = vec![b'x'; 92];
    let mut b = DiskBuffer::open(dir.path(), 400, 200, WhenFull::Block).unwrap();
    assert_eq!(b.append(&[&doc, &doc, &doc, &doc]).unwrap(), super::Appended::Stored);
    assert_eq!(b.append(&[&doc]).unwrap(), super::Appended::Full);
    drop(b);
    let mut b = DiskBuffer::open(dir.path(), 400, 200, WhenFull::DropOldest).unwrap();
    assert_eq!(b.append(&[&doc]).unwrap(), super::Appended::Stored);
    assert_eq!(b.dropped, 2, "the oldest segment (two documents) went");
    assert_eq!(b.pending(), 3);
}
