//! The columns of the event's process: `cgroup_id`, `container`, `enrichment_partial`, `pid` ... `egid`,
//! `proc_start_ns`, `pidns`, `mntns`. Every event of a process carries the same ones, so a row appends one key
//! into the batch's distinct subjects (a 56-byte compare) instead of 13 values, and the Parquet writer encodes
//! the integer columns from the keys (`dict_chunk`: a dictionary of the values the file's rows use, sorted)
//! instead of one value at a time through the Arrow writer. The two booleans are gathered: Parquet has no
//! dictionary encoding for them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array, UInt64Array};
use arrow::buffer::{Buffer, MutableBuffer, ScalarBuffer};
use arrow::error::ArrowError;
use tracelake_model::Subject;

use super::dict_chunk::{KeyGroup, Values};
use super::identity::gather;
use crate::hash::{FingerprintIndex, mix};

/// The u32 columns, in schema order after the two booleans; `pidns`, `mntns` follow `proc_start_ns`.
pub(crate) const SUBJECT_U32: [&str; 7] = ["pid", "tid", "ppid", "uid", "euid", "gid", "egid"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    cgroup_id: u64,
    proc_start_ns: u64,
    /// `SUBJECT_U32`, then `pidns`, `mntns`.
    ids: [u32; 9],
    container: bool,
    partial: bool,
}

impl Entry {
    fn fingerprint(&self) -> u64 {
        let words = self.ids.chunks(2).map(|w| u64::from(w[0]) | (u64::from(*w.get(1).unwrap_or(&0)) << 32));
        let h = words.fold(mix(self.cgroup_id, self.proc_start_ns), mix);
        mix(h, u64::from(self.container) | (u64::from(self.partial) << 1))
    }
}

#[derive(Debug, Default)]
pub(crate) struct SubjectColumns {
    entries: Vec<Entry>,
    index: FingerprintIndex,
    last: u32,
    /// One per row: its subject's entry.
    keys: Vec<u32>,
}

impl SubjectColumns {
    pub(crate) fn append(&mut self, s: &Subject, container: bool, partial: bool) {
        let ids = [s.tgid, s.pid, s.ppid, s.uid, s.euid, s.gid, s.egid, s.pidns, s.mntns];
        let e = Entry { cgroup_id: s.cgroup_id, proc_start_ns: s.proc_start_ns, ids, container, partial };
        // Events come in bursts per process: the previous row's subject first, without a hash.
        let k = match self.entries.get(self.last as usize) {
            Some(last) if *last == e => self.last,
            _ => self.index.find_or_add(
                e.fingerprint(),
                &mut self.entries,
                |entries, k| entries[k as usize] == e,
                |entries| {
                    entries.push(e);
                    entries.len() as u32 - 1
                },
            ),
        };
        self.last = k;
        self.keys.push(k);
    }

    /// The 13 columns in schema order (with `keyed`, placeholders for the integer ones, which the group
    /// returned holds as keys into their distinct values); starts over empty.
    pub(crate) fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: bool) -> Result<Option<KeyGroup>, ArrowError> {
        let rows = self.keys.len();
        let keys = UInt32Array::from(std::mem::replace(&mut self.keys, Vec::with_capacity(rows)));
        let e = &self.entries;
        let u64s = |f: fn(&Entry) -> u64| -> ArrayRef { Arc::new(e.iter().map(f).collect::<UInt64Array>()) };
        let u32s = |i: usize| -> ArrayRef { Arc::new(e.iter().map(|e| e.ids[i]).collect::<UInt32Array>()) };
        let bools =
            |f: fn(&Entry) -> bool| -> ArrayRef { Arc::new(e.iter().map(|e| Some(f(e))).collect::<BooleanArray>()) };
        let mut values = vec![u64s(|e| e.cgroup_id), bools(|e| e.container), bools(|e| e.partial)];
        values.extend((0..7).map(u32s));
        values.extend([u64s(|e| e.proc_start_ns), u32s(7), u32s(8)]);
        // Zeros, never read (non-null, as the columns are): one buffer for every integer column.
        let zeros = keyed.then(|| Buffer::from(MutableBuffer::from_len_zeroed(rows * 8)));
        let first = out.len();
        let mut columns = Vec::new();
        let result = values.into_iter().enumerate().try_for_each(|(i, v)| {
            let placeholder: Option<ArrayRef> = match (&zeros, v.data_type()) {
                (Some(z), arrow::datatypes::DataType::UInt64) => {
                    Some(Arc::new(UInt64Array::new(ScalarBuffer::new(z.clone(), 0, rows), None)))
                }
                (Some(z), arrow::datatypes::DataType::UInt32) => {
                    Some(Arc::new(UInt32Array::new(ScalarBuffer::new(z.clone(), 0, rows), None)))
                }
                _ => None,
            };
            match placeholder {
                Some(p) => {
                    out.push(p);
                    columns.push((first + i, Values::Numbers(v)));
                }
                None => out.push(gather(&*v, &keys)?),
            }
            Ok(())
        });
        self.entries.clear();
        self.index.clear();
        self.last = 0;
        result.map(|()| keyed.then_some(KeyGroup { keys, columns }))
    }
}
