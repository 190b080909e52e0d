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
