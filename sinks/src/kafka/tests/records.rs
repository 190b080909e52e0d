//! The records format: the lake's rows from a records message must be exactly the rows `tracelake run`
//! builds from the same events, for every kind and hostile strings; damaged messages are errors.

use tracelake_model::json::{Ancestor, Identity, JsonContext};
use tracelake_model::{Aggregate, Class, Endpoint, Fd, FdType, Kind, Launch, OwnedBody, OwnedEvent, Session, Subject};

use super::ctx;
use crate::kafka::records::{self, RecordWriter, Records};
use crate::parquet::{BatchBuilder, Table};

/// Bytes no text column can hold as they are: invalid UTF-8, a newline, a NUL, a quote.
const HOSTILE: &[u8] = b"/tmp/\xff\xfe evil\nline\0\"q\"";

/// By `i`: unknown (an older agent), a reverse shell (IPv6 TCP socket on stdin and stdout, a terminal on
/// stderr), a script (pipes, no terminal, UDP peer on stderr).
fn launch_of(i: u64) -> Option<Launch> {
    let mut sock = Fd { fd_type: FdType::Socket, family: 10, protocol: 6, ..Fd::default() };
    sock.remote = Endpoint { addr: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i as u8], port: 4444 };
    let tty = Fd { fd_type: FdType::Tty, rdev: 136 << 20 | 7, ..Fd::default() };
    let pipe = Fd { fd_type: FdType::Pipe, ..Fd::default() };
    let mut udp = Fd { fd_type: FdType::Socket, family: 2, protocol: 17, ..Fd::default() };
    udp.remote = Endpoint { addr: [10, 0, 0, 53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], port: 53 };
    match i % 3 {
        0 => None,
        1 => Some(Launch { session: Session { tty: 136 << 20 | 7, sid: 100, leader: true }, stdio: [sock, sock, tty] }),
        _ => Some(Launch { session: Session { tty: 0, sid: 1, leader: false }, stdio: [pipe, Fd::default(), udp] }),
    }
}

fn body_of(kind: Kind, i: u64) -> (OwnedBody, [Vec<u8>; 3]) {
    let s = |v: &[u8]| v.to_vec();
    let ep = |last: u8, port: u16| {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 42, 1, last]);
        Endpoint { addr, port }
    };
    match (kind, kind.class()) {
        (Kind::Exec, _) => (
            OwnedBody::Exec { exe_ino: 5 + i, exe_dev: 8, exe_nlink: 0, launch: launch_of(i) },
            [s(HOSTILE), s(b"sh\0-c\0echo \xff\nx\0"), s(b"/work dir")],
        ),
        (Kind::ProcessSnapshot, _) => {
            (OwnedBody::Snapshot { launch: launch_of(i + 1) }, [s(b"/bin/sleep"), s(b"sleep\0inf\0"), s(HOSTILE)])
        }
        (Kind::Fork, _) => (OwnedBody::Fork { child_pid: 4242, child_start_ns: 99 + i }, Default::default()),
        (Kind::Exit, _) => (OwnedBody::Exit { exit_code: 137, signal: 9, core_dump: true }, Default::default()),
        (_, Class::Process) => (OwnedBody::Threads, Default::default()),
        (_, Class::File) => (
            OwnedBody::File {
                ret: -13,
                ino: 77 + i,
                dev: 2049,
                open_flags: 0o101,
                mode: 0o4755,
                owner_uid: u32::MAX,
                owner_gid: 5,
            },
            [s(HOSTILE), s(if kind == Kind::FileRename { b"/etc/shadow" } else { b"" }), Vec::new()],
        ),
        (_, Class::Network) => (
            OwnedBody::Net {
                ret: 0,
                family: if i.is_multiple_of(7) { 1 } else { 2 },
                protocol: if kind == Kind::NetUdpSend { 17 } else { 6 },
                local: ep(7, 40000),
                remote: ep((i % 250) as u8, if i.is_multiple_of(2) { 53 } else { 443 }),
                bytes_sent: i,
                bytes_received: 2 * i,
            },
            [if i.is_multiple_of(7) { s(HOSTILE) } else { Vec::new() }, Vec::new(), Vec::new()],
        ),
        (_, Class::Privilege) => (
            OwnedBody::Syscall { nr: 165, ret: -1, args: [1, 2, 3, u64::MAX, 5, i] },
            [s(b"/dev/sda1"), s(HOSTILE), s(b"ext4")],
        ),
    }
}

