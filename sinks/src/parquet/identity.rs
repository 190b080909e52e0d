//! The identity columns of a batch, interned: every row of one container
//! carries the same ~20 strings (~300 bytes), so a row appends one key and
//! each distinct identity's strings are copied once per batch. The columns
//! are still plain Utf8 (`take` gathers them at `finish`, sized exactly),
//! so files, Kafka messages and SQL see the documented types; the lake sink's
//! own files are encoded from the keys instead (`dict_chunk`).

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, UInt32Array, new_null_array};
use arrow::compute::take;
use arrow::error::ArrowError;
use tracelake_model::json::Identity;

use super::dict_chunk::{KeyGroup, Values};
use crate::hash::{FingerprintIndex, address_fingerprint, mix, same_bytes};

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

/// A stamped entry's source (`Identity::stamp`), held alive until the batch is finished: while it is, no
/// other value can have its addresses, so equal parts are the same strings without reading them.
struct Held {
    parts: [usize; 6],
    _keep: Box<dyn Any + Send>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("parts", &self.parts).finish_non_exhaustive()
    }
}

/// `a == b` without the call to memcmp that comparing the arrays compiles to (1.5 % of `lake/write_steady`).
fn same_parts(a: &[usize; 6], b: &[usize; 6]) -> bool {
    a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// Where an entry goes when it is added.
type Store<'s> = (&'s mut String, &'s mut Vec<[Span; N]>, &'s mut Vec<Option<Held>>, &'s mut Vec<u32>);

fn add_entry(store: &mut Store<'_>, v: &[Option<&str>; N], held: Option<Held>) -> u32 {
    let (arena, entries, sources, sizes) = store;
    sources.push(held);
    sizes.push(v.iter().map(|s| s.map_or(0, str::len)).sum::<usize>() as u32);
    intern(arena, entries, v)
}

/// The identity columns of the rows appended since the last `finish`.
#[derive(Debug, Default)]
pub(crate) struct IdentityColumns {
    /// The strings of every distinct identity, each copied once.
    arena: String,
    entries: Vec<[Span; N]>,
    /// Per entry: its source, when its identity was stamped.
    sources: Vec<Option<Held>>,
    /// Per entry: the bytes of its strings.
    sizes: Vec<u32>,
    /// Unstamped identities, by where their strings are.
    index: FingerprintIndex,
    /// Stamped identities, by their sources.
    stamped: FingerprintIndex,
    /// One per row: its identity's entry.
    keys: Vec<u32>,
}

impl IdentityColumns {
    /// Appends a row's identity; returns the bytes its strings take in the
    /// finished columns (the memory estimate counts them per row, as
    /// the Utf8 columns hold them).
    pub(crate) fn append(&mut self, id: &Identity<'_>) -> usize {
        let mut store: Store<'_> = (&mut self.arena, &mut self.entries, &mut self.sources, &mut self.sizes);
        let e = match id.stamp {
            // Six addresses instead of ~20 strings: the lookup and the check were ~20 % of `lake/write_steady`.
            Some(stamp) => {
                let parts = stamp.0.parts();
                let fp = parts.iter().fold(0x5eed_5eed_5eed_5eed, |h, &p| mix(h, p as u64));
                self.stamped.find_or_add(
                    fp,
                    &mut store,
                    |(_, _, sources, _), e| sources[e as usize].as_ref().is_some_and(|h| same_parts(&h.parts, &parts)),
                    |store| add_entry(store, &id_values(id), Some(Held { parts, _keep: stamp.0.keep() })),
                )
            }
            None => {
                let v = id_values(id);
                let fp = address_fingerprint(v.iter().map(|s| s.map(str::as_bytes)), 0);
                self.index.find_or_add(
                    fp,
                    &mut store,
                    |(arena, entries, _, _), e| same(arena, &entries[e as usize], &v),
                    |store| add_entry(store, &v, None),
                )
            }
        };
        self.keys.push(e);
        self.sizes[e as usize] as usize
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
        self.sources.clear();
        self.sizes.clear();
        self.index.clear();
        self.stamped.clear();
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
#[allow(clippy::unwrap_used, reason = "test code")]
mod stamp_tests {
    use tracelake_model::json::{Source, Stamp};

    use super::*;

    /// A source as the enricher's `Resolved` is one: fixed parts, and a shared value `keep` holds.
    struct Fixed(usize, Arc<()>);

    impl Source for Fixed {
        fn parts(&self) -> [usize; 6] {
            [self.0, 0, 0, 0, 0, 0]
        }
        fn keep(&self) -> Box<dyn Any + Send> {
            Box::new(self.1.clone())
        }
    }

    #[test]
    fn stamped_rows_read_back_their_own_strings_and_sources_are_let_go_at_finish() {
        let (a, b) = (Fixed(1, Arc::new(())), Fixed(2, Arc::new(())));
        let id = |pod, stamp| Identity { pod: Some(pod), namespace: Some("ns"), stamp, ..Identity::default() };
        let rows = [
            id("a", Some(Stamp(&a))),
            id("b", Some(Stamp(&b))),
            id("a", Some(Stamp(&a))),
            id("a", None),
            id("b", Some(Stamp(&b))),
            id("c", None),
        ];
        let mut cols = IdentityColumns::default();
        for r in &rows {
            assert_eq!(cols.append(r), 3);
        }
        let (entries, held) = (cols.entries.len(), (Arc::strong_count(&a.1), Arc::strong_count(&b.1)));
        let mut out = Vec::new();
        cols.finish(&mut out, None).unwrap();
        let pods = out[1].as_any().downcast_ref::<StringArray>().unwrap();
        let want: Vec<Option<&str>> = rows.iter().map(|r| r.pod).collect();
        assert_eq!(pods.iter().collect::<Vec<_>>(), want);
        assert_eq!(entries, 4, "one entry per stamp, one per unstamped identity");
        assert_eq!(held, (2, 2), "held once each");
        assert_eq!((Arc::strong_count(&a.1), Arc::strong_count(&b.1)), (1, 1), "let go at finish");
    }
}
