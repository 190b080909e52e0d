//! Reader throughput: ring-buffer records decoded per second on one core,
//! alone and followed by what the reader does next (remembering aggregated
//! first occurrences, rendering JSON lines).
//!
//! `cargo bench -p tracelake-benches --bench decode`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracelake_benches::records::{self, Ring};
use tracelake_model::BootClock;
use tracelake_model::json::{JsonContext, write_event};
use tracelake_sensor::agg::Aggregator;
use tracelake_sensor::decode::decode;

/// Records per iteration: enough that per-iteration overhead vanishes, few
/// enough that the ring stays in L2 like a reader keeping up with the kernel.
const BATCH: u32 = 1024;

fn rings() -> [(&'static str, Ring); 4] {
    [
        ("exec_60B_argv", Ring::of(BATCH, records::exec)),
        ("file_open_30B_path", Ring::of(BATCH, records::file_open)),
        ("net_connect", Ring::of(BATCH, records::net_connect)),
        ("mixed", Ring::mixed(BATCH)),
    ]
}

fn decode_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, ring) in rings() {
        g.throughput(Throughput::Elements(ring.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                for r in ring.records() {
                    let _ = black_box(decode(black_box(r)));
                }
            })
        });
    }
    g.finish();
}

/// What `read_ring` in sensor.rs does per record before the handler: first
/// occurrences (flagged aggregated) are copied into the aggregator so their
/// summary can describe them later.
fn decode_remember(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_remember");
    for (name, ring) in rings() {
        let mut agg = Aggregator::default();
        g.throughput(Throughput::Elements(ring.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                for r in ring.records() {
                    if let Ok(ev) = decode(black_box(r)) {
                        if ev.flags & tracelake_model::flags::AGGREGATED != 0 {
                            agg.remember(&ev);
                        }
                        black_box(&ev);
                    }
                }
            })
        });
    }
    g.finish();
}

fn decode_json(c: &mut Criterion) {
    let ctx = JsonContext { node: "node-1", clock: BootClock::from_offset(1_700_000_000_000_000_000), node_salt: 7 };
    let mut g = c.benchmark_group("decode_json");
    for (name, ring) in rings() {
        // Reused across iterations, as the sinks reuse theirs between flushes.
        let mut out = Vec::with_capacity(1 << 20);
        g.throughput(Throughput::Elements(ring.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for r in ring.records() {
                    if let Ok(ev) = decode(black_box(r)) {
                        write_event(&mut out, &ctx, &ev);
                    }
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode_only, decode_remember, decode_json);
criterion_main!(benches);