fn events() -> Vec<OwnedEvent> {
    (0..Kind::ALL.len() as u64 * 3)
        .map(|i| {
            let kind = Kind::ALL[(i as usize) % Kind::ALL.len()];
            let (body, strings) = body_of(kind, i);
            OwnedEvent {
                kind,
                subject: Subject {
                    ktime_ns: 5_000_000 + i * 333,
                    cgroup_id: 9000 + i % 3,
                    proc_start_ns: 10 + i % 4,
                    pid: 100 + (i % 4) as u32,
                    tgid: 100 + (i % 4) as u32,
                    ppid: 1,
                    uid: 0,
                    gid: 1,
                    euid: 2,
                    egid: 3,
                    pidns: 4026531836,
                    mntns: 4026531841,
                    comm: *b"sh\xff\n\0\0\0\0\0\0\0\0\0\0\0\0",
                },
                flags: (i % 128) as u32,
                count: if i.is_multiple_of(5) { 40 } else { 1 },
                aggregate: (i.is_multiple_of(5)).then_some(Aggregate { first_ns: 1000, last_ns: 2000 + i }),
                body,
                strings,
            }
        })
        .collect()
}

/// Identities by `i`: a full pod with lineage, one with a peer and a partial answer, a bare container, the host.
fn identity(i: u64) -> Identity<'static> {
    let mut id = match i % 4 {
        0 => Identity {
            cgroup: Some("/kubepods/pod1/abc"),
            container_id: Some("abc"),
            container_runtime: Some("containerd"),
            pod_uid: Some("u-1"),
            pod: Some("api-7d9f-x"),
            namespace: Some("shop"),
            container_name: Some("api"),
            image: Some("reg/api:1"),
            image_digest: Some("sha256:00"),
            pod_ip: Some("10.42.1.7"),
            workload_kind: Some("Deployment"),
            workload: Some("api"),
            workload_source: Some("api"),
            process_exe: Some(b"/usr/bin/python3\xff"),
            ..Identity::default()
        },
        1 => Identity {
            container_id: Some("abc"),
            namespace: Some("shop"),
            peer_pod: Some("db-0"),
            peer_namespace: Some("shop"),
            peer_workload_kind: Some("StatefulSet"),
            peer_workload: Some("db"),
            peer_container_id: Some("def"),
            peer_service: Some("db"),
            partial: true,
            ..Identity::default()
        },
        2 => Identity { container_id: Some("ddd"), containerd_namespace: Some("default"), ..Identity::default() },
        _ => Identity::default(),
    };
    if i.is_multiple_of(4) {
        id.ancestors[0] = Some(Ancestor { pid: 1, exe: b"/bin/sh", args: b"sh\0-c\0run \xfe\n\0" });
        id.ancestors[1] = Some(Ancestor { pid: 0, exe: HOSTILE, args: b"" });
    }
    id
}

/// Events of `table`, with their identities, through a records message.
fn through_records(table: Table, evs: &[OwnedEvent], ctx: &JsonContext<'_>) -> (usize, Vec<u8>) {
    let mut w = RecordWriter::default();
    for (i, e) in evs.iter().enumerate() {
        if Table::of(&e.as_event()) == table {
            w.append(&e.as_event(), &identity(i as u64));
        }
    }
    (w.rows(), w.finish(ctx))
}

