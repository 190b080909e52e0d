//! The lineage columns of a batch (`parent_exe`, `parent_cmdline`, `ancestor_pids`, `ancestor_exes`),
//! interned like the identity columns: every event of a process carries the same lineage, so a row appends
//! one key and each distinct lineage is checked for UTF-8, joined and copied once per batch. `finish`
//! gathers the columns with `take`; their types do not change.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ListBuilder, StringArray, StringBuilder, UInt32Array, UInt32Builder};
use arrow::error::ArrowError;
use tracelake_model::json::{Ancestor, Identity};

use super::columns::cmdline_into;
use super::dict_chunk::{KeyGroup, Values, empty_lists};
use super::identity::gather;
use crate::hash::{FingerprintIndex, address_fingerprint, mix, same_bytes};

#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(arena_len: usize, len: usize) -> Span {
        // A batch is bounded by rotate_bytes, far below 4 GiB.
        Span { start: arena_len as u32, len: len as u32 }
    }
}

#[derive(Clone, Copy, Debug)]
struct Known {
    pid: u32,
    /// The ancestor's bytes as the enricher gave them, to tell lineages apart.
    exe_raw: Span,
    args_raw: Span,
    /// Its exe as the column holds it (invalid UTF-8 as U+FFFD).
    exe: Span,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Both None when the process has no known parent.
    parent: Option<(Span, Span)>,
    first: u32,
    len: u32,
}

