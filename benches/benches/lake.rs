//! Lake sink throughput: enriched events per second into Parquet on one
//! core, and bytes per event on disk.
//!
//! `cargo bench -p tracelake-benches --bench lake`
//!
//! - `lake/append_mixed`: `LakeSink::push_with` only (Arrow builders; nothing written), into a new sink.
//! - `lake/append_steady`: the same into one sink kept across iterations, each iteration's
//!   file written (untimed) before the next: the steady state of a running sink.
//! - `lake_service/{arrow_ipc,records}`: the lake service's side of the Kafka messages of those events,
//!   Arrow IPC decoded against rows built from records; `lake_service/records_written_{unkeyed,keyed}`: those
//!   rows written into Parquet too, without and with their keys.
//! - `lake/write_mixed`: push, then sort, zstd-encode and write files (fsync and rename included)
//!   into a directory under /dev/shm, so the disk's speed is not what is measured. A new sink each time.
//! - `lake/write_steady`: the same into one sink kept across iterations (a running `tracelake run`).
//!   The events come in time order, as the sensor's ring buffer mostly delivers them: the sort is skipped.
//!
//! The input is `tracelake_benches::lake` (shared with the `lake_steady` harness). Identities are the
//! enricher's `Resolved` answers for four containers (as in `tracelake run`), interleaved row by row. The
//! `lake/*` benches push events as the sink takes them (`Event` views, made before timing: what the reader's
//! decoding costs is the `decode` bench's).
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so
//! the figures are per core even while other work shares the machine.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracelake_benches::lake::{EVENTS, cfg, ctx, events, identity, resolved, thread_cpu};
use tracelake_enricher::Resolved;
use tracelake_model::json::Identity;
use tracelake_model::{Event, OwnedEvent};
use tracelake_sinks::kafka::records::{self, RecordWriter};
use tracelake_sinks::kafka::wire;
use tracelake_sinks::parquet::{BatchBuilder, LakeSink, Table};

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
                                // As the live detector does: with `shared`, the batch and its keys.
                                if shared {
                                    let (batch, keys) = b.finish_with_keys().expect("batch");
                                    sink.push_built_keyed(b.table(), black_box(batch), keys);
                                } else {
                                    black_box(b.finish().expect("batch"));
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
    // The lake service's messages into Parquet: rows built from the records and written, as gathered
    // columns (`unkeyed`, what the service did before) or with their keys (`keyed`, what it does now).
    for keyed in [false, true] {
        g.bench_function(if keyed { "records_written_keyed" } else { "records_written_unkeyed" }, |b| {
            b.iter_custom(|iters| {
                let mut cpu = Duration::ZERO;
                for _ in 0..iters {
                    let mut sink = LakeSink::open(&cfg(shm.path()), ctx()).expect("lake");
                    let mut rows = None;
                    let t0 = thread_cpu();
                    for (t, rec, _) in &messages {
                        if keyed {
                            let (batch, keys) =
                                records::to_keyed_batch(&mut rows, *t, context.node, rec).expect("rows");
                            sink.push_built_keyed(*t, batch, keys.expect("records have keys"));
                        } else {
                            sink.push_built(*t, records::to_batch(&mut rows, *t, context.node, rec).expect("rows"));
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
    if written.0 > 0 {
        println!("lake/write_mixed: {:.1} bytes per event on disk", written.1 as f64 / written.0 as f64);
    }
}

criterion_group!(benches, lake);
criterion_main!(benches);
