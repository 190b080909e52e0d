//! The interval table. Reads are lock-free: each of 64 shards is an
//! immutable map behind an `ArcSwap`, replaced whole by writers (copy on
//! write of one shard, a map of `Arc`s, so a write copies pointers, never
//! intervals). Writers serialize on a mutex readers never touch; the
//! authoritative table, the change sequence and the journal live behind it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::persist::{self, PersistError, Store};
use super::{Interval, Owner, Row, UnixNanos};

const SHARDS: usize = 64;

/// IPv4 is kept as its IPv4-mapped IPv6 form: one key space, and a v4-mapped
/// peer (dual-stack sockets) finds the v4 owner.
type Key = u128;
type Map = HashMap<Key, Arc<[Interval]>, BuildHasherDefault<KeyHasher>>;

/// One multiply for a 16-byte key: SipHash was most of a lookup's cost, and
/// the stored keys are pod and service IPs, not attacker-chosen.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        self.0 = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

fn key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

fn ip_of(key: Key) -> IpAddr {
    let v6 = Ipv6Addr::from_bits(key);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// Independent of the bits the maps use, so keys of one shard spread over its buckets.
fn shard(key: Key) -> usize {
    let x = (key as u64) ^ ((key >> 64) as u64);
    (x.wrapping_mul(0xd6e8_feb8_6659_fd93) >> 58) as usize
}

/// Current time as Unix nanoseconds.
pub fn now_ns() -> UnixNanos {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[derive(Debug)]
struct Slot {
    iv: Interval,
    seq: u64,
}

#[derive(Debug, Default)]
struct Writer {
    table: HashMap<Key, Vec<Slot>>,
    next_seq: u64,
    store: Option<Store>,
    persist_errors: u64,
}

/// Rows changed since a sequence number, and the number to ask from next.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub rows: Vec<Row>,
    pub next_seq: u64,
}

/// The IP ownership history. Shared (`Arc`) between the event path (reads)
/// and whatever learns ownership (writes).
pub struct IpHistory {
    shards: Box<[ArcSwap<Map>]>,
    writer: Mutex<Writer>,
    retention_ns: i64,
}

impl std::fmt::Debug for IpHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpHistory").field("retention_ns", &self.retention_ns).finish_non_exhaustive()
    }
}

/// What one mutation does; `apply` takes many at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Assign { ip: IpAddr, at: UnixNanos, owner: Arc<Owner> },
    Release { ip: IpAddr, at: UnixNanos, holder: Option<Arc<Owner>> },
    ReleaseOwner { owner: Arc<Owner>, at: UnixNanos },
}

