//! Lake sink throughput: enriched events per second into Parquet on one
//! core, and bytes per event on disk.
//!
//! `cargo bench -p tracelake-benches --bench lake`
//!
//! - `lake/append_mixed`: `LakeSink::push_with` only (Arrow builders; nothing written), into a new sink.
//! - `lake/append_steady`: the same into one sink kept across iterations, each iteration's
//!   file written (untimed) before the next: the steady state of a running sink.
//! - `lake_service/{arrow_ipc,records}`: the lake service's side of the Kafka messages of those events,
//!   Arrow IPC decoded against rows built from records.
//! - `lake/write_mixed`: push, then sort, zstd-encode and write files (fsync and rename included)
//!   into a directory under /dev/shm, so the disk's speed is not what is measured. A new sink each time.
//! - `lake/write_steady`: the same into one sink kept across iterations (a running `tracelake run`).
//!   The events come in time order, as the sensor's ring buffer mostly delivers them: the sort is skipped.
//!
//! Identities are the enricher's `Resolved` answers for four containers (as in `tracelake run`), interleaved
//! row by row. The `lake/*` benches push events as the sink takes them (`Event` views, made before timing:
//! what the reader's decoding costs is the `decode` bench's).
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so
//! the figures are per core even while other work shares the machine.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracelake_enricher::kube::{Workload, WorkloadKind, WorkloadSource};
use tracelake_enricher::{CgroupIdentity, ContainerMeta, ContainerRef, Resolved, Runtime};
use tracelake_model::json::{Ancestor, Identity, JsonContext};
use tracelake_model::{BootClock, Endpoint, Event, Kind, OwnedBody, OwnedEvent, Subject};
use tracelake_sinks::kafka::records::{self, RecordWriter};
use tracelake_sinks::kafka::wire;
use tracelake_sinks::parquet::{BatchBuilder, LakeConfig, LakeSink, Table};

const EVENTS: u64 = 100_000;

fn subject(i: u64) -> Subject {
    let pid = 2000 + (i % 700) as u32;
    Subject {
        ktime_ns: 1_000_000_000 + i * 10_000,
        cgroup_id: 9000 + i % 40,
        proc_start_ns: 77_000 + u64::from(pid),
        pid,
        tgid: pid,
        ppid: 1900 + (i % 50) as u32,
        uid: 1000,
        gid: 1000,
        comm: *b"python3\0\0\0\0\0\0\0\0\0",
        ..Subject::default()
    }
}

