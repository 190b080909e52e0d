//! String columns as a key per row into the batch's distinct values, each kept once: `node`, `kind`, `comm`,
//! `exe`, and the classes' command lines, cwd, paths and addresses. A row costs a compare and a push (a hash
//! when it differs from the row before) instead of a UTF-8 check and a copy into a string builder, and the
//! Parquet writer encodes the column from the keys (`dict_chunk`) instead of hashing every value into its
//! dictionary again.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryBuilder, ListBuilder, StringArray, StringBuilder, UInt32Array};
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;

use super::columns::{cmdline_into, finish, lossy_into, split_args};
use super::dict_chunk::{KeyGroup, Values, empty_lists};
use super::identity::gather;
use crate::hash::{FingerprintIndex, content_fingerprint};

/// The rows' keys into the distinct values.
#[derive(Debug, Default)]
struct Keys {
    distinct: Distinct,
    index: FingerprintIndex,
    last: u32,
    keys: Vec<u32>,
}

/// The distinct values of a column (None: a null row), in one buffer: a column with a new value on most rows
/// (file paths, command lines) costs no allocation per value.
#[derive(Debug, Default)]
struct Distinct {
    data: Vec<u8>,
    /// Per value: its bytes' range in `data`.
    spans: Vec<Option<(usize, usize)>>,
}

impl Distinct {
    fn get(&self, k: u32) -> Option<&[u8]> {
        let (a, b) = self.spans.get(k as usize).copied().flatten()?;
        Some(self.data.get(a..b).unwrap_or_default())
    }

    fn push(&mut self, v: Option<&[u8]>) -> u32 {
        let span = v.map(|v| {
            let start = self.data.len();
            self.data.extend_from_slice(v);
            (start, self.data.len())
        });
        self.spans.push(span);
        self.spans.len() as u32 - 1
    }

    fn len(&self) -> usize {
        self.spans.len()
    }
}

impl Keys {
    /// Appends a row; returns its key and whether the value is new to the batch.
    fn append(&mut self, v: Option<&[u8]>) -> (u32, bool) {
        // Most rows repeat the previous row's value: one compare, no hash.
        if (self.last as usize) < self.distinct.len() && self.distinct.get(self.last) == v {
            self.keys.push(self.last);
            return (self.last, false);
        }
        let mut new = false;
        let k = self.index.find_or_add(
            v.map_or(0x6e75_6c6c, content_fingerprint),
            &mut self.distinct,
            |d, e| d.get(e) == v,
            |d| {
                new = true;
                d.push(v)
            },
        );
        self.last = k;
        self.keys.push(k);
        (k, new)
    }

    /// The rows' keys; the distinct values stay until `clear`.
    fn take_keys(&mut self) -> UInt32Array {
        let rows = self.keys.len();
        UInt32Array::from(std::mem::replace(&mut self.keys, Vec::with_capacity(rows)))
    }

    /// Starts over empty, keeping the buffers' capacity.
    fn clear(&mut self) {
        self.distinct.data.clear();
        self.distinct.spans.clear();
        self.index.clear();
        self.last = 0;
    }

    /// The column (invalid UTF-8 as U+FFFD), or with `keyed` its placeholder and the keys; starts over empty.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        let column = out.len();
        let keys = self.take_keys();
        let d = &self.distinct;
        let values: StringArray = (0..d.len() as u32).map(|k| d.get(k).map(String::from_utf8_lossy)).collect();
        self.clear();
        let Some(placeholder) = keyed else {
            out.push(gather(&values, &keys)?);
            return Ok(None);
        };
        out.push(Arc::clone(placeholder));
        Ok(Some(KeyGroup { keys, columns: vec![(column, Values::Strings(values))] }))
    }
}

/// A string column (`node`, `kind`, a connection's family and addresses).
#[derive(Debug, Default)]
pub(crate) struct KeyedStrings(Keys);

impl KeyedStrings {
    pub(crate) fn append(&mut self, v: &str) {
        self.0.append(Some(v.as_bytes()));
    }

    pub(crate) fn append_option(&mut self, v: Option<&str>) {
        self.0.append(v.map(str::as_bytes));
    }
}

impl KeyedColumn for KeyedStrings {
    /// The column of the rows appended so far, or with `keyed` its placeholder and the keys.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
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
    pub(crate) fn fields(name: &str, f: &mut Vec<Field>) {
        f.push(Field::new(name, DataType::Utf8, true));
        f.push(Field::new(format!("{name}_raw"), DataType::Binary, true));
    }

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
}

