//! Pod IPs observed on this node, without an API server: when the enricher
//! first sees a container's cgroup it hands the container to a background
//! thread, which reads the addresses of the container's network namespace
//! (`/proc/<pid>/net/fib_trie` and `if_inet6` of a process in the cgroup)
//! and records them, with the container's start time, in the history.
//! Containers whose cgroup has emptied release their IPs. The same thread
//! does the table's upkeep (journal sync, pruning, compaction).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{IpHistory, Owner, Source, UnixNanos, now_ns};
use crate::containerd::ContainerdMeta;
use crate::identity::CgroupIdentity;

/// cgroup id -> the container's current IP, for the event path.
type PodIps = HashMap<u64, Arc<str>, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// What the event path tells the observer thread.
#[derive(Debug)]
enum Msg {
    /// A container the enricher has just met.
    Seen(Seen),
    /// A container's own network event used this local address (at this Unix time): a pod that lives 300 ms
    /// may be gone before any scan reads its namespace, but its connect says which IP it had.
    Used { seen: Seen, ip: IpAddr, at: UnixNanos },
}

/// A container the enricher has just met.
#[derive(Debug, Clone)]
struct Seen {
    cgroup_id: u64,
    cgroup_path: Arc<str>,
    container_id: String,
    containerd_namespace: String,
    pod_uid: Option<String>,
}

/// What the observer thread needs.
#[derive(Debug, Clone)]
pub struct ObserverOptions {
    pub cgroup_root: PathBuf,
    /// This node's name, recorded in every owner.
    pub node: String,
    pub containerd: Option<Arc<ContainerdMeta>>,
    /// Scan and upkeep period.
    pub interval: Duration,
    /// Read containers' addresses (false: upkeep only).
    pub observe: bool,
    pub compact_after_bytes: u64,
}

/// Handle on the observer thread; dropping it stops the thread after a last
/// journal sync.
#[derive(Debug)]
pub struct NodeObserver {
    tx: Option<mpsc::Sender<Msg>>,
    /// (cgroup, IP) pairs already told with `Msg::Used`, so a busy new container sends one, not thousands.
    used: std::sync::Mutex<HashSet<(u64, IpAddr)>>,
    pod_ips: Arc<ArcSwap<PodIps>>,
    thread: Option<JoinHandle<()>>,
}

impl NodeObserver {
    pub fn start(history: Arc<IpHistory>, opts: ObserverOptions) -> std::io::Result<NodeObserver> {
        let (tx, rx) = mpsc::channel();
        let pod_ips = Arc::new(ArcSwap::from_pointee(PodIps::default()));
        let ips = Arc::clone(&pod_ips);
        let thread = std::thread::Builder::new()
            .name("tl-ip-observer".into())
            .spawn(move || Observer::new(history, opts, ips).run(&rx))?;
        Ok(NodeObserver { tx: Some(tx), used: std::sync::Mutex::default(), pod_ips, thread: Some(thread) })
    }

    /// Called once per newly resolved cgroup (not per event).
    pub fn seen(&self, cgroup_id: u64, ident: &CgroupIdentity) {
        let (Some(tx), Some(seen)) = (&self.tx, Seen::of(cgroup_id, ident)) else { return };
        let _ = tx.send(Msg::Seen(seen));
    }

    /// A network event of the container in `cgroup_id` had `ip` as its local address at `at` (Unix ns).
    /// Called while the container's IP is not known yet; sent once per (cgroup, IP).
    pub fn used(&self, cgroup_id: u64, ident: &CgroupIdentity, ip: IpAddr, at: UnixNanos) {
        let (Some(tx), Some(seen)) = (&self.tx, Seen::of(cgroup_id, ident)) else { return };
        let Ok(mut used) = self.used.lock() else { return };
        if used.len() > 65_536 {
            used.clear();
        }
        if used.insert((cgroup_id, ip)) {
            let _ = tx.send(Msg::Used { seen, ip, at });
        }
    }

    /// The current IP of the container in cgroup `cgroup_id`, if observed.
    pub fn pod_ip(&self, cgroup_id: u64) -> Option<Arc<str>> {
        self.pod_ips.load().get(&cgroup_id).cloned()
    }
}