/// Realistic shapes: exec with a 5-argument command line, a file open
/// under a pod volume, a TCP connect to a service IP; one of each in turn.
fn events() -> Vec<OwnedEvent> {
    (0..EVENTS)
        .map(|i| {
            let (kind, body, strings): (Kind, OwnedBody, [Vec<u8>; 3]) = match i % 3 {
                0 => (
                    Kind::Exec,
                    OwnedBody::Exec { exe_ino: 1234 + i % 100, exe_dev: 2049, exe_nlink: 1 },
                    [
                        b"/usr/local/bin/python3.11".to_vec(),
                        format!("python3\0-m\0app.worker\0--queue\0jobs-{}\0", i % 17).into_bytes(),
                        b"/srv/app".to_vec(),
                    ],
                ),
                1 => (
                    Kind::FileOpen,
                    OwnedBody::File {
                        ret: 5,
                        ino: 5000 + i,
                        dev: 2049,
                        open_flags: 0o1101,
                        mode: 0o644,
                        owner_uid: 0,
                        owner_gid: 0,
                    },
                    [format!("/var/lib/app/data/cache-{}.db", i % 300).into_bytes(), Vec::new(), Vec::new()],
                ),
                _ => {
                    let remote = Endpoint {
                        addr: [10, 96, (i % 4) as u8, (i % 200) as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        port: 5432,
                    };
                    let local = Endpoint {
                        addr: [10, 244, 1, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        port: 40000 + (i % 20000) as u16,
                    };
                    (
                        Kind::NetConnect,
                        OwnedBody::Net {
                            ret: 0,
                            family: 2,
                            protocol: 6,
                            local,
                            remote,
                            bytes_sent: 0,
                            bytes_received: 0,
                        },
                        [Vec::new(), Vec::new(), Vec::new()],
                    )
                }
            };
            OwnedEvent { kind, subject: subject(i), flags: 0, count: 1, aggregate: None, body, strings }
        })
        .collect()
}

const CONTAINERS: [&str; 4] = [
    "3f9a1c0e5b7d2a4c6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
    "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
    "1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef",
];

/// The enricher's answer for container `i`, as the pipeline has it: identities come from `Resolved`, stamped
/// with the shared values their strings were read from (the lake interns them by that stamp).
fn resolved(i: usize) -> Resolved {
    let pod_uid = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
    let container = ContainerRef {
        runtime: Runtime::Containerd,
        container_id: CONTAINERS[i % 4].into(),
        pod_uid: Some(pod_uid.into()),
        qos: Some("burstable"),
        namespace: None,
    };
    let path =
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c.slice/cri-containerd-3f9a.scope";
    let meta = ContainerMeta {
        id: CONTAINERS[i % 4].into(),
        image: "registry.example.com/payments/worker:2.14.1".into(),
        container_name: Some("worker".into()),
        pod_name: Some("worker-6c9f7d8b5-x2k4q".into()),
        pod_namespace: Some("payments".into()),
        pod_uid: Some(pod_uid.into()),
        workload: Some(Workload::new(WorkloadKind::Deployment, "worker", WorkloadSource::Api)),
        ..ContainerMeta::default()
    };
    Resolved {
        cgroup: Some(Arc::new(CgroupIdentity { path: Arc::from(path), container: Some(container) })),
        meta: Some(Arc::new(meta)),
        ..Resolved::default()
    }
}

fn identity(r: &Resolved) -> Identity<'_> {
    let mut id = r.identity();
    id.process_exe = Some(b"/usr/local/bin/python3.11");
    id.ancestors[0] = Some(Ancestor { pid: 1900, exe: b"/bin/sh", args: b"sh\0-c\0python3 -m app.worker\0" });
    id.ancestors[1] = Some(Ancestor { pid: 1800, exe: b"/usr/bin/containerd-shim-runc-v2", args: b"shim\0" });
    id
}

fn ctx() -> JsonContext<'static> {
    JsonContext { node: "worker-node-07", clock: BootClock::from_offset(1_764_000_000_000_000_000), node_salt: 42 }
}

fn cfg(dir: &std::path::Path) -> LakeConfig {
    LakeConfig {
        dir: dir.to_path_buf(),
        // One file per iteration: the rotation threshold stays out of the way.
        rotate_bytes: 1 << 30,
        rotate_age: Duration::from_secs(3600),
        retention: Duration::ZERO,
        compact_min_files: usize::MAX,
        ..LakeConfig::default()
    }
}

