//! Spool and wire-format tests on real files; real-broker tests in tests/broker.rs
//! (tansu, started by testkit), read back by pyarrow (scripts/check_lake.py).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod broker;
mod records;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use tracelake_model::json::{Identity, JsonContext, event_id};
use tracelake_model::{BootClock, Endpoint, Kind, OwnedBody, OwnedEvent, Subject};

use super::stats::get;
use super::wire::{self, Envelope, WorkloadKey};
use super::*;
use crate::parquet::{BatchBuilder, Table};

pub(super) const SALT: u64 = 11;

/// Wall time of ktime 0: now, so files land in today's partitions.
pub(super) fn ctx() -> JsonContext<'static> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128;
    JsonContext { node: "node-k", clock: BootClock::from_offset(now), node_salt: SALT }
}

/// Event `i`: kinds cycle through process, file, network, DNS and kernel tables; ids are unique per `i`.
pub(super) fn event(i: u64) -> OwnedEvent {
    let kind = [Kind::Exec, Kind::FileOpen, Kind::NetConnect, Kind::NetUdpSend, Kind::Setuid][(i % 5) as usize];
    let mut remote = Endpoint { addr: [0; 16], port: if kind == Kind::NetUdpSend { 53 } else { 443 } };
    remote.addr[..4].copy_from_slice(&[10, 0, 0, 1]);
    let local = Endpoint { addr: [0; 16], port: 40000 };
    let (body, strings): (OwnedBody, [&[u8]; 3]) = match kind {
        Kind::Exec => (
            OwnedBody::Exec { exe_ino: 5, exe_dev: 8, exe_nlink: 1, launch: None },
            [b"/usr/bin/curl", b"curl\0-s\0http://x/\0", b"/"],
        ),
        Kind::FileOpen => (
            OwnedBody::File { ret: 3, ino: 9, dev: 8, open_flags: 0, mode: 0o644, owner_uid: 0, owner_gid: 0 },
            [b"/etc/passwd", b"", b""],
        ),
        Kind::Setuid => (OwnedBody::Syscall { nr: 105, ret: 0, args: [0; 6] }, [b""; 3]),
        _ => (
            OwnedBody::Net { ret: 0, family: 2, protocol: 17, local, remote, bytes_sent: 1, bytes_received: 2 },
            [b""; 3],
        ),
    };
    OwnedEvent {
        kind,
        subject: Subject {
            ktime_ns: 1_000_000 + i * 1000,
            cgroup_id: 77,
            proc_start_ns: 1,
            pid: 1000 + (i % 4000) as u32,
            tgid: 1000,
            ppid: 1,
            pidns: 1,
            mntns: 1,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            ..Subject::default()
        },
        flags: 0,
        count: 1,
        aggregate: None,
        body,
        strings: strings.map(<[u8]>::to_vec),
    }
}

/// Identities of three workloads, a bare container and the host, by `i`.
pub(super) fn identity(i: u64) -> Identity<'static> {
    match i % 5 {
        0 => Identity {
            namespace: Some("shop"),
            workload: Some("api"),
            container_id: Some("aaa"),
            ..Identity::default()
        },
        1 => {
            Identity { namespace: Some("shop"), workload: Some("db"), container_id: Some("bbb"), ..Identity::default() }
        }
        2 => {
            Identity { namespace: Some("ops"), workload: Some("api"), container_id: Some("ccc"), ..Identity::default() }
        }
        3 => Identity { container_id: Some("ddd"), ..Identity::default() },
        _ => Identity::default(),
    }
}

pub(super) fn hex_id(ev: &OwnedEvent) -> String {
    format!("{:016x}", event_id(SALT, &ev.as_event()))
}

/// Expected rows and event ids per table for scripts/check_lake.py.
pub(super) fn expect_of(events: &[OwnedEvent], values: Vec<Value>) -> Value {
    let mut rows = serde_json::Map::new();
    let mut ids = serde_json::Map::new();
    for t in Table::EVENT_TABLES {
        let of: Vec<String> = events.iter().filter(|e| Table::of(&e.as_event()) == t).map(hex_id).collect();
        rows.insert(t.name().into(), json!(of.len()));
        ids.insert(t.name().into(), json!(of));
    }
    json!({"rows": rows, "event_ids": ids, "values": values})
}