impl IpHistory {
    /// A table kept in memory only. `retention`: intervals that ended longer
    /// ago than this are pruned.
    pub fn in_memory(retention: Duration) -> IpHistory {
        IpHistory {
            shards: (0..SHARDS).map(|_| ArcSwap::from_pointee(Map::default())).collect(),
            writer: Mutex::new(Writer::default()),
            retention_ns: i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX),
        }
    }

    /// The persisted table in `dir` (created if missing), journaled from now
    /// on. A torn or corrupt tail is logged and cut off; only another live
    /// writer on the same dir (or an unusable dir) is an error.
    pub fn open(dir: &Path, retention: Duration, now: UnixNanos) -> Result<IpHistory, PersistError> {
        let (store, rows) = Store::open(dir)?;
        let me = IpHistory::in_memory(retention);
        {
            let mut w = me.lock();
            load_rows(&mut w, rows);
            w.store = Some(store);
        }
        me.prune(now);
        me.publish_all();
        Ok(me)
    }

    /// The persisted table in `dir`, read without locking or repairing it
    /// (what `tracelake whois` does while `tracelake run` writes).
    pub fn read_only(dir: &Path) -> Result<IpHistory, PersistError> {
        let rows = persist::read_dir(dir)?;
        let me = IpHistory::in_memory(Duration::MAX);
        load_rows(&mut me.lock(), rows);
        me.publish_all();
        Ok(me)
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A writer that panicked left a table that is still consistent per interval.
        self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `owner` holds `ip` from `at` on. The previous holder's interval ends
    /// at `at` at the latest (an IP has one holder at a time). The same
    /// holder reported again (another source, more fields) merges into its
    /// open interval instead of starting a new one.
    pub fn assign(&self, ip: IpAddr, at: UnixNanos, owner: Owner) {
        self.apply(vec![Change::Assign { ip, at, owner: Arc::new(owner) }]);
    }

    /// A ClusterIP belongs to a Service from `at` on.
    pub fn assign_service(&self, ip: IpAddr, at: UnixNanos, namespace: &str, name: &str) {
        self.assign(ip, at, Owner::service(namespace, name));
    }

    /// Whoever holds `ip` no longer does from `at` on.
    pub fn release(&self, ip: IpAddr, at: UnixNanos) {
        self.apply(vec![Change::Release { ip, at, holder: None }]);
    }

    /// Ends `ip`'s open interval at `at` only if `holder` (same holder) holds it.
    pub fn release_held(&self, ip: IpAddr, at: UnixNanos, holder: &Owner) {
        self.apply(vec![Change::Release { ip, at, holder: Some(Arc::new(holder.clone())) }]);
    }

    /// Ends every open interval of `owner` (same holder) at `at`: the pod
    /// or container is gone.
    pub fn release_owner(&self, owner: &Owner, at: UnixNanos) {
        self.apply(vec![Change::ReleaseOwner { owner: Arc::new(owner.clone()), at }]);
    }

    /// Applies changes in order and publishes them to readers at once (one
    /// copy per touched shard however many changes: for bulk loads).
    pub fn apply(&self, changes: Vec<Change>) {
        let mut w = self.lock();
        let mut touched = Vec::new();
        let mut rows = Vec::new();
        for c in changes {
            apply_one(&mut w, c, &mut touched, &mut rows);
        }
        self.persist(&mut w, &rows);
        self.publish(&w, &mut touched);
    }

    /// The owner of `ip` at `at`, if any. Lock-free; the event path's call.
    pub fn who_had(&self, ip: IpAddr, at: UnixNanos) -> Option<Arc<Owner>> {
        let key = key(ip);
        let map = self.shards[shard(key)].load();
        let ivs = map.get(&key)?;
        let i = ivs.partition_point(|iv| iv.valid_from <= at);
        let iv = &ivs[i.checked_sub(1)?];
        iv.contains(at).then(|| Arc::clone(&iv.owner))
    }

    /// Every interval of `ip`, oldest first.
    pub fn history(&self, ip: IpAddr) -> Vec<Interval> {
        let key = key(ip);
        self.shards[shard(key)].load().get(&key).map(|v| v.to_vec()).unwrap_or_default()
    }

    /// Every interval, as rows ordered by IP and time.
    pub fn rows(&self) -> Vec<Row> {
        self.changes_since(0).rows
    }

    /// Rows created or changed (closed, merged) at or after sequence `seq`,
    /// for writing `ip_ownership` incrementally: pass `next_seq` next time.
    /// Sequence numbers continue across restarts.
    pub fn changes_since(&self, seq: u64) -> Changes {
        let w = self.lock();
        let mut rows: Vec<Row> =
            w.table.iter().flat_map(|(k, v)| v.iter().filter(|s| s.seq >= seq).map(|s| row(*k, s))).collect();
        rows.sort_by_key(|r| (r.ip, r.valid_from));
        Changes { rows, next_seq: w.next_seq }
    }

    /// Drops intervals that ended before `now - retention`; returns how many.
    pub fn prune(&self, now: UnixNanos) -> usize {
        let cutoff = now.saturating_sub(self.retention_ns);
        let mut w = self.lock();
        let (mut touched, mut dropped) = (Vec::new(), 0);
        w.table.retain(|k, v| {
            let before = v.len();
            v.retain(|s| s.iv.valid_to.is_none_or(|t| t >= cutoff));
            if v.len() != before {
                dropped += before - v.len();
                touched.push(*k);
            }
            !v.is_empty()
        });
        self.publish(&w, &mut touched);
        dropped
    }

    /// Periodic upkeep: prune, sync the journal, and compact it into a
    /// snapshot once it has grown past `compact_after_bytes`.
    pub fn maintain(&self, now: UnixNanos, compact_after_bytes: u64) {
        self.prune(now);
        let mut w = self.lock();
        let big = w.store.as_ref().is_some_and(|s| s.journal_bytes() > compact_after_bytes);
        let result = if big { compact(&mut w) } else { w.store.as_mut().map_or(Ok(()), Store::sync) };
        if let Err(e) = result {
            w.persist_errors += 1;
            tracing::warn!(error = %e, "IP history: cannot write the state dir");
        }
    }

    /// Writes the whole table as a snapshot and starts an empty journal.
    pub fn compact(&self) -> Result<(), PersistError> {
        compact(&mut self.lock())
    }

    /// Journal writes that failed (the table in memory is right; a restart may lose those changes).
    pub fn persist_errors(&self) -> u64 {
        self.lock().persist_errors
    }

    fn persist(&self, w: &mut Writer, rows: &[Row]) {
        if rows.is_empty() {
            return;
        }
        if let Some(Err(e)) = w.store.as_mut().map(|s| s.append(rows)) {
            w.persist_errors += 1;
            tracing::warn!(error = %e, "IP history: journal write failed");
        }
    }

    fn publish(&self, w: &Writer, touched: &mut Vec<Key>) {
        touched.sort_unstable_by_key(|k| (shard(*k), *k));
        touched.dedup();
        for group in touched.chunk_by(|a, b| shard(*a) == shard(*b)) {
            let cell = &self.shards[shard(group[0])];
            let mut map = Map::clone(&cell.load());
            for k in group {
                match w.table.get(k) {
                    Some(v) => map.insert(*k, v.iter().map(|s| s.iv.clone()).collect()),
                    None => map.remove(k),
                };
            }
            cell.store(Arc::new(map));
        }
    }

    fn publish_all(&self) {
        let w = self.lock();
        let mut touched: Vec<Key> = w.table.keys().copied().collect();
        self.publish(&w, &mut touched);
    }
}