/// CPU time of this thread: the figure is per core, whatever else the
/// shared machine runs meanwhile (files go to /dev/shm, so no I/O wait is hidden).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn lake(c: &mut Criterion) {
    let evs = events();
    // The events as the sink takes them, made once: what the reader's decoding costs is `decode`'s to measure,
    // and copying an `OwnedEvent` into its view was 4 % of `write_steady`.
    let views: Vec<Event<'_>> = evs.iter().map(OwnedEvent::as_event).collect();
    let answers: Vec<Resolved> = (0..4).map(resolved).collect();
    let ids: Vec<Identity<'_>> = answers.iter().map(identity).collect();
    let shm = tempfile::tempdir_in("/dev/shm").expect("/dev/shm");
    let mut g = c.benchmark_group("lake");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(20);
    g.bench_function("append_mixed", |b| {
        b.iter_custom(|iters| {
            let mut cpu = Duration::ZERO;
            for _ in 0..iters {
                let mut sink = LakeSink::open(&cfg(shm.path()), ctx()).expect("lake");
                let t0 = thread_cpu();
                for (i, e) in views.iter().enumerate() {
                    sink.push_with(black_box(e), &ids[i % 4]);
                }
                cpu += thread_cpu() - t0;
            }
            cpu
        })
    });
    let mut written = (0u64, 0u64);
    g.bench_function("write_mixed", |b| {
        b.iter_custom(|iters| {
            let mut cpu = Duration::ZERO;
            for _ in 0..iters {
                let mut sink = LakeSink::open(&cfg(shm.path()), ctx()).expect("lake");
                let t0 = thread_cpu();
                for (i, e) in views.iter().enumerate() {
                    sink.push_with(black_box(e), &ids[i % 4]);
                }
                let s = sink.close(0, Duration::ZERO).expect("written");
                cpu += thread_cpu() - t0;
                written = (written.0 + s.rows_written, written.1 + s.bytes_written);
            }
            cpu
        })
    });
    // A long-running sink (what `tracelake run` is): builders and writer reused file after file (the first
    // iteration's file is written in the warm-up). `append_steady` times the pushes only, `write_steady` the
    // pushes and the file written.
    for (name, write_timed) in [("append_steady", false), ("write_steady", true)] {
        let mut steady = LakeSink::open(&cfg(shm.path()), ctx()).expect("lake");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut cpu = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = thread_cpu();
                    for (i, e) in views.iter().enumerate() {
                        steady.push_with(black_box(e), &ids[i % 4]);
                    }
                    let pushed = thread_cpu();
                    steady.flush().expect("written");
                    cpu += if write_timed { thread_cpu() } else { pushed } - t0;
                }
                cpu
            })
        });
    }
    g.finish();
    // `tracelake run` with live rules: the detector builds Arrow batches of every event too. Before, the lake
    // built its own rows beside them (`two_builds`); now it writes the detector's batches (`shared`). The
    // rules' evaluation is the same in both and left out.
    let mut g = c.benchmark_group("lake_with_detector");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(10);
    for shared in [false, true] {
        g.bench_function(if shared { "shared" } else { "two_builds" }, |b| {
            b.iter_custom(|iters| {
                let mut cpu = Duration::ZERO;
                for _ in 0..iters {
                    let mut sink = LakeSink::open(&cfg(shm.path()), ctx()).expect("lake");
                    let mut det: Vec<BatchBuilder> =
                        Table::EVENT_TABLES.into_iter().filter_map(BatchBuilder::new).collect();
                    let context = ctx();
                    let t0 = thread_cpu();
                    for (i, e) in evs.iter().enumerate() {
                        let ev = e.as_event();
                        let t = Table::of(&ev);
                        if let Some(b) = det.iter_mut().find(|b| b.table() == t) {
                            b.append(&context, black_box(&ev), &ids[i % 4]);
                        }
                        if !shared {
                            sink.push_with(black_box(&ev), &ids[i % 4]);
                        }
                        if i % 65_536 == 65_535 || i + 1 == evs.len() {
                            for b in det.iter_mut().filter(|b| !b.is_empty()) {
                                let batch = b.finish().expect("batch");
                                if shared {
                                    sink.push_built(b.table(), batch);
                                } else {
                                    black_box(batch);
                                }
                            }
                        }
                    }
                    sink.close(0, Duration::ZERO).expect("written");
                    cpu += thread_cpu() - t0;
                }
                cpu
            })
        });
    }
    g.finish();
    // The lake service's side of a message: Arrow IPC decoding (what the agent used to send) against
    // building the rows from records (what it sends now). Writing the rows is the same after either.
    let mut g = c.benchmark_group("lake_service");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(10);
    let context = ctx();
    let mut messages: Vec<(Table, Vec<u8>, Vec<u8>)> = Vec::new();
    for t in Table::EVENT_TABLES {
        let of: Vec<usize> = (0..evs.len()).filter(|&i| Table::of(&evs[i].as_event()) == t).collect();
        for chunk in of.chunks(2857) {
            let mut w = RecordWriter::default();
            let mut b = BatchBuilder::new(t).expect("event table");
            for &i in chunk {
                w.append(&evs[i].as_event(), &ids[i % 4]);
                b.append(&context, &evs[i].as_event(), &ids[i % 4]);
            }
            let ipc = wire::encode(&b.finish().expect("batch")).expect("ipc");
            messages.push((t, w.finish(&context), ipc));
        }
    }
    for records in [false, true] {
        g.bench_function(if records { "records" } else { "arrow_ipc" }, |b| {
            b.iter_custom(|iters| {
                let mut cpu = Duration::ZERO;
                for _ in 0..iters {
                    let mut rows = None;
                    let t0 = thread_cpu();
                    for (t, rec, ipc) in &messages {
                        if records {
                            black_box(records::to_batch(&mut rows, *t, context.node, rec).expect("rows"));
                        } else {
                            black_box(wire::decode(ipc).expect("rows"));
                        }
                    }
                    cpu += thread_cpu() - t0;
                }
                cpu
            })
        });
    }
    g.finish();
    if written.0 > 0 {
        println!("lake/write_mixed: {:.1} bytes per event on disk", written.1 as f64 / written.0 as f64);
    }
}

criterion_group!(benches, lake);
criterion_main!(benches);