impl KeyedColumn for KeyedBytes {
    /// `<name>` (or with `keyed` its placeholder and the keys) and `<name>_raw`.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        let text = self.text.finish(out, keyed);
        self.utf8.clear();
        finish(&mut self.raw, out);
        text
    }
}

/// A process's argv (NUL-separated, as the sensor reads it) as three columns keyed by its bytes: `cmdline`
/// (the arguments joined by spaces), `args` (the list) and `args_raw` (the exact bytes, only when they are
/// not UTF-8). A workload runs the same few command lines over and over: each is checked and split once per
/// batch, not once per row, and the Parquet writer encodes `cmdline` and `args` from the keys.
#[derive(Debug, Default)]
pub(crate) struct KeyedArgs {
    argv: Keys,
    /// Per distinct argv: whether it is UTF-8.
    utf8: Vec<bool>,
    raw: BinaryBuilder,
}

impl KeyedArgs {
    /// Returns the bytes added, for the memory estimate (as the columns held them unkeyed: three copies).
    pub(crate) fn append(&mut self, v: Option<&[u8]>) -> usize {
        let (k, new) = self.argv.append(v);
        if new {
            self.utf8.push(v.is_none_or(|v| std::str::from_utf8(v).is_ok()));
        }
        match v {
            Some(v) if !self.utf8.get(k as usize).copied().unwrap_or(true) => self.raw.append_value(v),
            _ => self.raw.append_null(),
        }
        3 * v.map_or(0, <[u8]>::len)
    }
}

impl KeyedColumn for KeyedArgs {
    /// `cmdline`, `args` (or with `keyed` their placeholders and the keys) and `args_raw`; starts over empty.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        let first = out.len();
        let keys = self.argv.take_keys();
        let d = &self.argv.distinct;
        let mut cmdline = StringBuilder::with_capacity(d.len(), d.data.len());
        let mut args = ListBuilder::with_capacity(StringBuilder::with_capacity(d.len(), d.data.len()), d.len());
        for k in 0..d.len() as u32 {
            let Some(raw) = d.get(k) else {
                cmdline.append_null();
                args.append(false);
                continue;
            };
            cmdline_into(&mut cmdline, raw);
            for arg in split_args(raw) {
                let item = args.values();
                lossy_into(item, arg);
                item.append_value("");
            }
            cmdline.append_value("");
            args.append(true);
        }
        let (cmdline, args) = (cmdline.finish(), args.finish());
        self.argv.clear();
        self.utf8.clear();
        let pushed = match keyed {
            Some(placeholder) => {
                out.push(Arc::clone(placeholder));
                out.push(empty_lists(args.data_type(), keys.len()));
                Ok(())
            }
            None => gather(&cmdline, &keys).and_then(|c| {
                out.push(c);
                out.push(gather(&args, &keys)?);
                Ok(())
            }),
        };
        finish(&mut self.raw, out);
        pushed?;
        let columns = vec![(first, Values::Strings(cmdline)), (first + 1, Values::Lists(args))];
        Ok(keyed.map(|_| KeyGroup { keys, columns }))
    }
}

/// A column (or columns) held as keys into distinct values until `finish`.
pub(crate) trait KeyedColumn {
    /// Its columns (with `keyed`, placeholders, and the key group the writer encodes them from); starts over
    /// empty.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError>;
}

/// Finishes keyed columns one after another, collecting their key groups (with `keyed`) and the first error:
/// every column is emptied even after one fails, so later batches stay aligned.
pub(crate) struct Groups<'p> {
    keyed: Option<&'p ArrayRef>,
    groups: Vec<KeyGroup>,
    error: Option<ArrowError>,
}

impl<'p> Groups<'p> {
    pub(crate) fn new(keyed: Option<&'p ArrayRef>) -> Self {
        Groups { keyed, groups: Vec::new(), error: None }
    }

    /// Finishes `column` into `out`, keeping its key group.
    pub(crate) fn finish(&mut self, column: &mut impl KeyedColumn, out: &mut Vec<ArrayRef>) {
        let r = column.finish(out, self.keyed);
        self.add(r);
    }

    fn add(&mut self, r: Result<Option<KeyGroup>, ArrowError>) {
        match r {
            Ok(g) => self.groups.extend(g),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    pub(crate) fn into_result(self) -> Result<Vec<KeyGroup>, ArrowError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.groups),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, RecordBatch};

    use super::{KeyedBytes, KeyedColumn, KeyedStrings};
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