/// Where the lineage's strings live and how long they are: the process table hands out the same ones for
/// every event of a process. A hit is compared byte for byte before it is used.
fn fingerprint(ancestors: &[Option<Ancestor<'_>>]) -> u64 {
    ancestors.iter().map_while(Option::as_ref).fold(0x1319_8a2e_0370_7344u64, |h, a| {
        let parts = [Some(a.exe), Some(a.args)].into_iter();
        mix(address_fingerprint(parts, h), u64::from(a.pid))
    })
}

/// Each distinct lineage of a batch, once.
#[derive(Debug, Default)]
struct Lineages {
    raw: Vec<u8>,
    text: String,
    entries: Vec<Entry>,
    ancestors: Vec<Known>,
}

/// The lineage columns of the rows appended since the last `finish`.
#[derive(Debug, Default)]
pub(crate) struct LineageColumns {
    store: Lineages,
    index: FingerprintIndex,
    /// One per row: its lineage's entry.
    keys: Vec<u32>,
}

impl LineageColumns {
    /// Appends a row's lineage; returns the bytes it adds to the finished columns (the memory estimate).
    pub(crate) fn append(&mut self, id: &Identity<'_>) -> usize {
        let a = &id.ancestors;
        let e = self.index.find_or_add(fingerprint(a), &mut self.store, |s, e| s.same(e, a), |s| s.intern(a));
        self.keys.push(e);
        let known = id.ancestors.iter().map_while(Option::as_ref);
        id.ancestors[0].map_or(0, |p| p.exe.len() + p.args.len()) + known.map(|a| a.exe.len() + 8).sum::<usize>()
    }
}

impl Lineages {
    fn raw(&self, s: Span) -> &[u8] {
        let start = s.start as usize;
        self.raw.get(start..start + s.len as usize).unwrap_or_default()
    }

    fn text(&self, s: Span) -> &str {
        let start = s.start as usize;
        self.text.get(start..start + s.len as usize).unwrap_or_default()
    }

    /// Every row checks its lineage this way: one pass over the known ancestors beside the given ones, the
    /// lengths before the bytes.
    fn same(&self, e: u32, ancestors: &[Option<Ancestor<'_>>]) -> bool {
        let Some(entry) = self.entries.get(e as usize) else { return false };
        let (first, len) = (entry.first as usize, entry.len as usize);
        let Some(known) = self.ancestors.get(first..first + len) else { return false };
        // As many given as known: at least `len`, and the next one given (if any) None.
        if ancestors.len() < len || ancestors.get(len).is_some_and(Option::is_some) {
            return false;
        }
        known.iter().zip(ancestors).all(|(k, a)| {
            a.is_some_and(|a| {
                k.pid == a.pid
                    && k.exe_raw.len as usize == a.exe.len()
                    && k.args_raw.len as usize == a.args.len()
                    && same_bytes(self.raw(k.exe_raw), a.exe)
                    && same_bytes(self.raw(k.args_raw), a.args)
            })
        })
    }

    fn push_raw(&mut self, v: &[u8]) -> Span {
        let s = Span::of(self.raw.len(), v.len());
        self.raw.extend_from_slice(v);
        s
    }

    fn push_text(&mut self, v: &[u8]) -> Span {
        let start = self.text.len();
        self.text.push_str(&String::from_utf8_lossy(v));
        Span::of(start, self.text.len() - start)
    }

    fn intern(&mut self, ancestors: &[Option<Ancestor<'_>>]) -> u32 {
        let first = self.ancestors.len() as u32;
        for a in ancestors.iter().map_while(Option::as_ref) {
            let (exe_raw, args_raw) = (self.push_raw(a.exe), self.push_raw(a.args));
            let exe = self.push_text(a.exe);
            self.ancestors.push(Known { pid: a.pid, exe_raw, args_raw, exe });
        }
        let len = self.ancestors.len() as u32 - first;
        let parent = ancestors[0].map(|p| {
            let start = self.text.len();
            cmdline_into(&mut self.text, p.args);
            (self.ancestors[first as usize].exe, Span::of(start, self.text.len() - start))
        });
        self.entries.push(Entry { parent, first, len });
        self.entries.len() as u32 - 1
    }
}

impl LineageColumns {
    /// `parent_exe`, `parent_cmdline`, `ancestor_pids`, `ancestor_exes` of the rows appended so far; starts
    /// over empty, keeping the buffers' capacity. With `keyed`, all four as keys
    /// into their distinct values instead, for the Parquet writer (`dict_chunk`).
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<ArrayRef>,
        keyed: Option<&ArrayRef>,
    ) -> Result<Option<KeyGroup>, ArrowError> {
        let first = out.len();
        let rows = self.keys.len();
        let keys = UInt32Array::from(std::mem::replace(&mut self.keys, Vec::with_capacity(rows)));
        let st = &self.store;
        let parent = |pick: fn((Span, Span)) -> Span| -> StringArray {
            st.entries.iter().map(|e| e.parent.map(|p| st.text(pick(p)))).collect()
        };
        let (exes, cmdlines) = (parent(|p| p.0), parent(|p| p.1));
        let mut pids = ListBuilder::new(UInt32Builder::new());
        let mut names = ListBuilder::new(StringBuilder::new());
        for e in &st.entries {
            for k in &st.ancestors[e.first as usize..(e.first + e.len) as usize] {
                pids.values().append_value(k.pid);
                names.values().append_value(st.text(k.exe));
            }
            pids.append(true);
            names.append(true);
        }
        let (pids, names) = (pids.finish(), names.finish());
        // Keyed, the string columns and `ancestor_exes` are encoded from the keys: placeholders here.
        let lists = keyed.map(|_| (empty_lists(pids.data_type(), rows), empty_lists(names.data_type(), rows)));
        let values: [(&dyn Array, Option<&ArrayRef>); 4] = [
            (&exes, keyed),
            (&cmdlines, keyed),
            (&pids, lists.as_ref().map(|l| &l.0)),
            (&names, lists.as_ref().map(|l| &l.1)),
        ];
        let result = values.into_iter().try_for_each(|(v, placeholder)| {
            match placeholder {
                Some(placeholder) => out.push(Arc::clone(placeholder)),
                None => out.push(gather(v, &keys)?),
            }
            Ok(())
        });
        let s = &mut self.store;
        s.raw.clear();
        s.text.clear();
        s.entries.clear();
        s.ancestors.clear();
        self.index.clear();
        let columns = vec![
            (first, Values::Strings(exes)),
            (first + 1, Values::Strings(cmdlines)),
            (first + 2, Values::Lists(pids)),
            (first + 3, Values::Lists(names)),
        ];
        result.map(|()| keyed.map(|_| KeyGroup { keys, columns }))
    }
}

#[cfg(test)]
#[test]
fn a_lineage_is_the_same_only_with_every_ancestor() {
    let (a, b, c) = (
        Ancestor { pid: 7, exe: b"/bin/sh", args: b"sh\0-c\0x\0" },
        Ancestor { pid: 1, exe: b"/usr/bin/containerd-shim-runc-v2", args: b"shim\0" },
        Ancestor { pid: 0, exe: b"init", args: b"" },
    );
    let mut s = Lineages::default();
    let mut given: [Option<Ancestor<'_>>; 8] = [None; 8];
    (given[0], given[1]) = (Some(a), Some(b));
    let e = s.intern(&given);
    assert!(s.same(e, &given));
    let mut other = given;
    other[1] = None;
    assert!(!s.same(e, &other), "a prefix");
    other = given;
    other[2] = Some(c);
    assert!(!s.same(e, &other), "one more");
    other = given;
    other[1] = Some(Ancestor { pid: 2, ..b });
    assert!(!s.same(e, &other), "another pid");
    other[1] = Some(Ancestor { args: b"shin\0", ..b });
    assert!(!s.same(e, &other), "other bytes, same length");
    assert!(!s.same(e, &given[..1]), "fewer given than known");
    assert!(!s.same(e + 1, &given), "no such entry");
}
