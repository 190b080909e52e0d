//! Hit, miss and eviction counts of the enricher's caches, exported as
//! OpenTelemetry counters (`tracelake.enricher.cache.*{cache=...}`).
//!
//! Lookups bump relaxed atomics owned by the cache; the exporter reads them
//! only when it collects, so the per-lookup cost is one uncontended add.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::notification::RemovalCause;

/// Counters of one cache.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    /// Removed to stay within the size bound: a sign the bound is too small.
    evicted: AtomicU64,
    /// Removed because the TTL ran out: the normal end of a tombstone.
    expired: AtomicU64,
}

/// A reading of [`CacheCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evicted: u64,
    pub expired: u64,
}

impl CacheCounters {
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a removal moka reports; explicit removals and replacements are not losses.
    pub fn removed(&self, cause: RemovalCause) {
        match cause {
            RemovalCause::Size => self.evicted.fetch_add(1, Ordering::Relaxed),
            RemovalCause::Expired => self.expired.fetch_add(1, Ordering::Relaxed),
            RemovalCause::Explicit | RemovalCause::Replaced => 0,
        };
    }

    /// Records a lookup's outcome and passes it through.
    pub fn track<T>(&self, found: Option<T>) -> Option<T> {
        if found.is_some() {
            self.hit()
        } else {
            self.miss()
        }
        found
    }

    pub fn read(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }
}

/// A moka eviction listener that counts into `counters`.
pub fn listener<K, V>(counters: &Arc<CacheCounters>) -> impl Fn(Arc<K>, V, RemovalCause) + Send + Sync + 'static {
    let c = Arc::clone(counters);
    move |_, _, cause| c.removed(cause)
}

/// Registers the counters of named caches with OpenTelemetry.
pub fn register(caches: &[(&'static str, Arc<CacheCounters>)]) {
    let meter = tracelake_telemetry::meter("enricher");
    type Pick = fn(&CacheStats) -> u64;
    let series: [(&'static str, &'static str, Pick); 4] = [
        ("tracelake.enricher.cache.hits", "Identity cache lookups answered from the cache", |s| s.hits),
        ("tracelake.enricher.cache.misses", "Identity cache lookups that had to resolve (or found nothing)", |s| {
            s.misses
        }),
        ("tracelake.enricher.cache.evicted", "Entries removed to stay within the cache's size bound", |s| s.evicted),
        ("tracelake.enricher.cache.expired", "Entries removed when their time to live ran out", |s| s.expired),
    ];
    for (name, desc, pick) in series {
        let caches: Vec<_> = caches.iter().map(|(n, c)| (*n, Arc::clone(c))).collect();
        tracelake_telemetry::observe_counters(&meter, name, desc, move |report| {
            for (cache, c) in &caches {
                report(pick(&c.read()), &[tracelake_telemetry::KeyValue::new("cache", *cache)]);
            }
        });
    }
}
