//! Kafka transport figures against a local tansu broker (BENCHMARKS.md):
//!
//! `kafka throughput [N] [BATCH_ROWS] [BATCH_KIB] [lz4|zstd]`: N events pushed
//! through `KafkaSink` (20 workloads, all five tables), rate until every
//! message is acknowledged.
//! `kafka latency [LINGER_MS] [FILE_AGE_MS]`: 20,000 events/s for 10 s; p50/p99
//! from an event's time to its row in a consumed Kafka message, and to its row
//! in a visible Parquet file written by `LakeConsumer`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use arrow::array::{Array, TimestampNanosecondArray};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use tracelake_model::json::{Identity, JsonContext};
use tracelake_model::{BootClock, Endpoint, Kind, OwnedBody, OwnedEvent, Subject};
use tracelake_sinks::kafka::wire;
use tracelake_sinks::kafka::{KafkaConfig, KafkaSink, LakeConsumer, LakeServiceConfig, SpoolConfig, StopFlag};
use tracelake_sinks::parquet::{LakeConfig, Table};
use tracelake_testkit::broker::Broker;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn wall_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

fn template(i: usize) -> OwnedEvent {
    let kind = [Kind::Exec, Kind::FileOpen, Kind::NetConnect, Kind::NetUdpSend, Kind::Setuid][i % 5];
    let mut remote = Endpoint { addr: [0; 16], port: if kind == Kind::NetUdpSend { 53 } else { 443 } };
    remote.addr[..4].copy_from_slice(&[10, 0, 0, (i % 200) as u8]);
    let (body, strings): (OwnedBody, [Vec<u8>; 3]) = match kind {
        Kind::Exec => (
            OwnedBody::Exec { exe_ino: 5, exe_dev: 8, exe_nlink: 1, launch: None },
            [b"/usr/bin/curl".to_vec(), format!("curl\0-s\0http://svc-{i}/\0").into_bytes(), b"/app".to_vec()],
        ),
        Kind::FileOpen => (
            OwnedBody::File { ret: 3, ino: i as u64, dev: 8, open_flags: 0, mode: 0o644, owner_uid: 0, owner_gid: 0 },
            [format!("/var/lib/app/data-{}.db", i % 50).into_bytes(), Vec::new(), Vec::new()],
        ),
        Kind::Setuid => (OwnedBody::Syscall { nr: 105, ret: 0, args: [0; 6] }, Default::default()),
        _ => (
            OwnedBody::Net {
                ret: 0,
                family: 2,
                protocol: 6,
                local: Endpoint { addr: [0; 16], port: 40000 },
                remote,
                bytes_sent: 100,
                bytes_received: 2000,
            },
            Default::default(),
        ),
    };
    OwnedEvent {
        kind,
        subject: Subject {
            cgroup_id: 77 + (i % 20) as u64,
            proc_start_ns: 1,
            pid: 1000 + (i % 5000) as u32,
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
        strings,
    }
}

const WORKLOADS: [&str; 20] = [
    "api", "db", "cache", "web", "worker", "cron", "auth", "search", "mail", "queue", "ingest", "billing", "report",
    "proxy", "gateway", "metrics", "logs", "ml", "etl", "admin",
];

fn identities() -> Vec<Identity<'static>> {
    WORKLOADS
        .iter()
        .map(|w| Identity {
            namespace: Some("prod"),
            workload: Some(w),
            workload_kind: Some("Deployment"),
            container_id: Some("c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"),
            pod: Some("pod-x"),
            image: Some("registry.example/app:1.2"),
            ..Identity::default()
        })
        .collect()
}

fn kafka_cfg(broker: &Broker, spool: &Path, prefix: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: broker.addr(),
        topic_prefix: prefix.into(),
        partitions: 6,
        spool: SpoolConfig { dir: spool.to_path_buf(), ..SpoolConfig::default() },
        ..KafkaConfig::default()
    }
}

