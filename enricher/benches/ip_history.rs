//! Cost of the event path's peer lookup in the IP history: `who_had` on a
//! table of 50,000 IPs with four intervals each (reused IPs): random hits
//! over the whole table (cache-cold: ~80 MB of owners), hits on 64 hot
//! peers, misses, and random hits while a writer thread keeps assigning and
//! releasing; plus the cost of one assign.
#![allow(clippy::unwrap_used, missing_docs, reason = "benchmark")]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tracelake_enricher::iphistory::{Change, IpHistory, Owner, Source};

const IPS: u32 = 50_000;
const GENERATIONS: i64 = 4;
const STEP: i64 = 1_000_000_000;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn owner(i: u32, g: i64) -> Arc<Owner> {
    Arc::new(Owner {
        namespace: Some("shop".into()),
        pod: Some(format!("web-{i}-{g}")),
        pod_uid: Some(format!("uid-{i}-{g}")),
        container_id: Some(format!("{i:064x}")),
        source: Source::Kube,
        ..Owner::default()
    })
}

/// Every IP held by GENERATIONS pods in turn; the last still holds it.
fn table() -> IpHistory {
    let h = IpHistory::in_memory(Duration::MAX);
    let mut changes = Vec::new();
    for g in 0..GENERATIONS {
        for i in 0..IPS {
            changes.push(Change::Assign { ip: ip(i), at: g * STEP, owner: owner(i, g) });
        }
    }
    h.apply(changes);
    h
}

fn bench(c: &mut Criterion) {
    let h = Arc::new(table());
    let mut n = 0u32;
    c.bench_function("who_had/hit", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919) % IPS;
            black_box(h.who_had(black_box(ip(n)), black_box(2 * STEP + 5)))
        })
    });
    // The usual case: events talk to a few peers over and over (cache-warm).
    c.bench_function("who_had/hit_hot64", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(h.who_had(black_box(ip(n % 64)), black_box(2 * STEP + 5)))
        })
    });
    c.bench_function("who_had/miss", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919) % IPS;
            black_box(h.who_had(black_box(ip(IPS + n)), black_box(2 * STEP + 5)))
        })
    });
    // A writer replacing a shard map every 100 µs: readers never wait for it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i = (i + 1) % IPS;
                h.assign(ip(IPS + i), 10 * STEP, (*owner(i, 9)).clone());
                h.release(ip(IPS + i), 11 * STEP);
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    c.bench_function("who_had/hit_with_writer", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919) % IPS;
            black_box(h.who_had(black_box(ip(n)), black_box(2 * STEP + 5)))
        })
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    c.bench_function("assign/50k_ips", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 1) % IPS;
            h.assign(ip(i), 100 * STEP + i64::from(i), (*owner(i, 100)).clone());
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
