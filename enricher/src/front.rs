//! A thread-owned front for the per-event identity lookup.
//!
//! moka costs a few hundred nanoseconds per `get` (hashing, access
//! recording for its eviction policy); the enricher runs once per event on
//! the reader's thread, where that alone would cap a core well below the
//! event rate. A plain foldhash map owned by that thread answers with one
//! probe and two reference-count increments. moka stays the source of truth
//! (size bound, TTL, tombstones); the front only holds what moka answered,
//! rechecks answers that are incomplete, and is emptied when it reaches its
//! bound, which is cheaper than tracking recency per event.

use std::sync::Arc;

use crate::containerd::ContainerMeta;
use crate::identity::CgroupIdentity;
use crate::kube::PodInfo;

/// Entries before the front is emptied (a node runs a few hundred containers).
pub(crate) const MAX_ENTRIES: usize = 16_384;
/// An incomplete answer (runtime metadata not known yet, or a cgroup not
/// found) is asked for again after this long, in event time.
pub(crate) const RECHECK_NS: u64 = 100_000_000;

#[derive(Clone, Debug, Default)]
pub(crate) struct Slot {
    pub cgroup: Option<Arc<CgroupIdentity>>,
    pub meta: Option<Arc<ContainerMeta>>,
    pub pod: Option<Arc<PodInfo>>,
    /// Some source had no answer (yet): the events say so.
    pub partial: bool,
    /// The runtime's answer is in flight.
    pub pending: bool,
    /// Why the answer is partial.
    pub missing: Option<crate::unresolved::Reason>,
    /// Asked again after `recheck_ns`: partial answers, and cgroups not
    /// found. Complete answers never change (cgroup ids are not reused
    /// within a boot, nor are container ids).
    pub incomplete: bool,
    /// Event time after which an incomplete slot is refreshed.
    pub recheck_ns: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Front {
    slots: foldhash::HashMap<u64, Slot>,
}

impl Front {
    pub fn get(&self, cgroup_id: u64) -> Option<&Slot> {
        self.slots.get(&cgroup_id)
    }

    pub fn insert(&mut self, cgroup_id: u64, slot: Slot) {
        if self.slots.len() >= MAX_ENTRIES {
            self.slots.clear();
        }
        self.slots.insert(cgroup_id, slot);
    }
}