impl Drop for NodeObserver {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Seen {
    fn of(cgroup_id: u64, ident: &CgroupIdentity) -> Option<Seen> {
        let c = ident.container.as_ref()?;
        Some(Seen {
            cgroup_id,
            cgroup_path: Arc::clone(&ident.path),
            container_id: c.container_id.clone(),
            containerd_namespace: c.namespace.clone().unwrap_or_else(|| "k8s.io".into()),
            pod_uid: c.pod_uid.clone(),
        })
    }
}

#[derive(Debug)]
struct Tracked {
    seen: Seen,
    /// Start of the container's oldest process, once known.
    started: Option<UnixNanos>,
    owner: Owner,
    ips: Vec<IpAddr>,
}

struct Observer {
    history: Arc<IpHistory>,
    opts: ObserverOptions,
    pod_ips: Arc<ArcSwap<PodIps>>,
    tracked: HashMap<String, Tracked>,
    host_netns: u64,
    /// The node's own addresses: a host-network container's connect uses them, and they are not its to claim.
    host_ips: Vec<IpAddr>,
    boot_offset_ns: i64,
    ticks_per_sec: i64,
}

impl Observer {
    fn new(history: Arc<IpHistory>, opts: ObserverOptions, pod_ips: Arc<ArcSwap<PodIps>>) -> Observer {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Observer {
            history,
            opts,
            pod_ips,
            tracked: HashMap::new(),
            // init's namespace is the node's (the agent runs with hostPID but in a network namespace of its own).
            host_netns: netns_inode(1).or_else(|| netns_inode(std::process::id())).unwrap_or(0),
            host_ips: host_addresses(),
            boot_offset_ns: boot_offset_ns(),
            ticks_per_sec: if ticks > 0 { ticks } else { 100 },
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        let mut next = Instant::now() + self.opts.interval;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Used { seen, ip, at }) => {
                    if self.opts.observe {
                        self.used(seen, ip, at);
                    }
                }
                Ok(Msg::Seen(seen)) => {
                    // A new container is scanned at once: its peers may talk to it right away.
                    let id = seen.container_id.clone();
                    if self.opts.observe && !self.tracked.contains_key(&id) {
                        let t = Tracked { seen, started: None, owner: Owner::default(), ips: Vec::new() };
                        self.tracked.insert(id.clone(), t);
                        self.scan_one(&id);
                        self.publish_ips();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    next = Instant::now() + self.opts.interval;
                    self.host_ips = host_addresses();
                    let ids: Vec<String> = self.tracked.keys().cloned().collect();
                    for id in &ids {
                        self.scan_one(id);
                    }
                    self.publish_ips();
                    self.history.maintain(now_ns(), self.opts.compact_after_bytes);
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.history.maintain(now_ns(), self.opts.compact_after_bytes);
    }

    fn publish_ips(&self) {
        let map: PodIps = self
            .tracked
            .values()
            .filter_map(|t| t.ips.first().map(|ip| (t.seen.cgroup_id, Arc::from(ip.to_string().as_str()))))
            .collect();
        if **self.pod_ips.load() != map {
            self.pod_ips.store(Arc::new(map));
        }
    }

    /// Records that a container had `ip` at `at`, learnt from its own network event (it may be gone already:
    /// then it is tracked again with that IP, and the next scan closes the interval).
    fn used(&mut self, seen: Seen, ip: IpAddr, at: UnixNanos) {
        if self.host_ips.contains(&ip) || ip.is_loopback() || ip.is_unspecified() {
            return;
        }
        let id = seen.container_id.clone();
        let t = self.tracked.entry(id).or_insert_with(|| Tracked {
            seen,
            started: None,
            owner: Owner::default(),
            ips: Vec::new(),
        });
        if t.ips.contains(&ip) {
            return;
        }
        let owner = owner_of(&self.opts, &t.seen);
        let from = t.started.unwrap_or(at).min(at);
        self.history.assign(ip, from, owner.clone());
        t.ips.push(ip);
        t.owner = owner;
        self.publish_ips();
    }

    /// Re-reads one container: its addresses, its metadata, whether it is gone.
    fn scan_one(&mut self, id: &str) {
        let Some(t) = self.tracked.get_mut(id) else { return };
        let dir = self.opts.cgroup_root.join(t.seen.cgroup_path.trim_start_matches('/'));
        let pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        let now = now_ns();
        if pids.is_empty() {
            if !t.ips.is_empty() {
                self.history.release_owner(&t.owner, now);
            }
            self.tracked.remove(id);
            return;
        }
        let netns = pids.iter().find_map(|p| netns_inode(*p).map(|ns| (*p, ns)));
        // Host-network containers share the node's addresses: not theirs to claim.
        let ips = match netns {
            Some((pid, ns)) if ns != self.host_netns => local_addresses(pid),
            Some(_) | None => Vec::new(),
        };
        if t.started.is_none() {
            let (offset, tps) = (self.boot_offset_ns, self.ticks_per_sec);
            t.started = pids.iter().filter_map(|p| start_ns(*p, tps).map(|s| s + offset)).min();
        }
        let owner = owner_of(&self.opts, &t.seen);
        let old: HashSet<IpAddr> = t.ips.iter().copied().collect();
        let owner_changed = owner != t.owner;
        for ip in &ips {
            if owner_changed || !old.contains(ip) {
                let at = if old.contains(ip) { now } else { t.started.unwrap_or(now).min(now) };
                self.history.assign(*ip, at, owner.clone());
            }
        }
        for ip in t.ips.iter().filter(|ip| !ips.contains(ip)) {
            self.history.release_held(*ip, now, &t.owner);
        }
        t.ips = ips;
        t.owner = owner;
    }
}

/// A key of `pid`'s network namespace: the inode of its `/proc/<pid>/net/dev`, which each network namespace
/// has its own of. Not `/proc/<pid>/ns/net`: following that link needs ptrace access to the process, which the
/// agent (no CAP_SYS_PTRACE) lacks for any container whose capabilities are not a subset of its own.
/// The owner of a container's addresses, as this node knows it.
fn owner_of(opts: &ObserverOptions, seen: &Seen) -> Owner {
    let mut owner = Owner {
        node: Some(opts.node.clone()),
        pod_uid: seen.pod_uid.clone(),
        container_id: Some(seen.container_id.clone()),
        source: Source::Node,
        ..Owner::default()
    };
    if let Some(m) = opts.containerd.as_ref().and_then(|c| c.get(&seen.containerd_namespace, &seen.container_id)) {
        owner.pod = m.pod_name.clone();
        owner.namespace = m.pod_namespace.clone();
        owner.pod_uid = owner.pod_uid.or_else(|| m.pod_uid.clone());
        // Inferred from the pod name and labels; the API watch's answer replaces it when there is one.
        if let Some(w) = &m.workload {
            owner.workload_kind = Some(w.kind.as_str().to_string());
            owner.workload = Some(w.name.to_string());
        }
    }
    owner
}

/// The node's addresses (init's network namespace; the agent's own where /proc/1 is out of reach).
fn host_addresses() -> Vec<IpAddr> {
    let ips = local_addresses(1);
    if ips.is_empty() { local_addresses(std::process::id()) } else { ips }
}

fn netns_inode(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/net/dev")).ok().map(|m| m.ino())
}

/// realtime - boottime, to turn /proc start times into wall time.
fn boot_offset_ns() -> i64 {
    let read = |clock| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: ts is a valid, writable timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_BOOTTIME)
}

/// Start of `pid` in CLOCK_BOOTTIME ns (field 22 of /proc/<pid>/stat, in clock ticks).
fn start_ns(pid: u32, ticks_per_sec: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(") ")?.1;
    let ticks: i64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    Some(ticks.saturating_mul(1_000_000_000 / ticks_per_sec))
}

/// The unicast addresses of `pid`'s network namespace, loopback and
/// link-local left out: IPv4 from the fib trie's local /32 host entries,
/// IPv6 from if_inet6 (global scope).
pub fn local_addresses(pid: u32) -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")) {
        let mut last: Option<Ipv4Addr> = None;
        for line in trie.lines() {
            let l = line.trim_start();
            if let Some(rest) = l.strip_prefix("|-- ") {
                last = rest.trim().parse().ok();
            } else if l.starts_with("/32 host LOCAL")
                && let Some(ip) = last
                && !ip.is_loopback()
                && !ip.is_unspecified()
                && !out.contains(&IpAddr::V4(ip))
            {
                out.push(IpAddr::V4(ip));
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string(format!("/proc/{pid}/net/if_inet6")) {
        for line in v6.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(hex), Some(scope), Some(dev)) = (f.first(), f.get(3), f.get(5)) else { continue };
            if *scope != "00" || *dev == "lo" {
                continue;
            }
            if let Ok(bits) = u128::from_str_radix(hex, 16) {
                let ip = IpAddr::V6(Ipv6Addr::from_bits(bits));
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}
