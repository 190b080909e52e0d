//! Against a real Kafka-protocol broker (tansu, in memory, on loopback),
//! with the lake read back by pyarrow.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracelake_testkit::broker::Broker;

use super::*;
use crate::parquet::LakeConfig;

fn kafka_cfg(broker: &Broker, spool: &Path) -> KafkaConfig {
    KafkaConfig {
        brokers: broker.addr(),
        partitions: 3,
        linger: Duration::from_millis(200),
        message_timeout: Duration::from_secs(10),
        spool: SpoolConfig { dir: spool.to_path_buf(), ..SpoolConfig::default() },
        ..KafkaConfig::default()
    }
}

fn lake_cfgs(lake: &Path, rejected: &Path) -> (LakeServiceConfig, LakeConfig) {
    let svc = LakeServiceConfig {
        file_age: Duration::from_secs(1),
        rejected_dir: rejected.to_path_buf(),
        ..LakeServiceConfig::default()
    };
    let lake = LakeConfig {
        dir: lake.to_path_buf(),
        retention: Duration::ZERO,
        compact_min_files: usize::MAX,
        ..LakeConfig::default()
    };
    (svc, lake)
}

/// `tracelake lake`'s loop on a thread.
struct LakeThread {
    stop: StopFlag,
    stats: Arc<ConsumerStats>,
    handle: Option<JoinHandle<()>>,
}

impl LakeThread {
    fn start(k: &KafkaConfig, s: &LakeServiceConfig, l: &LakeConfig) -> LakeThread {
        LakeThread::run(LakeConsumer::open(k, s, l).unwrap())
    }

    /// Runs a consumer opened earlier.
    fn run(mut c: LakeConsumer) -> LakeThread {
        let stop = StopFlag::default();
        let stats = c.stats();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            c.run(&flag);
            c.close(Duration::from_secs(10));
        });
        LakeThread { stop, stats, handle: Some(handle) }
    }

    /// Waits until `n` rows are in the lake; false on timeout.
    fn wait_rows(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if get(&self.stats.rows_written) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn stop(mut self) -> Arc<ConsumerStats> {
        self.stop.stop();
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.stats.clone()
    }
}