fn row(key: Key, s: &Slot) -> Row {
    Row {
        ip: ip_of(key),
        valid_from: s.iv.valid_from,
        valid_to: s.iv.valid_to,
        owner: (*s.iv.owner).clone(),
        seq: s.seq,
    }
}

fn compact(w: &mut Writer) -> Result<(), PersistError> {
    let rows: Vec<Row> = w.table.iter().flat_map(|(k, v)| v.iter().map(|s| row(*k, s))).collect();
    match w.store.as_mut() {
        Some(store) => store.compact(&rows),
        None => Ok(()),
    }
}

/// Later rows of the same (ip, valid_from) replace earlier ones: the journal
/// is a sequence of upserts over the snapshot.
fn load_rows(w: &mut Writer, rows: Vec<Row>) {
    let mut latest: HashMap<(Key, UnixNanos), Row> = HashMap::with_capacity(rows.len());
    for r in rows {
        w.next_seq = w.next_seq.max(r.seq + 1);
        latest.insert((key(r.ip), r.valid_from), r);
    }
    for ((k, _), r) in latest {
        let iv = Interval { valid_from: r.valid_from, valid_to: r.valid_to, owner: Arc::new(r.owner) };
        w.table.entry(k).or_default().push(Slot { iv, seq: r.seq });
    }
    for v in w.table.values_mut() {
        v.sort_by_key(|s| s.iv.valid_from);
    }
}

/// Gives `slot` the next sequence number and queues its row for the journal.
fn touch(next_seq: &mut u64, key: Key, slot: &mut Slot, rows: &mut Vec<Row>) {
    slot.seq = *next_seq;
    *next_seq += 1;
    rows.push(row(key, slot));
}

fn apply_one(w: &mut Writer, change: Change, touched: &mut Vec<Key>, rows: &mut Vec<Row>) {
    let Writer { table, next_seq, .. } = w;
    match change {
        Change::Assign { ip, at, owner } => {
            let k = key(ip);
            let v = table.entry(k).or_default();
            if let Some(last) = v.last_mut()
                && last.iv.owner.same_holder(&owner)
                && last.iv.valid_to.is_none_or(|t| at <= t)
            {
                // Still held (or held again right after a release seen too
                // early): one interval, with whatever the new report adds.
                let merged = last.iv.owner.merged(&owner);
                if merged != *last.iv.owner || last.iv.valid_to.is_some() {
                    last.iv.owner = Arc::new(merged);
                    last.iv.valid_to = None;
                    touch(next_seq, k, last, rows);
                    touched.push(k);
                }
                return;
            }
            // Reports older than the latest interval's start keep the order.
            let from = match v.last() {
                Some(l) if at <= l.iv.valid_from => l.iv.valid_from + 1,
                Some(_) | None => at,
            };
            if let Some(last) = v.last_mut()
                && last.iv.valid_to.is_none_or(|t| t > from)
            {
                last.iv.valid_to = Some(from);
                touch(next_seq, k, last, rows);
            }
            let mut slot = Slot { iv: Interval { valid_from: from, valid_to: None, owner }, seq: 0 };
            touch(next_seq, k, &mut slot, rows);
            v.push(slot);
            touched.push(k);
        }
        Change::Release { ip, at, holder } => {
            let k = key(ip);
            if let Some(last) = table.get_mut(&k).and_then(|v| v.last_mut())
                && last.iv.valid_to.is_none()
                && holder.is_none_or(|h| last.iv.owner.same_holder(&h))
            {
                last.iv.valid_to = Some(at.max(last.iv.valid_from));
                touch(next_seq, k, last, rows);
                touched.push(k);
            }
        }
        Change::ReleaseOwner { owner, at } => {
            for (k, v) in table.iter_mut() {
                if let Some(last) = v.last_mut()
                    && last.iv.valid_to.is_none()
                    && last.iv.owner.same_holder(&owner)
                {
                    last.iv.valid_to = Some(at.max(last.iv.valid_from));
                    touch(next_seq, *k, last, rows);
                    touched.push(*k);
                }
            }
        }
    }
}
