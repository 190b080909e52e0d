//! The process table: who every pid is, built from exec, fork and exit
//! events plus the /proc snapshot, with exited processes kept as tombstones
//! so late events and short-lived containers still resolve.
//!
//! Updated per process-lifecycle event (exec, fork, exit), not per event of
//! the high-rate classes: lookups are a hash probe and an Arc clone.

use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use moka::sync::Cache;
use tracelake_model::{Body, Event};

use crate::metrics::{self, CacheCounters};

/// What is known of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// CLOCK_BOOTTIME ns of its start: (pid, start_ns) is unique.
    pub start_ns: u64,
    pub ppid: u32,
    /// Start of the parent (0 if unknown): finds it among tombstones too.
    pub parent_start_ns: u64,
    pub uid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
    /// Shared with the parent until the process execs.
    pub exe: Arc<[u8]>,
    /// NUL-separated argv, shared like `exe`.
    pub args: Arc<[u8]>,
    /// CLOCK_BOOTTIME ns of its exit, once it is a tombstone.
    pub exited_ns: Option<u64>,
    /// False for /proc snapshots, whose start time has clock-tick precision.
    pub start_exact: bool,
}

/// Widest gap between a /proc start time (clock ticks) and the kernel's.
const TICK_SLACK_NS: u64 = 20_000_000;

impl ProcessInfo {
    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        let raw: &[u8] = &self.args;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        raw.split(|&b| b == 0).filter(move |_| !raw.is_empty())
    }
}

/// Live processes by pid, exited ones by (pid, start) for a while.
///
/// `live` uses foldhash: every event walks its lineage through it, and
/// SipHash cost more than the rest of the walk (benches/benches/enrich.rs).
pub struct ProcessTable {
    live: HashMap<u32, Arc<ProcessInfo>>,
    tombstones: Cache<(u32, u64), Arc<ProcessInfo>>,
    /// pid -> start of its latest exited process: finds a parent that exited
    /// before its child's first event arrived, when the child's record does
    /// not say when the parent started.
    last_exit: Cache<u32, u64>,
    max_live: usize,
    counters: Arc<CacheCounters>,
}

impl std::fmt::Debug for ProcessTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessTable")
            .field("live", &self.live.len())
            .field("tombstones", &self.tombstones.entry_count())
            .finish()
    }
}

impl ProcessTable {
    /// `tombstone_ttl`: how long an exited process stays resolvable;
    /// `max_live`: bound on live entries (missed exits cannot grow it forever).
    pub fn new(tombstone_ttl: Duration, max_tombstones: u64, max_live: usize) -> ProcessTable {
        let counters = Arc::<CacheCounters>::default();
        ProcessTable {
            live: HashMap::new(),
            tombstones: Cache::builder()
                .max_capacity(max_tombstones)
                .time_to_live(tombstone_ttl)
                .eviction_listener(metrics::listener(&counters))
                .build(),
            last_exit: Cache::builder().max_capacity(max_tombstones).time_to_live(tombstone_ttl).build(),
            max_live,
            counters,
        }
    }

    /// Lookups (live or tombstone) found or not, and tombstones evicted or expired.
    pub fn counters(&self) -> &Arc<CacheCounters> {
        &self.counters
    }