#[test]
fn records_give_the_lake_exactly_the_rows_run_builds() {
    let evs = events();
    let ctx = ctx();
    for table in Table::EVENT_TABLES {
        let mut direct = BatchBuilder::new(table).unwrap();
        for (i, e) in evs.iter().enumerate() {
            if Table::of(&e.as_event()) == table {
                direct.append(&ctx, &e.as_event(), &identity(i as u64));
            }
        }
        let want = direct.finish().unwrap();
        let (rows, msg) = through_records(table, &evs, &ctx);
        assert!(rows > 0 && rows == want.num_rows(), "{}: {rows} rows", table.name());
        let got = records::to_batch(&mut None, table, ctx.node, &msg).unwrap();
        assert_eq!(got, want, "{}", table.name());
        // With keys, the keyed columns are placeholders until gathered from them.
        let (keyed, keys) = records::to_keyed_batch(&mut None, table, ctx.node, &msg).unwrap();
        assert_eq!(keys.unwrap().0.materialize(&keyed, 0), want, "{}: with keys", table.name());
        // A second message from the same writer starts clean: no identity of the first leaks in.
        let (_, again) = through_records(table, &evs, &ctx);
        assert_eq!(again, msg);
    }
}

#[test]
fn records_1_messages_of_older_agents_are_still_read() {
    let ctx = ctx();
    let exec = |launch| OwnedEvent {
        kind: Kind::Exec,
        subject: Subject { ktime_ns: 7, pid: 3, tgid: 3, ..Subject::default() },
        flags: 0,
        count: 1,
        aggregate: None,
        body: OwnedBody::Exec { exe_ino: 1, exe_dev: 2, exe_nlink: 1, launch },
        strings: [b"/bin/sh".to_vec(), b"sh\0".to_vec(), b"/".to_vec()],
    };
    let mut w = RecordWriter::default();
    w.append(&exec(None).as_event(), &identity(0));
    let v2 = w.finish(&ctx);
    // records-1 is the same message without the launch part (here, its last byte: 0, unknown).
    let mut v1 = v2.clone();
    v1[..4].copy_from_slice(b"TLR1");
    assert_eq!(v1.pop(), Some(0));
    let table = Table::ProcessActivity;
    let want = records::to_batch(&mut None, table, ctx.node, &v2).unwrap();
    assert_eq!(records::to_batch(&mut None, table, ctx.node, &v1).unwrap(), want);
    assert!(records::READS.contains(&"records-1") && records::VERSION == "records-2");
    // A records-1 message is not read as records-2 (its launch would be a byte it does not have).
    v1[..4].copy_from_slice(b"TLR2");
    assert!(records::to_batch(&mut None, table, ctx.node, &v1).is_err());
    // And an unknown fd type is refused, not guessed.
    let mut w = RecordWriter::default();
    w.append(&exec(launch_of(1)).as_event(), &identity(0));
    let mut bad = w.finish(&ctx);
    let stderr_type = bad.len() - (1 + 2 + 2 + 16 + 2 + 4);
    bad[stderr_type] = 9;
    assert!(records::to_batch(&mut None, table, ctx.node, &bad).unwrap_err().contains("fd type 9"));
}

#[test]
fn identities_are_written_once_per_message() {
    let evs = events();
    let (rows, msg) = through_records(Table::KernelActivity, &evs, &ctx());
    let parsed = Records::parse(&msg).unwrap();
    assert_eq!(parsed.rows(), rows);
    assert!(rows > 8);
    // Four container identities; one lineage with ancestors and one without.
    assert_eq!(parsed.identities(), (4, 2));
}

#[test]
fn a_cut_or_damaged_message_is_an_error_not_fewer_rows() {
    let table = Table::ProcessActivity;
    let (_, msg) = through_records(table, &events(), &ctx());
    // One set of builders through all of it, as the lake service keeps: a damaged message leaves no rows behind.
    let mut rows = None;
    for cut in 0..msg.len() {
        assert!(records::to_batch(&mut rows, table, "n", &msg[..cut]).is_err(), "cut at {cut} of {}", msg.len());
    }
    let mut bad = msg.clone();
    bad[0] = b'X';
    assert!(records::to_batch(&mut rows, table, "n", &bad).unwrap_err().contains("magic"));
    let mut trailing = msg.clone();
    trailing.push(0);
    assert!(records::to_batch(&mut rows, table, "n", &trailing).unwrap_err().contains("after the last event"));
    // Events of another table in the message: refused, not written into the wrong table.
    assert!(
        records::to_batch(&mut rows, Table::FileActivity, "n", &msg).unwrap_err().contains("in a message of table")
    );
    let whole = records::to_batch(&mut rows, table, "n", &msg).unwrap();
    assert_eq!(
        whole,
        records::to_batch(&mut None, table, "n", &msg).unwrap(),
        "nothing left over from the damaged ones"
    );
}

