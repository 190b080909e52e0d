//! The enricher as the node pipeline sets it up: containerd metadata, the
//! pod IP history (persisted, fed from this node and from the API watch) and
//! Kubernetes workloads, each optional and each failing soft except where
//! the config insists.

use std::sync::Arc;

use anyhow::Context;
use tracelake_enricher::iphistory::{IpHistory, NodeObserver, ObserverOptions, kube_feed, now_ns};
use tracelake_enricher::kube::KubeMode;
use tracelake_enricher::{
    CacheCounters, CgroupPaths, ContainerdMeta, Enricher, EnricherConfig, KubeMeta, ProcessTable, RuntimeOptions,
    Unresolved,
};
use tracelake_sensor::{RecordedCgroups, Sensor};

/// The sensor's record of created cgroups, as the enricher asks for paths.
#[derive(Debug)]
struct SensorCgroups(Arc<RecordedCgroups>);

impl CgroupPaths for SensorCgroups {
    fn path(&self, id: u64) -> Option<String> {
        self.0.path(id)
    }
}

/// What the pipeline holds of the enricher.
#[derive(Debug)]
pub struct Enrichment {
    pub enricher: Enricher,
    pub processes: ProcessTable,
    pub history: Option<Arc<IpHistory>>,
    /// Container metadata, for what needs it off the event path (late identity of findings).
    pub containerd: Option<Arc<ContainerdMeta>>,
    /// Every cache's counters by name, registered as metrics and logged at the end.
    pub caches: Vec<(&'static str, Arc<CacheCounters>)>,
}

/// Builds the enricher for `node`. Needs a tokio runtime (background lookups).
/// `recorded`: the sensor's record of created cgroups, when it could attach it.
pub fn build(e: &EnricherConfig, node: &str, recorded: Option<Arc<RecordedCgroups>>) -> anyhow::Result<Enrichment> {
    let unresolved = Unresolved::new();
    unresolved.register();
    let mut enricher = Enricher::new(&e.cgroup_root(), e.cache_entries, e.tombstone_ttl)
        .context("cannot start the enricher")?
        .with_unresolved(Arc::clone(&unresolved));
    if let Some(r) = recorded {
        enricher = enricher.with_recorded_cgroups(Arc::new(SensorCgroups(r)));
    }
    // Started whether or not the socket exists yet: a runtime that starts (or restarts) after the agent is
    // connected to as soon as its socket answers, and the wait is a warning, not silence.
    if !e.containerd_socket.exists() {
        tracing::warn!(
            socket = %e.containerd_socket.display(),
            "no container runtime socket (yet): container and pod metadata wait for it (enricher.containerd_socket)"
        );
    }
    let meta = ContainerdMeta::start_with(RuntimeOptions {
        socket: e.containerd_socket.clone(),
        timeout: e.runtime_timeout,
        capacity: e.cache_entries,
        ttl: e.tombstone_ttl,
        watch_events: true,
        api: e.runtime_api,
        search_known: e.runtime_socket_search,
        unresolved: Arc::clone(&unresolved),
    });
    enricher = enricher.with_containerd(Arc::clone(&meta));
    let containerd = Some(meta);
    let mut history = None;
    if e.ip_history.enabled {
        let (h, observer) = ip_history(e, node, containerd.clone());
        enricher = enricher.with_ip_history(Arc::clone(&h), observer, Sensor::boot_clock());
        history = Some(h);
    }
    match KubeMeta::start_thread(&e.kubernetes, e.tombstone_ttl) {
        Ok(Some(kube)) => {
            if let Some(h) = &history {
                kube_feed::spawn(&kube, Arc::clone(h));
            }
            enricher = enricher.with_kube(kube);
        }
        Ok(None) => {}
        Err(err) if e.kubernetes.mode == KubeMode::On => {
            return Err(err).context("enricher.kubernetes.mode = \"on\"");
        }
        Err(err) => tracing::warn!(
            error = format!("{:#}", anyhow::Error::from(err)),
            "kubernetes: off; workloads are inferred from pod names"
        ),
    }
    let processes = ProcessTable::new(e.tombstone_ttl, e.cache_entries, e.max_processes);
    let mut caches = enricher.cache_counters();
    caches.push(("process", Arc::clone(processes.counters())));
    tracelake_enricher::metrics::register(&caches);
    Ok(Enrichment { enricher, processes, history, containerd, caches })
}

/// Logs each cache's totals (an SRE sizing `cache_entries` looks for evictions here).
pub fn log_caches(caches: &[(&'static str, Arc<CacheCounters>)]) {
    for (cache, c) in caches {
        let c = c.read();
        tracing::info!(
            cache,
            hits = c.hits,
            misses = c.misses,
            evicted = c.evicted,
            expired = c.expired,
            "enricher cache"
        );
    }
}

/// The persisted IP history (in memory only if the state dir is unusable:
/// peers still resolve, history just does not survive a restart) and the
/// thread that feeds it from this node's containers.
fn ip_history(
    e: &EnricherConfig,
    node: &str,
    containerd: Option<Arc<ContainerdMeta>>,
) -> (Arc<IpHistory>, Option<NodeObserver>) {
    let c = &e.ip_history;
    let dir = e.ip_history_dir();
    let history = IpHistory::open(&dir, c.retention, now_ns()).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "IP history kept in memory only");
        IpHistory::in_memory(c.retention)
    });
    let history = Arc::new(history);
    let opts = ObserverOptions {
        cgroup_root: e.cgroup_root(),
        node: node.to_string(),
        containerd,
        interval: c.scan_interval,
        observe: c.observe_node,
        compact_after_bytes: c.compact_after_bytes,
    };
    let observer = NodeObserver::start(Arc::clone(&history), opts)
        .inspect_err(|err| tracing::warn!(error = %err, "cannot start the IP observer thread"))
        .ok();
    (history, observer)
}
