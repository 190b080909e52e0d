//! The identity columns of a batch, interned: every row of one container
//! carries the same ~20 strings (~300 bytes), so a row appends one key and
//! each distinct identity's strings are copied once per batch. The columns
//! are still plain Utf8 (`take` gathers them at `finish`, sized exactly),
//! so files, Kafka messages and SQL see the documented types; the lake sink's
//! own files are encoded from the keys instead (`dict_chunk`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, UInt32Array, new_null_array};
use arrow::compute::take;
use arrow::error::ArrowError;
use tracelake_model::json::Identity;

use super::dict_chunk::{KeyGroup, Values};
use crate::hash::{FingerprintIndex, address_fingerprint};

/// Identity string columns, in schema order. The peer columns are set on
/// network events only (null elsewhere costs next to nothing in Parquet).
pub(crate) const ID_COLUMNS: [&str; 20] = [
    "namespace",
    "pod",
    "pod_uid",
    "workload_kind",
    "workload",
    "workload_source",
    "container_id",
    "container_name",
    "image",
    "image_digest",
    "container_runtime",
    "containerd_namespace",
    "cgroup",
    "pod_ip",
    "peer_namespace",
    "peer_pod",
    "peer_workload_kind",
    "peer_workload",
    "peer_container_id",
    "peer_service",
];

const N: usize = ID_COLUMNS.len();

fn id_values<'a>(id: &Identity<'a>) -> [Option<&'a str>; N] {
    [
        id.namespace,
        id.pod,
        id.pod_uid,
        id.workload_kind,
        id.workload,
        id.workload_source,
        id.container_id,
        id.container_name,
        id.image,
        id.image_digest,
        id.container_runtime,
        id.containerd_namespace,
        id.cgroup,
        id.pod_ip,
        id.peer_namespace,
        id.peer_pod,
        id.peer_workload_kind,
        id.peer_workload,
        id.peer_container_id,
        id.peer_service,
    ]
}

/// Where one value sits in the arena; `NULL` when the column is null.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    len: u32,
}

const NULL: Span = Span { start: u32::MAX, len: 0 };

fn get(arena: &str, span: Span) -> &str {
    let start = span.start as usize;
    arena.get(start..start + span.len as usize).unwrap_or_default()
}

fn same(arena: &str, entry: &[Span; N], v: &[Option<&str>; N]) -> bool {
    // Every row checks its identity this way: the lengths first, in one pass, then the bytes in words rather
    // than a call to memcmp per string (no throughput change could be measured; it is 7 % of the profile).
    let lengths = entry.iter().zip(v).all(|(span, s)| match s {
        Some(s) => span.start != NULL.start && span.len as usize == s.len(),
        None => span.start == NULL.start,
    });
    lengths
        && entry.iter().zip(v).all(|(span, s)| s.is_none_or(|s| same_bytes(get(arena, *span).as_bytes(), s.as_bytes())))
}

/// `a == b` for slices of equal length, a word at a time, without a call: the tail of a string of 8 bytes or
/// more is its last word (overlapping), a shorter one is compared byte by byte.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    let word =
        |s: &[u8], at: usize| s.get(at..at + 8).map_or(0, |w| u64::from_ne_bytes(w.try_into().unwrap_or_default()));
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    (0..n / 8).all(|i| word(a, 8 * i) == word(b, 8 * i)) && word(a, n - 8) == word(b, n - 8)
}

fn intern(arena: &mut String, entries: &mut Vec<[Span; N]>, v: &[Option<&str>; N]) -> u32 {
    let mut spans = [NULL; N];
    for (span, s) in spans.iter_mut().zip(v) {
        if let Some(s) = s {
            // A batch is bounded by rotate_bytes, far below 4 GiB.
            *span = Span { start: arena.len() as u32, len: s.len() as u32 };
            arena.push_str(s);
        }
    }
    entries.push(spans);
    entries.len() as u32 - 1
}

/// The identity columns of the rows appended since the last `finish`.
#[derive(Debug, Default)]
pub(crate) struct IdentityColumns {
    /// The strings of every distinct identity, each copied once.
    arena: String,
    entries: Vec<[Span; N]>,
    index: FingerprintIndex,
    /// One per row: its identity's entry.
    keys: Vec<u32>,
}

impl IdentityColumns {
    /// Appends a row's identity; returns the bytes its strings take in the
    /// finished columns (the memory estimate counts them per row, as
    /// the Utf8 columns hold them).
    pub(crate) fn append(&mut self, id: &Identity<'_>) -> usize {
        let v = id_values(id);
        let fp = address_fingerprint(v.iter().map(|s| s.map(str::as_bytes)), 0);
        let mut store = (&mut self.arena, &mut self.entries);
        let e = self.index.find_or_add(
            fp,
            &mut store,
            |(arena, entries), e| same(arena, &entries[e as usize], &v),
            |(arena, entries)| intern(arena, entries, &v),
        );
        self.keys.push(e);
        v.iter().map(|s| s.map_or(0, str::len)).sum()
    }

    /// The columns of the rows appended so far, in schema order; starts
    /// over empty (keeping the buffers' capacity for the next batch). With `keyed`, also the columns as keys
    /// into their distinct values, for the Parquet writer (`dict_chunk`).
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<ArrayRef>,
        keyed: Option<&ArrayRef>,
    ) -> Result<Option<KeyGroup>, ArrowError> {
        let rows = self.keys.len();
        let first = out.len();
        // The next batch likely has as many rows: no growth from empty.
        let keys = UInt32Array::from(std::mem::replace(&mut self.keys, Vec::with_capacity(rows)));
        let mut columns = Vec::with_capacity(if keyed.is_some() { N } else { 0 });
        let result = (0..N).try_for_each(|c| {
            let values: StringArray =
                self.entries.iter().map(|e| (e[c].start != NULL.start).then(|| get(&self.arena, e[c]))).collect();
            match keyed {
                Some(placeholder) => {
                    out.push(Arc::clone(placeholder));
                    columns.push((first + c, Values::Strings(values)));
                }
                None => out.push(gather(&values, &keys)?),
            }
            Ok(())
        });
        self.arena.clear();
        self.entries.clear();
        self.index.clear();
        result.map(|()| keyed.map(|_| KeyGroup { keys, columns }))
    }
}

/// `values[keys[row]]` for every row; a column no row has a value in is made null without gathering.
pub(crate) fn gather(values: &dyn Array, keys: &UInt32Array) -> Result<ArrayRef, ArrowError> {
    if values.null_count() == values.len() {
        return Ok(new_null_array(values.data_type(), keys.len()));
    }
    take(values, keys, None)
}

#[cfg(test)]
#[test]
fn same_bytes_sees_a_difference_anywhere() {
    for n in 0..40usize {
        let a: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
        assert!(same_bytes(&a, &a.clone()), "{n}");
        for at in 0..n {
            let mut b = a.clone();
            b[at] ^= 0x40;
            assert!(!same_bytes(&a, &b), "{n} bytes, differing at {at}");
        }
    }
}
