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

/// `a == b`, without a call for strings of up to 16 bytes (two overlapping words or half-words). The interners compare every row's strings with
/// the ones they hold, most often equal: memcmp's call and dispatch cost more than the compare (identity
/// checks were 7 % of `lake/write_steady`; memcmp 6 % of the lake's instructions, BENCHMARKS.md).
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    let word =
        |s: &[u8], at: usize| s.get(at..at + 8).map_or(0, |w| u64::from_ne_bytes(w.try_into().unwrap_or_default()));
    let half =
        |s: &[u8], at: usize| s.get(at..at + 4).map_or(0, |w| u32::from_ne_bytes(w.try_into().unwrap_or_default()));
    match n {
        0 => true,
        // The first, middle and last byte are all of them.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        // Two overlapping halves (`/bin/sh`, `shim`).
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        // Two overlapping words (`worker-node-07`, an IPv6 key).
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        // Longer (a command line, a path): memcmp's vector loop pays for its call.
        _ => a == b,
    }
}

/// One step of the fingerprints below.
pub(crate) fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
}

/// Where the strings live and how long they are, not what they say: the enricher and the process table hand
/// out the same cached strings for every event of a container or process, so this finds an entry without
/// reading them. A hit must be compared byte for byte before it is used (freed memory can hold other strings
/// later): `FingerprintIndex::find_or_add` takes that comparison.
pub(crate) fn address_fingerprint<'a>(parts: impl Iterator<Item = Option<&'a [u8]>>, seed: u64) -> u64 {
    // One step per string (its length in the high bits, where addresses have none), in two lanes: half the
    // chain of dependent multiplies an identity's 20 strings made (no throughput change could be measured).
    let (mut even, mut odd) = (0x243f_6a88_85a3_08d3u64 ^ seed, 0x1319_8a2e_0370_7344u64);
    for (i, s) in parts.enumerate() {
        let v = s.map_or(u64::MAX, |s| (s.as_ptr() as u64) ^ (s.len() as u64).rotate_right(16));
        if i % 2 == 0 {
            even = mix(even, v);
        } else {
            odd = mix(odd, v);
        }
    }
    mix(even, odd)
}

/// A fingerprint of what the bytes say, for short strings found by content (`comm`, `exe`, `node`, `kind` on
/// a miss of the previous row's value): a word at a time rather than FNV-1a's byte at a time.
pub(crate) fn content_fingerprint(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let h = words.by_ref().fold(0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64, |h, w| {
        mix(h, u64::from_le_bytes(w.try_into().unwrap_or_default()))
    });
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    mix(h, u64::from_le_bytes(tail))
}

#[cfg(test)]
#[test]
fn same_bytes_sees_a_difference_anywhere() {
    for n in 0..80usize {
        let a: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
        assert!(same_bytes(&a, &a.clone()), "{n}");
        assert!(n == 0 || !same_bytes(&a, &a[..n - 1]), "{n}: a prefix");
        for at in 0..n {
            let mut b = a.clone();
            b[at] ^= 0x40;
            assert!(!same_bytes(&a, &b), "{n} bytes, differing at {at}");
        }
    }
}