fn throughput(n: u64, batch_rows: usize, batch_kib: usize, compression: &str) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let spool = tempfile::tempdir()?;
    let base = wall_ns();
    let ctx = JsonContext { node: "bench", clock: BootClock::from_offset(i128::from(base)), node_salt: 1 };
    let mut k = kafka_cfg(&broker, spool.path(), "tp.");
    k.batch_max_rows = batch_rows;
    k.batch_max_bytes = batch_kib * 1024;
    k.compression = compression.into();
    let mut sink = KafkaSink::open(&k, ctx)?;
    let mut pool: Vec<OwnedEvent> = (0..1000).map(template).collect();
    let ids = identities();
    // Connections up and topics created before the clock starts: one event per table, delivered.
    let warm = 5;
    for ev in &pool[..warm] {
        sink.push_with(&ev.as_event(), &ids[0]);
    }
    anyhow::ensure!(sink.flush(Duration::from_secs(60)), "broker did not take the warm-up events");
    let t0 = Instant::now();
    let cpu0 = thread_cpu();
    for i in 0..n {
        let ev = &mut pool[(i % 1000) as usize];
        ev.subject.ktime_ns = i * 1000;
        sink.push_with(&ev.as_event(), &ids[(i / 7 % 20) as usize]);
    }
    let pushed = t0.elapsed();
    let cpu = thread_cpu() - cpu0;
    anyhow::ensure!(sink.flush(Duration::from_secs(300)), "broker did not take everything");
    let acked = t0.elapsed();
    let stats = sink.close(Duration::from_secs(5))?;
    let snap = stats.snapshot();
    let get = |k: &str| snap.iter().find(|(n, _)| *n == k).map_or(0, |(_, v)| *v);
    let n_all = n + warm as u64;
    anyhow::ensure!(get("delivered_rows") == n_all, "delivered {} of {n_all}", get("delivered_rows"));
    println!(
        "throughput (batch_max_rows {batch_rows}, batch_max_bytes {batch_kib} KiB, {compression}): {n} events, {} messages ({:.0} rows/message); pushed (batched, encoded, sent) in {:.2} s = \
         {:.0} events/s; all acknowledged after {:.2} s = {:.0} events/s; failed {} spooled {}; producer thread {:.2} s CPU = {:.0} events/s per core",
        get("delivered"),
        n as f64 / get("delivered") as f64,
        pushed.as_secs_f64(),
        n as f64 / pushed.as_secs_f64(),
        acked.as_secs_f64(),
        n as f64 / acked.as_secs_f64(),
        get("failed"),
        get("spooled"),
        cpu.as_secs_f64(),
        n as f64 / cpu.as_secs_f64(),
    );
    Ok(())
}

fn percentiles(name: &str, mut v: Vec<i64>) {
    v.sort_unstable();
    if v.is_empty() {
        println!("{name}: no samples");
        return;
    }
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize] as f64 / 1e6;
    println!("{name}: {} rows, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms", v.len(), p(0.5), p(0.99), p(1.0));
}

/// Times of a visible file's rows.
fn file_times(path: &Path) -> anyhow::Result<Vec<i64>> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?;
    let idx = b.schema().index_of("time")?;
    let mask = ProjectionMask::roots(b.parquet_schema(), [idx]);
    let mut out = Vec::new();
    for batch in b.with_projection(mask).build()? {
        let batch = batch?;
        let t = batch.column(0).as_any().downcast_ref::<TimestampNanosecondArray>().context("time column")?;
        out.extend((0..t.len()).map(|i| t.value(i)));
    }
    Ok(out)
}

fn visible_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            visible_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet")
            && !p.file_name().is_some_and(|f| f.to_string_lossy().starts_with('.'))
        {
            out.push(p);
        }
    }
}

