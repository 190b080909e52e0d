//! Columns with few distinct values per batch (`node`, `kind`, `comm`, `exe`): a key per row and each value
//! kept once, so a row costs a compare and a push instead of a UTF-8 check and a copy into a string builder,
//! and the Parquet writer encodes the column from the keys (`dict_chunk`).

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, StringArray, UInt32Array};
use arrow::error::ArrowError;

use super::columns::finish;
use super::dict_chunk::{KeyGroup, Values};
use super::identity::gather;
use crate::hash::{FingerprintIndex, content_fingerprint};

/// The rows' keys into the distinct values (None: a null row).
#[derive(Debug, Default)]
struct Keys {
    values: Vec<Option<Box<[u8]>>>,
    index: FingerprintIndex,
    last: u32,
    keys: Vec<u32>,
}

impl Keys {
    /// Appends a row; returns its key and whether the value is new to the batch.
    fn append(&mut self, v: Option<&[u8]>) -> (u32, bool) {
        // Most rows repeat the previous row's value: one compare, no hash.
        if let Some(last) = self.values.get(self.last as usize)
            && last.as_deref() == v
        {
            self.keys.push(self.last);
            return (self.last, false);
        }
        let mut new = false;
        let k = self.index.find_or_add(
            v.map_or(0x6e75_6c6c, content_fingerprint),
            &mut self.values,
            |values, e| values[e as usize].as_deref() == v,
            |values| {
                new = true;
                values.push(v.map(Into::into));
                values.len() as u32 - 1
            },
        );
        self.last = k;
        self.keys.push(k);
        (k, new)
    }

    /// The column (invalid UTF-8 as U+FFFD), or with `keyed` its placeholder and the keys; starts over empty.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        let column = out.len();
        let rows = self.keys.len();
        let keys = UInt32Array::from(std::mem::replace(&mut self.keys, Vec::with_capacity(rows)));
        let values: StringArray = self.values.iter().map(|v| v.as_deref().map(String::from_utf8_lossy)).collect();
        self.values.clear();
        self.index.clear();
        self.last = 0;
        let Some(placeholder) = keyed else {
            out.push(gather(&values, &keys)?);
            return Ok(None);
        };
        out.push(Arc::clone(placeholder));
        Ok(Some(KeyGroup { keys, columns: vec![(column, Values::Strings(values))] }))
    }
}

/// A required string column (`node`, `kind`).
#[derive(Debug, Default)]
pub(crate) struct KeyedStrings(Keys);

impl KeyedStrings {
    pub(crate) fn append(&mut self, v: &str) {
        self.0.append(Some(v.as_bytes()));
    }

    /// The column of the rows appended so far, or with `keyed` its placeholder and the keys.
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<ArrayRef>,
        keyed: Option<&ArrayRef>,
    ) -> Result<Option<KeyGroup>, ArrowError> {
        self.0.finish(out, keyed)
    }
}

/// A byte string kept losslessly, as `columns::Bytes` keeps it (`<name>` as UTF-8, `<name>_raw` the exact
/// bytes only when they are not UTF-8), with `<name>` keyed: `comm` and `exe`, the same on every event of a
/// process.
#[derive(Debug, Default)]
pub(crate) struct KeyedBytes {
    text: Keys,
    /// Per distinct value: whether it is UTF-8.
    utf8: Vec<bool>,
    raw: BinaryBuilder,
}

impl KeyedBytes {
    /// Returns the bytes added, for the memory estimate.
    pub(crate) fn append(&mut self, v: Option<&[u8]>) -> usize {
        let (k, new) = self.text.append(v);
        if new {
            self.utf8.push(v.is_none_or(|v| std::str::from_utf8(v).is_ok()));
        }
        match v {
            Some(v) if !self.utf8.get(k as usize).copied().unwrap_or(true) => {
                self.raw.append_value(v);
                2 * v.len()
            }
            v => {
                self.raw.append_null();
                v.map_or(0, <[u8]>::len)
            }
        }
    }

    /// `<name>` (or with `keyed` its placeholder and the keys) and `<name>_raw`.
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<ArrayRef>,
        keyed: Option<&ArrayRef>,
    ) -> Result<Option<KeyGroup>, ArrowError> {
        let text = self.text.finish(out, keyed);
        self.utf8.clear();
        finish(&mut self.raw, out);
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, RecordBatch};

    use super::{KeyedBytes, KeyedStrings};
    use crate::parquet::dict_chunk::{Dictionaries, placeholder};

    #[test]
    fn rows_read_back_in_order() {
        let mut k = KeyedStrings::default();
        // Runs, and returns to earlier values.
        let input: Vec<String> = (0..500u32).map(|i| format!("v{}", (i / 3) % 40 + (i % 7 == 0) as u32)).collect();
        for (round, expect) in [input.clone(), input[..10].to_vec()].iter().enumerate() {
            // Gathered at `finish`, and keyed (a placeholder, gathered by `materialize`).
            for keyed in [false, true] {
                for v in expect {
                    k.append(v);
                }
                let mut out = Vec::new();
                let group = k.finish(&mut out, keyed.then(|| placeholder(expect.len())).as_ref()).unwrap();
                let batch = RecordBatch::try_from_iter([("v", Arc::clone(&out[0]))]).unwrap();
                let batch = match group {
                    Some(g) => {
                        let distinct = expect.iter().collect::<std::collections::HashSet<_>>().len();
                        assert_eq!(g.columns[0].1.len(), distinct, "round {round}");
                        Dictionaries { groups: vec![g], ids: Vec::new() }.materialize(&batch, 0)
                    }
                    None => batch,
                };
                let col = batch.column(0).as_string::<i32>();
                let got: Vec<&str> = (0..col.len()).map(|r| col.value(r)).collect();
                assert_eq!(got, expect.iter().map(String::as_str).collect::<Vec<_>>(), "round {round}, {keyed}");
            }
        }
    }

    #[test]
    fn bytes_keep_invalid_utf8_and_nulls_per_row() {
        let mut k = KeyedBytes::default();
        let input: Vec<Option<&[u8]>> =
            vec![Some(b"sh"), Some(b"sh"), None, Some(b"\xffsh"), Some(b"sh"), None, Some(b"\xffsh"), Some(b"")];
        for keyed in [false, true] {
            for v in &input {
                k.append(*v);
            }
            let mut out = Vec::new();
            let group = k.finish(&mut out, keyed.then(|| placeholder(input.len())).as_ref()).unwrap();
            let columns = [("v", Arc::clone(&out[0]), true), ("v_raw", Arc::clone(&out[1]), true)];
            let batch = RecordBatch::try_from_iter_with_nullable(columns).unwrap();
            let batch = match group {
                Some(g) => Dictionaries { groups: vec![g], ids: Vec::new() }.materialize(&batch, 0),
                None => batch,
            };
            let (text, raw) = (batch.column(0).as_string::<i32>(), batch.column(1).as_binary::<i32>());
            let got: Vec<(Option<&str>, Option<&[u8]>)> = (0..input.len())
                .map(|r| (text.is_valid(r).then(|| text.value(r)), raw.is_valid(r).then(|| raw.value(r))))
                .collect();
            let b = |v: &'static [u8]| Some(v);
            let want = vec![
                (Some("sh"), None),
                (Some("sh"), None),
                (None, None),
                (Some("\u{fffd}sh"), b(b"\xffsh")),
                (Some("sh"), None),
                (None, None),
                (Some("\u{fffd}sh"), b(b"\xffsh")),
                (Some(""), None),
            ];
            assert_eq!(got, want, "{keyed}");
        }
    }
}