/// The independent reader: pyarrow checks every file, that no event id appears twice, and the expectations.
pub(super) fn check(dir: &Path, expect: &Value) -> Result<Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_lake.py");
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), expect.to_string()).unwrap();
    let out = Command::new("python3").arg(script).arg(dir).arg(tmp.path()).output().expect("python3 + pyarrow");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn spool_cfg(dir: &Path, max: u64, seg: u64, policy: SpoolPolicy) -> SpoolConfig {
    SpoolConfig { dir: dir.to_path_buf(), max_bytes: max, segment_bytes: seg, policy, ..SpoolConfig::default() }
}

fn record(i: u32, len: usize) -> Vec<u8> {
    let env = Envelope {
        table: Table::FileActivity,
        key: format!("ns/w{i:04}"),
        rows: i,
        schema_version: "v".into(),
        payload: vec![(i % 251) as u8; len],
    };
    env.to_spool()
}

#[test]
fn envelope_round_trips_through_a_spool_record() {
    let env = Envelope {
        table: Table::DnsActivity,
        key: "käse/\nweird\0key".into(),
        rows: 7,
        schema_version: wire::schema_version(Table::DnsActivity).into(),
        payload: vec![0, 1, 2, 255],
    };
    assert_eq!(Envelope::from_spool(&env.to_spool()), Some(env.clone()));
    let rec = env.to_spool();
    for cut in 0..rec.len() - env.payload.len() {
        assert_eq!(Envelope::from_spool(&rec[..cut]), None, "cut at {cut}");
    }
}

#[test]
fn workload_key_prefers_workload_then_container_then_node() {
    assert_eq!(WorkloadKey::of(&identity(0), "n").to_string(), "shop/api");
    assert_eq!(WorkloadKey::of(&identity(3), "n").to_string(), "ddd");
    assert_eq!(WorkloadKey::of(&identity(4), "n").to_string(), "n");
    for i in 0..5 {
        let k = WorkloadKey::of(&identity(i), "n");
        assert!(k.matches(&k.to_string()));
        assert!(!k.matches("shop/ap"));
        assert!(!k.matches("shop/apix"));
    }
    assert_ne!(WorkloadKey::Workload("a", "b/c").hash(), WorkloadKey::Workload("a", "bc").hash());
}

#[test]
fn arrow_ipc_payload_decodes_to_the_lake_schema() {
    let ctx = ctx();
    let mut b = BatchBuilder::new(Table::ProcessActivity).unwrap();
    for i in (0..50).map(|i| i * 5) {
        b.append(&ctx, &event(i).as_event(), &identity(i));
    }
    let batch = b.finish().unwrap();
    let bytes = wire::encode(&batch).unwrap();
    let back = wire::decode(&bytes).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0], batch);
    assert_eq!(back[0].schema().fields(), Table::ProcessActivity.schema().fields());
    assert!(wire::decode(&bytes[..bytes.len() / 2]).is_err(), "a cut stream is an error, not fewer rows");
    // The lake service's file size bound counts what the rows hold, not the message buffer once per column.
    let counted = crate::parquet::batch::data_bytes(&back[0]);
    assert!(counted <= 2 * bytes.len(), "{counted} bytes counted for a {} byte message", bytes.len());
    assert!(back[0].get_array_memory_size() > 10 * bytes.len(), "shared buffers counted per column");
}

#[test]
fn spool_replays_in_order_and_deletes_acked_segments() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ProducerStats::default());
    let mut s = Spool::open(&spool_cfg(dir.path(), 1 << 20, 4096, SpoolPolicy::Block), stats.clone()).unwrap();
    for i in 0..20 {
        assert_eq!(s.append(&record(i, 1000), 1).unwrap(), Appended::Stored);
    }
    let segs = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(segs >= 5, "{segs} segments for 20 KB at 4 KB each");
    let mut got = Vec::new();
    while let Some((t, data)) = s.next_record().unwrap() {
        got.push(Envelope::from_spool(&data).unwrap().rows);
        s.ack(t).unwrap();
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert!(s.is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "acked segments are deleted");
    assert_eq!(get(&stats.spool_bytes), 0);
}