#[test]
fn an_oversized_message_splits_into_halves_with_the_same_rows() {
    let table = Table::NetworkActivity;
    let evs = events();
    let ctx = ctx();
    let (rows, msg) = through_records(table, &evs, &ctx);
    let [(a, na), (b, nb)] = records::split(&msg).unwrap().unwrap();
    assert_eq!(na + nb, rows);
    let mut rows = None;
    let whole = records::to_batch(&mut rows, table, "n", &msg).unwrap();
    let (a, b) =
        (records::to_batch(&mut rows, table, "n", &a).unwrap(), records::to_batch(&mut rows, table, "n", &b).unwrap());
    assert_eq!(arrow::compute::concat_batches(&whole.schema(), [&a, &b]).unwrap(), whole);
    let mut w = RecordWriter::default();
    let first = evs.iter().find(|e| Table::of(&e.as_event()) == table).unwrap();
    w.append(&first.as_event(), &identity(0));
    assert!(records::split(&w.finish(&ctx)).unwrap().is_none(), "one event cannot be split");
}

/// The lake service's path for records messages: each message's rows with their keys, duplicates filtered out
/// of rows and keys alike, several messages' keys merged, the file encoded from them. Read back by parquet-rs,
/// it holds exactly the rows kept, with their values.
#[test]
fn filtered_and_merged_keys_write_the_rows_kept() {
    use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use arrow::array::{BooleanArray, RecordBatch};
    use arrow::compute::{SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch};
    use std::sync::Arc;

    use crate::parquet::dict_chunk::Dictionaries;
    use crate::parquet::{LakeConfig, LakeWriter};

    // The two messages hold the same events (the same ids) from two nodes.
    let by_id = |b: &RecordBatch| {
        let columns = ["event_id", "node", "time"]
            .map(|c| SortColumn { values: Arc::clone(b.column_by_name(c).unwrap()), options: None });
        take_record_batch(b, &lexsort_to_indices(&columns, None).unwrap()).unwrap()
    };
    let evs = events();
    let ctx = ctx();
    for table in Table::EVENT_TABLES {
        let (_, msg) = through_records(table, &evs, &ctx);
        // Two messages of other nodes (other event ids, other node names): the second's keys follow the first's.
        let mut rows = None;
        let (a, ka) = records::to_keyed_batch(&mut rows, table, "node-a", &msg).unwrap();
        let (b, kb) = records::to_keyed_batch(&mut rows, table, "node-b", &msg).unwrap();
        let keep: BooleanArray = (0..a.num_rows()).map(|r| Some(r % 3 != 1)).collect();
        let a = filter_record_batch(&a, &keep).unwrap();
        let ka = ka.unwrap().0.filter(&keep).unwrap();
        let kb = kb.unwrap().0;
        let keys = Dictionaries::concat(&[&ka, &kb]).unwrap();
        let batch = concat_batches(&table.schema(), [&a, &b]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = LakeConfig { dir: dir.path().to_path_buf(), ..LakeConfig::default() };
        let files = LakeWriter::new(&cfg).unwrap().write_with(table, &batch, Some(&keys), &[]).unwrap();
        let mut read = Vec::new();
        for f in &files {
            let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f.path).unwrap()).unwrap();
            read.extend(r.build().unwrap().map(Result::unwrap));
        }
        let read = concat_batches(&table.schema(), &read).unwrap();
        assert_eq!(by_id(&read), by_id(&keys.materialize(&batch, 0)), "{}", table.name());
        // The file came from the keys: the batch itself holds only placeholders for the keyed columns.
        assert_ne!(batch, keys.materialize(&batch, 0), "{}: the batch holds its rows already", table.name());
    }
}
