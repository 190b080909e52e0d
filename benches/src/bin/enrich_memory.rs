//! Memory of the enricher's tables at node scale: 10,000 containers with
//! their runtime metadata, and 1,000,000 tracked processes.
//!
//! `cargo run --release -p tracelake-benches --bin enrich_memory`
//!
//! Reads the resident set size before and after filling each table, so the
//! figure includes allocator overhead, moka's bookkeeping and hash tables.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use tracelake_enricher::{ContainerMeta, ContainerdMeta, Enricher, EnricherConfig, ProcessTable};
use tracelake_model::{Body, Event, Kind, Subject};

fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * u64::try_from(page)?)
}

fn report(what: &str, n: u64, before: u64, after: u64) {
    let bytes = after.saturating_sub(before);
    println!("{what}: {n} entries, {:.1} MiB resident, {} bytes each", bytes as f64 / (1 << 20) as f64, bytes / n);
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _guard = rt.enter();
    let ttl = Duration::from_secs(600);
    const CONTAINERS: u64 = 10_000;
    const PROCESSES: u32 = 1_000_000;

    let before = rss_bytes()?;
    let meta = ContainerdMeta::start("/nonexistent.sock".into(), Duration::from_secs(1), 100_000, ttl);
    let mut enricher =
        Enricher::new(&EnricherConfig::default().cgroup_root(), 100_000, ttl)?.with_containerd(meta.clone());
    for i in 0..CONTAINERS {
        let id = format!("{i:064x}");
        // Labels as kubelet and a typical chart set them.
        let labels: BTreeMap<String, String> = [
            ("io.kubernetes.pod.name", format!("api-7d9f8b6c5d-{i:05}")),
            ("io.kubernetes.pod.namespace", "payments".to_string()),
            ("io.kubernetes.pod.uid", format!("{i:08x}-1234-5678-9abc-def012345678")),
            ("io.kubernetes.container.name", "api".to_string()),
            ("io.cri-containerd.kind", "container".to_string()),
            ("app.kubernetes.io/name", "api".to_string()),
            ("app.kubernetes.io/version", "1.4.2".to_string()),
            ("pod-template-hash", "7d9f8b6c5d".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        meta.prime(ContainerMeta {
            id: id.clone(),
            image: "registry.local/shop/api:1.4.2".into(),
            image_digest: Some(format!("sha256:{:064x}", i % 50)),
            container_name: labels.get("io.kubernetes.container.name").cloned(),
            pod_name: labels.get("io.kubernetes.pod.name").cloned(),
            pod_namespace: labels.get("io.kubernetes.pod.namespace").cloned(),
            pod_uid: labels.get("io.kubernetes.pod.uid").cloned(),
            labels,
            ..ContainerMeta::default()
        });
        let cgroup = (1 << 48) + i;
        enricher.remember_cgroup(
            cgroup,
            &format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{i:08x}_1234_5678_9abc_def012345678.slice/cri-containerd-{id}.scope"),
        );
        // Resolving fills the identity cache and the front, as events would.
        let r = enricher.resolve(cgroup, 1);
        anyhow::ensure!(r.meta.is_some(), "primed metadata resolves");
    }
    let after = rss_bytes()?;
    report("containers (cgroup path, identity, runtime metadata with 8 labels)", CONTAINERS, before, after);

    let before = rss_bytes()?;
    let mut table = ProcessTable::new(ttl, 1_000_000, 2_000_000);
    for pid in 1..=PROCESSES {
        // Every process exec'd its own argv: no sharing with the parent.
        let args = format!("worker\0--id\0{pid}\0--config\0/etc/app/config.yaml\0");
        let ev = Event {
            kind: Kind::Exec,
            subject: Subject {
                tgid: pid,
                pid,
                ppid: pid / 2,
                cgroup_id: (1 << 48) + u64::from(pid) % CONTAINERS,
                proc_start_ns: u64::from(pid) * 1000,
                ..Subject::default()
            },
            flags: 0,
            count: 1,
            aggregate: None,
            body: Body::Exec {
                exe: b"/usr/local/bin/worker",
                args: args.as_bytes(),
                cwd: b"/",
                exe_ino: 0,
                exe_dev: 0,
                exe_nlink: 1,
                launch: None,
            },
        };
        table.observe(&ev);
    }
    let after = rss_bytes()?;
    report("live processes (exe 21 B, argv 49-55 B each)", u64::from(PROCESSES), before, after);
    anyhow::ensure!(table.live_count() == PROCESSES as usize, "every process tracked");
    Ok(())
}