#[test]
fn spool_rewind_sends_everything_unacked_again() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ProducerStats::default());
    let mut s = Spool::open(&spool_cfg(dir.path(), 1 << 20, 1 << 20, SpoolPolicy::Block), stats).unwrap();
    for i in 0..5 {
        s.append(&record(i, 10), 1).unwrap();
    }
    let (t0, _) = s.next_record().unwrap().unwrap();
    let (t1, _) = s.next_record().unwrap().unwrap();
    s.rewind(t1);
    // A stale ticket of the old generation changes nothing.
    s.ack(t0).unwrap();
    s.rewind(t0);
    let mut got = Vec::new();
    while let Some((_, d)) = s.next_record().unwrap() {
        got.push(Envelope::from_spool(&d).unwrap().rows);
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}

#[test]
fn spool_cuts_a_torn_tail_and_replays_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ProducerStats::default());
    let cfg = spool_cfg(dir.path(), 1 << 20, 1 << 20, SpoolPolicy::Block);
    {
        let mut s = Spool::open(&cfg, stats.clone()).unwrap();
        for i in 0..10 {
            s.append(&record(i, 300), 1).unwrap();
        }
        s.sync().unwrap();
    }
    let seg = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    let full = std::fs::metadata(&seg).unwrap().len();
    // A crash mid-write: half of a record's header and data appended.
    let mut torn = std::fs::read(&seg).unwrap();
    torn.extend_from_slice(&[200, 1, 0, 0, 9, 9, 9, 9, 1, 2, 3]);
    std::fs::write(&seg, &torn).unwrap();
    let s = Spool::open(&cfg, stats.clone()).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), full, "cut back to the last good record");
    assert_eq!(get(&stats.spool_truncated_bytes), 11);
    assert_eq!(s.pending(), 10);
    drop(s);
    // A flipped bit in record 7 (a bad sector): records 0..7 stay, the rest is cut and counted.
    let mut data = std::fs::read(&seg).unwrap();
    let rec_len = data.len() / 10;
    data[7 * rec_len + 20] ^= 0x40;
    std::fs::write(&seg, &data).unwrap();
    let mut s = Spool::open(&cfg, stats.clone()).unwrap();
    assert_eq!(get(&stats.spool_truncated_bytes), 11 + 3 * rec_len as u64);
    let mut got = Vec::new();
    while let Some((t, d)) = s.next_record().unwrap() {
        got.push(Envelope::from_spool(&d).unwrap().rows);
        s.ack(t).unwrap();
    }
    assert_eq!(got, (0..7).collect::<Vec<_>>());
}

#[test]
fn full_spool_drop_oldest_counts_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ProducerStats::default());
    // 10 segments of 4 records.
    let r = record(0, 1024).len() as u64 + 8;
    let cfg = spool_cfg(dir.path(), 10 * 4 * r, 4 * r, SpoolPolicy::DropOldest);
    let mut s = Spool::open(&cfg, stats.clone()).unwrap();
    for i in 0..100 {
        assert_eq!(s.append(&record(i, 1024), 3).unwrap(), Appended::Stored);
        assert!(s.bytes() <= cfg.max_bytes);
    }
    let dropped = get(&stats.spool_dropped);
    assert_eq!(dropped + s.pending(), 100, "every message is either kept or counted as dropped");
    assert_eq!(dropped, 60);
    assert_eq!(get(&stats.spool_dropped_rows), 3 * 60);
    let first = Envelope::from_spool(&s.next_record().unwrap().unwrap().1).unwrap().rows;
    assert_eq!(first, 60, "the oldest went first");
    // Reopened from disk: the same 40 remain.
    drop(s);
    let s = Spool::open(&cfg, stats).unwrap();
    assert_eq!(s.pending(), 40);
}

#[test]
fn full_spool_block_refuses_without_losing() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ProducerStats::default());
    let r = record(0, 1024).len() as u64 + 8;
    let cfg = spool_cfg(dir.path(), 4 * r, 2 * r, SpoolPolicy::Block);
    let mut s = Spool::open(&cfg, stats.clone()).unwrap();
    for i in 0..4 {
        assert_eq!(s.append(&record(i, 1024), 1).unwrap(), Appended::Stored);
    }
    assert_eq!(s.append(&record(4, 1024), 1).unwrap(), Appended::Full);
    assert_eq!(get(&stats.spool_dropped), 0);
    // Draining the first segment makes room.
    for _ in 0..2 {
        let (t, _) = s.next_record().unwrap().unwrap();
        s.ack(t).unwrap();
    }
    assert_eq!(s.append(&record(4, 1024), 1).unwrap(), Appended::Stored);
    assert!(matches!(s.append(&vec![0; 5000], 1), Err(SpoolError::TooLarge(_))));
}