    /// Folds a lifecycle event into the table; other kinds are ignored.
    pub fn observe(&mut self, ev: &Event<'_>) {
        let s = &ev.subject;
        // Matched on the body: only lifecycle bodies change the table, and a
        // new body type must decide here whether it does.
        match ev.body {
            Body::Exec { exe, args, .. } | Body::Snapshot { exe, args, .. } => {
                let start_exact = matches!(ev.body, Body::Exec { .. });
                // exec keeps the process: what its fork told of the parent stays true.
                let parent_start_ns = match self.live.get(&s.tgid) {
                    Some(p) if p.ppid == s.ppid => p.parent_start_ns,
                    _ => 0,
                };
                self.insert(ProcessInfo {
                    pid: s.tgid,
                    start_ns: s.proc_start_ns,
                    ppid: s.ppid,
                    parent_start_ns,
                    uid: s.uid,
                    cgroup_id: s.cgroup_id,
                    comm: s.comm,
                    exe: Arc::from(exe),
                    args: Arc::from(args),
                    exited_ns: None,
                    start_exact,
                });
            }
            Body::Fork { child_pid, child_start_ns } => {
                // A child runs its parent's image until it execs.
                let (exe, args) = match self.live.get(&s.tgid) {
                    Some(p) => (Arc::clone(&p.exe), Arc::clone(&p.args)),
                    None => (Arc::from(&[][..]), Arc::from(&[][..])),
                };
                self.insert(ProcessInfo {
                    pid: child_pid,
                    start_ns: child_start_ns,
                    ppid: s.tgid,
                    parent_start_ns: s.proc_start_ns,
                    uid: s.uid,
                    cgroup_id: s.cgroup_id,
                    comm: s.comm,
                    exe,
                    args,
                    exited_ns: None,
                    start_exact: true,
                });
            }
            Body::Exit { .. } => {
                if let Some(p) = self.live.remove(&s.tgid) {
                    let mut dead = (*p).clone();
                    dead.exited_ns = Some(s.ktime_ns);
                    self.last_exit.insert(dead.pid, dead.start_ns);
                    self.tombstones.insert((dead.pid, dead.start_ns), Arc::new(dead));
                }
            }
            Body::Threads | Body::File { .. } | Body::Net { .. } | Body::Syscall { .. } => {}
        }
    }

    fn insert(&mut self, info: ProcessInfo) {
        if self.live.len() >= self.max_live && !self.live.contains_key(&info.pid) {
            // Exits were missed (ring overflow): drop the oldest-started entry.
            if let Some(oldest) = self.live.values().min_by_key(|p| p.start_ns).map(|p| p.pid) {
                self.live.remove(&oldest);
            }
        }
        self.live.insert(info.pid, Arc::new(info));
    }

    /// The process `pid` that started at `start_ns` (0: whichever is live),
    /// live or a tombstone.
    pub fn get(&self, pid: u32, start_ns: u64) -> Option<Arc<ProcessInfo>> {
        self.counters.track(self.find(pid, start_ns))
    }

    fn find(&self, pid: u32, start_ns: u64) -> Option<Arc<ProcessInfo>> {
        match self.live.get(&pid) {
            Some(p)
                if start_ns == 0
                    || p.start_ns == start_ns
                    || (!p.start_exact && p.start_ns.abs_diff(start_ns) < TICK_SLACK_NS) =>
            {
                Some(Arc::clone(p))
            }
            None if start_ns == 0 => self.tombstones.get(&(pid, self.last_exit.get(&pid)?)),
            _ => self.tombstones.get(&(pid, start_ns)),
        }
    }

    /// The process and its ancestors, nearest first, up to `depth` entries.
    pub fn lineage(&self, pid: u32, start_ns: u64, depth: usize) -> Vec<Arc<ProcessInfo>> {
        let mut out = Vec::new();
        let mut next = self.get(pid, start_ns);
        while let Some(p) = next {
            if out.len() >= depth {
                break;
            }
            next = if p.ppid == 0 || p.ppid == p.pid { None } else { self.get(p.ppid, p.parent_start_ns) };
            out.push(p);
        }
        out
    }

    /// `lineage` without allocating: fills `out` (process first), returns
    /// how many slots were filled.
    pub fn lineage_into(&self, pid: u32, start_ns: u64, out: &mut [Option<Arc<ProcessInfo>>]) -> usize {
        let mut n = 0;
        let mut next = self.get(pid, start_ns);
        while let Some(p) = next {
            if n >= out.len() {
                break;
            }
            next = if p.ppid == 0 || p.ppid == p.pid { None } else { self.get(p.ppid, p.parent_start_ns) };
            out[n] = Some(p);
            n += 1;
        }
        n
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests;