fn counters(s: &[(&'static str, u64)]) -> String {
    s.iter().filter(|(_, v)| *v > 0).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn n_events_in_exactly_n_distinct_events_in_the_lake() {
    let broker = Broker::start().unwrap();
    let (spool, lake, rejected) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let k = kafka_cfg(&broker, spool.path());
    let (s, l) = lake_cfgs(lake.path(), rejected.path());
    let consumer = LakeThread::start(&k, &s, &l);
    let mut sink = KafkaSink::open(&k, ctx()).unwrap();
    let n = 25_000u64;
    let events: Vec<OwnedEvent> = (0..n).map(event).collect();
    for (i, ev) in events.iter().enumerate() {
        sink.push_with(&ev.as_event(), &identity(i as u64 / 5));
    }
    assert!(sink.flush(Duration::from_secs(60)), "the broker took everything");
    let ps = sink.close(Duration::from_secs(5)).unwrap();
    assert_eq!(get(&ps.delivered_rows), n, "{}", counters(&ps.snapshot()));
    assert_eq!((get(&ps.failed), get(&ps.spooled), get(&ps.rejected_rows)), (0, 0, 0));
    assert!(get(&ps.delivered) >= 25, "one message per table and workload batch: {}", counters(&ps.snapshot()));
    let ok = consumer.wait_rows(n, Duration::from_secs(60));
    let cs = consumer.stop();
    assert!(ok, "lake: {}", counters(&cs.snapshot()));
    assert_eq!(get(&cs.rows_written), n, "{}", counters(&cs.snapshot()));
    assert_eq!(get(&cs.rejected), 0);
    assert!(get(&cs.commits) > 0);
    let summary = check(lake.path(), &expect_of(&events, vec![])).unwrap();
    assert_eq!(summary["event_ids"], json!(n));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn hostile_values_survive_the_round_trip() {
    let broker = Broker::start().unwrap();
    let (spool, lake, rejected) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let k = kafka_cfg(&broker, spool.path());
    let (s, l) = lake_cfgs(lake.path(), rejected.path());
    let consumer = LakeThread::start(&k, &s, &l);
    let mut sink = KafkaSink::open(&k, ctx()).unwrap();
    let mut args = b"sh\0-c\0echo a\nb\0\xff\xfeok\0".to_vec();
    args.extend(std::iter::repeat_n(b'A', 1 << 20));
    args.push(0);
    let mut exec = event(0);
    exec.strings = [b"/tmp/\xffbin\nx\x01".to_vec(), args.clone(), b"/w\xe9rk".to_vec()];
    let mut open = event(1);
    open.strings[0] = b"/tmp/new\nline\xc3".to_vec();
    let id = Identity {
        namespace: Some("ns\nwith newline"),
        workload: Some("w\u{0}nul"),
        pod: Some("p\u{fffd}"),
        ..Identity::default()
    };
    let (e, o) = (exec.as_event(), open.as_event());
    let v = |table: Table, ev: &tracelake_model::Event<'_>, column: &str, x: Value| json!({"table": table.name(), "event_id": format!("{:016x}", event_id(SALT, ev)), "column": column, "hex": x});
    let values = vec![
        v(Table::ProcessActivity, &e, "exe_raw", json!(hex(b"/tmp/\xffbin\nx\x01"))),
        v(Table::ProcessActivity, &e, "args_raw", json!(hex(&args))),
        v(Table::ProcessActivity, &e, "cwd_raw", json!(hex(b"/w\xe9rk"))),
        v(Table::ProcessActivity, &e, "namespace", json!(hex(b"ns\nwith newline"))),
        v(Table::ProcessActivity, &e, "workload", json!(hex(b"w\0nul"))),
        v(Table::FileActivity, &o, "path_raw", json!(hex(b"/tmp/new\nline\xc3"))),
    ];
    for ev in [&exec, &open] {
        sink.push_with(&ev.as_event(), &id);
    }
    assert!(sink.flush(Duration::from_secs(60)));
    let ps = sink.close(Duration::from_secs(5)).unwrap();
    assert_eq!((get(&ps.delivered_rows), get(&ps.rejected_rows)), (2, 0), "{}", counters(&ps.snapshot()));
    let ok = consumer.wait_rows(2, Duration::from_secs(60));
    let cs = consumer.stop();
    assert!(ok, "lake: {}", counters(&cs.snapshot()));
    check(lake.path(), &expect_of(&[exec, open], values)).unwrap();
}

#[test]
fn broker_killed_for_30_s_then_back_empty_still_exactly_n() {
    let mut broker = Broker::start().unwrap();
    let (spool, lake, rejected) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let k = kafka_cfg(&broker, spool.path());
    let (s, l) = lake_cfgs(lake.path(), rejected.path());
    let consumer = LakeThread::start(&k, &s, &l);
    let mut sink = KafkaSink::open(&k, ctx()).unwrap();
    let n = 30_000u64;
    let events: Vec<OwnedEvent> = (0..n).map(event).collect();
    // Three phases of 10,000 events, fed over time: broker up, broker gone for 30 s, broker back (empty).
    let feed = |sink: &mut KafkaSink, range: std::ops::Range<u64>, over: Duration| {
        let step = over / ((range.end - range.start) / 100) as u32;
        for i in range {
            sink.push_with(&events[i as usize].as_event(), &identity(i / 5));
            if i % 100 == 99 {
                std::thread::sleep(step);
                sink.tick();
            }
        }
    };
    feed(&mut sink, 0..10_000, Duration::from_secs(5));
    broker.kill();
    feed(&mut sink, 10_000..20_000, Duration::from_secs(30));
    let ps = sink.stats();
    assert!(get(&ps.outages) >= 1, "the outage was seen: {}", counters(&ps.snapshot()));
    assert!(get(&ps.spooled) > 0, "messages went to the spool: {}", counters(&ps.snapshot()));
    broker.restart().unwrap();
    feed(&mut sink, 20_000..n, Duration::from_secs(5));
    assert!(sink.flush(Duration::from_secs(120)), "spool drained: {}", counters(&ps.snapshot()));
    let ps = sink.close(Duration::from_secs(5)).unwrap();
    assert_eq!(get(&ps.spool_messages), 0);
    assert_eq!((get(&ps.spool_dropped), get(&ps.rejected_rows)), (0, 0));
    let ok = consumer.wait_rows(n, Duration::from_secs(120));
    // Late duplicates, if any, would show up as extra rows after this.
    std::thread::sleep(Duration::from_secs(3));
    let cs = consumer.stop();
    assert!(ok, "lake: {} / agent: {}", counters(&cs.snapshot()), counters(&ps.snapshot()));
    assert_eq!(get(&cs.rows_written), n, "{}", counters(&cs.snapshot()));
    let summary = check(lake.path(), &expect_of(&events, vec![])).unwrap();
    assert_eq!(summary["event_ids"], json!(n));
    eprintln!("agent: {}\nlake: {}", counters(&ps.snapshot()), counters(&cs.snapshot()));
}

/// A process that wrote files and died before committing their offsets: whoever reads those messages next
/// must not write them again. Modelled with two groups on one lake: B opens (and loads the lake's ids) while
/// the lake is empty, A writes everything, then B is assigned the partitions and reads every message again from
/// the start, as a group member does after a crash between rename and commit.
#[test]
fn partitions_taken_over_after_a_crash_before_commit_are_not_written_twice() {
    let broker = Broker::start().unwrap();
    let (spool, lake, rejected) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let k = kafka_cfg(&broker, spool.path());
    let (s, l) = lake_cfgs(lake.path(), rejected.path());
    let s_b = LakeServiceConfig { group_id: "lake-b".into(), ..s.clone() };
    let b = LakeConsumer::open(&k, &s_b, &l).unwrap();
    let n = 3_000u64;
    let events: Vec<OwnedEvent> = (0..n).map(event).collect();
    let mut sink = KafkaSink::open(&k, ctx()).unwrap();
    for (i, ev) in events.iter().enumerate() {
        sink.push_with(&ev.as_event(), &identity(i as u64 / 5));
    }
    assert!(sink.flush(Duration::from_secs(60)));
    let ps = sink.close(Duration::from_secs(5)).unwrap();
    assert_eq!(get(&ps.delivered_rows), n, "{}", counters(&ps.snapshot()));
    let a = LakeThread::start(&k, &s, &l);
    let ok = a.wait_rows(n, Duration::from_secs(60));
    let cs_a = a.stop();
    assert!(ok, "lake a: {}", counters(&cs_a.snapshot()));

    let b = LakeThread::run(b);
    let t = Instant::now();
    while get(&b.stats.duplicates) + get(&b.stats.rows_written) < n {
        assert!(t.elapsed() < Duration::from_secs(60), "lake b read everything: {}", counters(&b.stats.snapshot()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let cs_b = b.stop();
    assert_eq!(get(&cs_b.rows_written), 0, "lake b: {}", counters(&cs_b.snapshot()));
    assert_eq!(get(&cs_b.duplicates), n, "lake b: {}", counters(&cs_b.snapshot()));
    let summary = check(lake.path(), &expect_of(&events, vec![])).unwrap();
    assert_eq!(summary["event_ids"], json!(n));
}

/// Sends `events[range]` in `rounds` flushes, so each (table, workload) batch is a message per round.
fn send_in_rounds(k: &KafkaConfig, events: &[OwnedEvent], range: std::ops::Range<usize>, rounds: usize) {
    let mut sink = KafkaSink::open(k, ctx()).unwrap();
    let per = range.len().div_ceil(rounds);
    for start in range.clone().step_by(per) {
        let end = (start + per).min(range.end);
        for (i, ev) in events.iter().enumerate().take(end).skip(start) {
            sink.push_with(&ev.as_event(), &identity(i as u64 / 5));
        }
        assert!(sink.flush(Duration::from_secs(60)), "the broker took everything");
    }
    let ps = sink.close(Duration::from_secs(5)).unwrap();
    assert_eq!(get(&ps.delivered_rows), range.len() as u64, "{}", counters(&ps.snapshot()));
}

/// A client of the lake's group that is not a member: reads and writes its commits.
fn group_client(k: &KafkaConfig, s: &LakeServiceConfig) -> rdkafka::consumer::BaseConsumer {
    k.client_properties("tracelake-test").unwrap().set("group.id", &s.group_id).create().unwrap()
}

/// The group's committed offsets on every table topic.
fn commits(k: &KafkaConfig, s: &LakeServiceConfig) -> rdkafka::TopicPartitionList {
    use rdkafka::consumer::Consumer;
    let mut all = rdkafka::TopicPartitionList::new();
    for t in crate::kafka::TABLES {
        for p in 0..k.partitions {
            all.add_partition(&k.topic(t), p);
        }
    }
    let committed = group_client(k, s).committed_offsets(all, Duration::from_secs(10)).unwrap();
    let mut out = rdkafka::TopicPartitionList::new();
    for e in committed.elements() {
        if let rdkafka::Offset::Offset(o) = e.offset() {
            out.add_partition_offset(e.topic(), e.partition(), rdkafka::Offset::Offset(o)).unwrap();
        }
    }
    out
}

/// A commit can reach a broker that restarted empty: librdkafka holds a commit until the coordinator is back,
/// and another `lake` process may commit late. In the new log, that offset is a position it never had; a lake
/// that resumed there would skip every message before it. The journal's fingerprint of the message before the
/// offset tells the logs apart. The same test checks that a lake restarted on an unchanged log resumes where
/// the group left off without reading anything twice.
#[test]
fn a_commit_from_a_log_that_was_replaced_does_not_skip_the_new_logs_messages() {
    use rdkafka::consumer::{CommitMode, Consumer};
    let mut broker = Broker::start().unwrap();
    let (spool, lake, rejected) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let k = kafka_cfg(&broker, spool.path());
    let (s, l) = lake_cfgs(lake.path(), rejected.path());
    let events: Vec<OwnedEvent> = (0..9_000).map(event).collect();
    let (first, second, third) = (0..2_000, 2_000..4_000, 4_000..9_000);

    send_in_rounds(&k, &events, first.clone(), 8);
    let a = LakeThread::start(&k, &s, &l);
    let ok = a.wait_rows(first.len() as u64, Duration::from_secs(60));
    let cs = a.stop();
    assert!(ok, "lake a: {}", counters(&cs.snapshot()));
    let committed_by_a = commits(&k, &s).count() as u64;
    assert!(committed_by_a > 0);

    // Same log: resume after the commit, checked, nothing read twice.
    send_in_rounds(&k, &events, second.clone(), 8);
    let b = LakeThread::start(&k, &s, &l);
    let ok = b.wait_rows(second.len() as u64, Duration::from_secs(60));
    let cs = b.stop();
    assert!(ok, "lake b: {}", counters(&cs.snapshot()));
    assert_eq!(get(&cs.resumes_checked), committed_by_a, "{}", counters(&cs.snapshot()));
    assert_eq!((get(&cs.logs_replaced), get(&cs.resumes_unchecked)), (0, 0), "{}", counters(&cs.snapshot()));
    assert_eq!(get(&cs.duplicates), 0, "{}", counters(&cs.snapshot()));

    // The broker restarts empty, the agents send anew, and the old commits arrive late in the new cluster.
    let stale = commits(&k, &s);
    broker.restart().unwrap();
    send_in_rounds(&k, &events, third.clone(), 30);
    let side = group_client(&k, &s);
    for e in stale.elements() {
        let (_, high) = side.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10)).unwrap();
        let rdkafka::Offset::Offset(at) = e.offset() else { unreachable!() };
        // Else the old offset would be out of range in the new log, and librdkafka would reset it on its own.
        assert!(high > at, "{}/{}: new log ends at {high}, stale commit at {at}", e.topic(), e.partition());
    }
    side.commit(&stale, CommitMode::Sync).unwrap();
    drop(side);
    let c = LakeThread::start(&k, &s, &l);
    let ok = c.wait_rows(third.len() as u64, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let cs = c.stop();
    assert!(ok, "lake c: {}", counters(&cs.snapshot()));
    assert_eq!(get(&cs.rows_written), third.len() as u64, "{}", counters(&cs.snapshot()));
    assert_eq!(get(&cs.logs_replaced), stale.count() as u64, "{}", counters(&cs.snapshot()));
    let summary = check(lake.path(), &expect_of(&events, vec![])).unwrap();
    assert_eq!(summary["event_ids"], json!(events.len()));
}
