//! Hash maps keyed by a u64 that is a hash already (a fingerprint, an FNV key): hashing it again would only
//! cost time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Passes a pre-mixed u64 key through.
#[derive(Default)]
pub(crate) struct Premixed(u64);

impl Hasher for Premixed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A map from pre-mixed u64 keys.
pub(crate) type PremixedMap<V> = HashMap<u64, V, BuildHasherDefault<Premixed>>;

/// Finds the entry of a fingerprint (the previous row's first: events come in bursts per process), for the
/// per-batch interners of the lake rows and the agent's records.
#[derive(Debug, Default)]
pub(crate) struct FingerprintIndex {
    index: PremixedMap<u32>,
    last: Option<(u64, u32)>,
}

impl FingerprintIndex {
    /// The entry of `fp` in `store` when `same` confirms it holds these values (a fingerprint says where
    /// strings live, not what they say), else the one `add` makes there.
    pub(crate) fn find_or_add<S: ?Sized>(
        &mut self,
        fp: u64,
        store: &mut S,
        same: impl FnOnce(&S, u32) -> bool,
        add: impl FnOnce(&mut S) -> u32,
    ) -> u32 {
        let found = match self.last {
            Some((f, e)) if f == fp => Some(e),
            _ => self.index.get(&fp).copied(),
        };
        let e = match found {
            Some(e) if same(store, e) => e,
            _ => {
                let e = add(store);
                self.index.insert(fp, e);
                e
            }
        };
        self.last = Some((fp, e));
        e
    }

    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.last = None;
    }
}
