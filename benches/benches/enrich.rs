//! Enrichment cost per event: warm caches (the steady state), and a cold
//! miss (a cgroup id never seen: one `open_by_handle_at` plus a readlink).
//!
//! `cargo bench -p tracelake-benches --bench enrich`
//!
//! The warm case resolves events of 10,000 containers whose processes are in
//! a 100,000-entry process table, with four ancestors each, as `tracelake
//! run` does per event (cgroup identity, containerd metadata, lineage).

use std::hint::black_box;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tracelake_enricher::{CgroupIndex, ContainerMeta, ContainerdMeta, Enricher, EnricherConfig, ProcessTable};
use tracelake_model::{Body, Event, Kind, Subject};

const CONTAINERS: u64 = 10_000;
const PROCESSES: u32 = 100_000;
/// Synthetic cgroup ids start here, far above any real inode number.
const ID_BASE: u64 = 1 << 48;

fn container_id(i: u64) -> String {
    format!("{i:064x}")
}

fn event(tgid: u32, cgroup_id: u64) -> Event<'static> {
    Event {
        kind: Kind::FileOpen,
        subject: Subject { tgid, pid: tgid, cgroup_id, proc_start_ns: u64::from(tgid) * 1000, ..Subject::default() },
        flags: 0,
        count: 1,
        aggregate: None,
        body: Body::File {
            ret: 3,
            path: b"/etc/passwd",
            path2: b"",
            ino: 0,
            dev: 0,
            open_flags: 0,
            mode: 0,
            owner_uid: 0,
            owner_gid: 0,
        },
    }
}

/// Processes form chains of five within a container: each has four ancestors.
fn process_table() -> ProcessTable {
    let mut t = ProcessTable::new(Duration::from_secs(600), 1_000_000, 2_000_000);
    for pid in 1..=PROCESSES {
        let ppid = if pid % 5 == 1 { 0 } else { pid - 1 };
        let cgroup = ID_BASE + u64::from(pid / 5) % CONTAINERS;
        let mut ev = event(pid, cgroup);
        ev.kind = Kind::Exec;
        ev.subject.ppid = ppid;
        ev.body = Body::Exec {
            exe: b"/usr/local/bin/app-server",
            args: b"app-server\0--config\0/etc/app/config.yaml\0",
            cwd: b"/",
            exe_ino: 0,
            exe_dev: 0,
            exe_nlink: 1,
            launch: None,
        };
        t.observe(&ev);
    }
    t
}

fn warm(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let _guard = rt.enter();
    let cfg = EnricherConfig::default();
    let ttl = Duration::from_secs(600);
    // No containerd here: metadata is primed as a watch would.
    let meta = ContainerdMeta::start("/nonexistent.sock".into(), Duration::from_secs(1), 100_000, ttl);
    for i in 0..CONTAINERS {
        let mut m =
            ContainerMeta { id: container_id(i), image: "registry.local/shop/api:1.4.2".into(), ..Default::default() };
        m.pod_name = Some(format!("api-7d9f8b6c5d-{i:05}"));
        m.pod_namespace = Some("payments".into());
        m.container_name = Some("api".into());
        meta.prime(m);
    }
    let mut enricher = Enricher::new(&cfg.cgroup_root(), 100_000, ttl).expect("cgroup2 mount").with_containerd(meta);
    for i in 0..CONTAINERS {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{:08x}_1234_5678_9abc_def012345678.slice/cri-containerd-{}.scope",
            i,
            container_id(i)
        );
        enricher.remember_cgroup(ID_BASE + i, &path);
    }
    let table = process_table();
    // Events spread over every container and process, in a fixed shuffled order.
    let events: Vec<Event<'static>> = (0..4096u32)
        .map(|i| {
            let pid = (i.wrapping_mul(2_654_435_761) % PROCESSES) + 1;
            event(pid, ID_BASE + u64::from(pid / 5) % CONTAINERS)
        })
        .collect();
    // Warm every cache once.
    for ev in &events {
        let r = enricher.resolve_with_lineage(ev, &table, 4);
        assert!(r.meta.is_some() && r.chain[0].is_some(), "warm-up resolves");
    }
    let mut g = c.benchmark_group("enrich_warm");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("cgroup_only", |b| {
        b.iter(|| {
            for ev in &events {
                black_box(enricher.cgroup(black_box(ev.subject.cgroup_id)));
            }
        })
    });
    g.bench_function("cgroup_and_containerd", |b| {
        b.iter(|| {
            for ev in &events {
                black_box(enricher.resolve(black_box(ev.subject.cgroup_id), ev.subject.ktime_ns));
            }
        })
    });
    g.bench_function("full_with_lineage_4", |b| {
        b.iter(|| {
            for ev in &events {
                black_box(enricher.resolve_with_lineage(black_box(ev), &table, 4));
            }
        })
    });
    g.bench_function("full_with_identity_fields", |b| {
        b.iter(|| {
            for ev in &events {
                let r = enricher.resolve_with_lineage(black_box(ev), &table, 4);
                black_box(r.identity());
            }
        })
    });
    g.finish();
}

/// A real cgroup never seen before: what the first event of a new container costs.
fn cold(c: &mut Criterion) {
    let root = EnricherConfig::default().cgroup_root();
    let dir = root.join(format!("tl-bench-{}", std::process::id()));
    std::fs::create_dir(&dir).expect("create a cgroup (needs root)");
    let id = std::fs::metadata(&dir).expect("cgroup").ino();
    let mut g = c.benchmark_group("enrich_cold");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cgroup_path_miss", |b| {
        b.iter_batched(
            || CgroupIndex::open(&root, 16, Duration::from_secs(60)).expect("index"),
            |idx| black_box(idx.path(id)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("unknown_cgroup_negative", |b| {
        b.iter_batched(
            || CgroupIndex::open(&root, 16, Duration::from_secs(60)).expect("index"),
            |idx| black_box(idx.path(ID_BASE - 1)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let _ = std::fs::remove_dir(&dir);
}

criterion_group!(benches, warm, cold);
criterion_main!(benches);