fn latency(linger_ms: u64, file_age_ms: u64) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let (spool, lake, rejected) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
    let mut k = kafka_cfg(&broker, spool.path(), "lat.");
    k.linger = Duration::from_millis(linger_ms);
    let svc = LakeServiceConfig {
        file_age: Duration::from_millis(file_age_ms),
        rejected_dir: rejected.path().to_path_buf(),
        ..LakeServiceConfig::default()
    };
    let lcfg = LakeConfig { dir: lake.path().to_path_buf(), retention: Duration::ZERO, ..LakeConfig::default() };
    let stop = StopFlag::default();
    let (kk, ss, ll, flag) = (k.clone(), svc.clone(), lcfg.clone(), stop.clone());
    let lake_thread = std::thread::spawn(move || -> anyhow::Result<()> {
        LakeConsumer::open(&kk, &ss, &ll)?.run(&flag);
        Ok(())
    });
    // An independent plain consumer: event time → row in a consumed message.
    let kafka_lat = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let raw = {
        let (lat, done, brokers) = (kafka_lat.clone(), done.clone(), broker.addr());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let c: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "bench-raw")
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10")
                .create()?;
            let topics: Vec<String> = Table::EVENT_TABLES.iter().map(|t| format!("lat.{}", t.name())).collect();
            c.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
            while !done.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                    let now = wall_ns();
                    let header = |name: &str| {
                        m.headers()
                            .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default()
                    };
                    let table = Table::from_name(&header(wire::HEADER_TABLE)).context("table header")?;
                    let (version, node) = (header(wire::HEADER_SCHEMA), header(wire::HEADER_NODE));
                    let payload = m.payload().unwrap_or_default();
                    let batches =
                        wire::decode_message(table, &version, &node, payload, &mut None).map_err(anyhow::Error::msg)?;
                    for b in batches {
                        let t = b.column_by_name("time").context("time")?;
                        let t = t.as_any().downcast_ref::<TimestampNanosecondArray>().context("ts")?;
                        let mut l = lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                        l.extend((0..t.len()).map(|i| now - t.value(i)));
                    }
                }
            }
            Ok(())
        })
    };
    let base = wall_ns();
    let ctx = JsonContext { node: "bench", clock: BootClock::from_offset(i128::from(base)), node_salt: 2 };
    let mut sink = KafkaSink::open(&k, ctx)?;
    // Let both consumers join before the clock starts.
    std::thread::sleep(Duration::from_secs(5));
    let mut pool: Vec<OwnedEvent> = (0..1000).map(template).collect();
    let ids = identities();
    let (rate, secs) = (20_000u64, 10u64);
    let n = rate * secs;
    let t0 = Instant::now();
    let mut lake_lat = Vec::new();
    let mut seen = HashSet::new();
    let mut scan = |lake_lat: &mut Vec<i64>| -> anyhow::Result<()> {
        let mut files = Vec::new();
        visible_files(lake.path(), &mut files);
        let now = wall_ns();
        for f in files {
            if seen.insert(f.clone()) {
                lake_lat.extend(file_times(&f)?.into_iter().map(|t| now - t));
            }
        }
        Ok(())
    };
    let mut next_scan = Instant::now();
    for i in 0..n {
        // 20 events per millisecond, each stamped with the wall time it is pushed at.
        if i % 20 == 0 {
            let due = t0 + Duration::from_micros(i * 1_000_000 / rate);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            if i % 200 == 0 {
                sink.tick();
            }
            if Instant::now() >= next_scan {
                next_scan = Instant::now() + Duration::from_millis(20);
                scan(&mut lake_lat)?;
            }
        }
        let ev = &mut pool[(i % 1000) as usize];
        ev.subject.ktime_ns = (wall_ns() - base) as u64;
        sink.push_with(&ev.as_event(), &ids[(i / 7 % 20) as usize]);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while (lake_lat.len() as u64) < n && Instant::now() < deadline {
        sink.tick();
        scan(&mut lake_lat)?;
        std::thread::sleep(Duration::from_millis(20));
    }
    sink.flush(Duration::from_secs(30));
    let _ = sink.close(Duration::from_secs(5))?;
    done.store(true, Ordering::Relaxed);
    stop.stop();
    raw.join().map_err(|_| anyhow::anyhow!("consumer panicked"))??;
    lake_thread.join().map_err(|_| anyhow::anyhow!("lake panicked"))??;
    println!("latency: {n} events at {rate}/s, kafka.linger {linger_ms} ms, lake_service.file_age {file_age_ms} ms");
    let k = kafka_lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    percentiles("  event -> row in a consumed Kafka message", k);
    percentiles("  event -> row in a visible Parquet file", lake_lat);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // The sink's warnings (failed deliveries, spooling) to stderr: RUST_LOG=warn.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("throughput") => {
            let compression = args.get(4).map_or("lz4", String::as_str);
            throughput(num(1, 2_000_000), num(2, 4096) as usize, num(3, 512) as usize, compression)
        }
        Some("latency") => latency(num(1, 500), num(2, 1000)),
        _ => anyhow::bail!(
            "usage: kafka throughput [N] [BATCH_ROWS] [BATCH_KIB] [lz4|zstd] | kafka latency [LINGER_MS] [FILE_AGE_MS]"
        ),
    }
}
