//! String columns as a key per row into the batch's distinct values, each kept once: `node`, `kind`, `comm`,
//! `exe`, and the classes' command lines, cwd, paths and addresses. A row costs a compare and a push (a hash
//! when it differs from the row before) instead of a UTF-8 check and a copy into a string builder, and the
//! Parquet writer encodes the column from the keys (`dict_chunk`) instead of hashing every value into its
//! dictionary again.

use std::io::Write as _;
use std::net::Ipv6Addr;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, ListBuilder, StringArray, StringBuilder, UInt32Array, new_null_array,
};
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;

use super::columns::{cmdline_into, lossy_into, split_args};
use super::dict_chunk::{KeyGroup, Values, empty_lists};
use super::identity::gather;
use crate::hash::{FingerprintIndex, content_fingerprint, same_bytes};

/// The rows' keys into the distinct values.
#[derive(Debug, Default)]
struct Keys {
    distinct: Distinct,
    index: FingerprintIndex,
    last: u32,
    /// Where the last row's value lives when it was a `&'static str` (`append_static`).
    last_static: Option<(usize, usize)>,
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
        self.last_static = None;
        // Most rows repeat the previous row's value: one compare, no hash.
        if (self.last as usize) < self.distinct.len() {
            let same = match (self.distinct.get(self.last), v) {
                (Some(a), Some(b)) => same_bytes(a, b),
                (a, b) => a.is_none() && b.is_none(),
            };
            if same {
                self.keys.push(self.last);
                return (self.last, false);
            }
        }
        let mut new = false;
        let k = self.index.find_or_add(
            v.map_or(0x6e75_6c6c, content_fingerprint),
            &mut self.distinct,
            |d, e| match (d.get(e), v) {
                (Some(a), Some(b)) => same_bytes(a, b),
                (a, b) => a.is_none() && b.is_none(),
            },
            |d| {
                new = true;
                d.push(v)
            },
        );
        self.last = k;
        self.keys.push(k);
        (k, new)
    }

    /// As `append`, for a value that lives as long as the program (a kind's name, an address family): the
    /// same address and length as the last row's is the same value, as nothing can change or free it.
    fn append_static(&mut self, v: &'static str) {
        let at = Some((v.as_ptr() as usize, v.len()));
        if self.last_static == at && (self.last as usize) < self.distinct.len() {
            self.keys.push(self.last);
            return;
        }
        self.append(Some(v.as_bytes()));
        self.last_static = at;
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
        self.last_static = None;
    }

    /// The column (invalid UTF-8 as U+FFFD), or with `keyed` its placeholder and the keys; starts over empty.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        self.finish_as(out, keyed, |v| String::from_utf8_lossy(v).into_owned())
    }

    /// As `finish`, each distinct value shown as `show` makes it.
    fn finish_as(
        &mut self,
        out: &mut Vec<ArrayRef>,
        keyed: Option<&ArrayRef>,
        show: impl Fn(&[u8]) -> String,
    ) -> Result<Option<KeyGroup>, ArrowError> {
        let column = out.len();
        let keys = self.take_keys();
        let d = &self.distinct;
        let values: StringArray = (0..d.len() as u32).map(|k| d.get(k).map(&show)).collect();
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

    /// A value that lives as long as the program (`kind`, `family`, `protocol`): no compare when it is the
    /// last row's.
    pub(crate) fn append_static(&mut self, v: &'static str) {
        self.0.append_static(v);
    }
}

impl KeyedColumn for KeyedStrings {
    /// The column of the rows appended so far, or with `keyed` its placeholder and the keys.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        self.0.finish(out, keyed)
    }
}

/// A connection's address (`local_ip`, `remote_ip`) keyed by its bytes: formatted once per distinct
/// address and batch rather than on every row (3 % of the lake's instructions).
#[derive(Debug, Default)]
pub(crate) struct KeyedIps(Keys);

impl KeyedIps {
    /// An IPv6 address when `family` is `AF_INET6`, else IPv4 (the first 4 bytes).
    pub(crate) fn append(&mut self, family: u16, addr: &[u8; 16]) {
        let mut key = [0u8; 17];
        let len = if family == 10 { 16 } else { 4 };
        key[0] = u8::from(family == 10);
        key[1..=len].copy_from_slice(&addr[..len]);
        self.0.append(Some(&key[..=len]));
    }

    pub(crate) fn append_null(&mut self) {
        self.0.append(None);
    }
}

impl KeyedColumn for KeyedIps {
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        self.0.finish_as(out, keyed, |key| {
            let (family, mut addr) = (if key.first() == Some(&1) { 10 } else { 2 }, [0u8; 16]);
            let bytes = key.get(1..).unwrap_or_default();
            addr[..bytes.len().min(16)].copy_from_slice(&bytes[..bytes.len().min(16)]);
            ip_str(&mut [0u8; 48], family, &addr).to_owned()
        })
    }
}

/// Formats an address into a stack buffer (no allocation). IPv4 by hand: `Ipv4Addr`'s `Display` goes through
/// the formatting machinery, about 3 % of the Kafka agent's profile.
fn ip_str<'b>(buf: &'b mut [u8; 48], family: u16, addr: &[u8; 16]) -> &'b str {
    let len = if family == 10 {
        let mut cur = &mut buf[..];
        let _ = write!(cur, "{}", Ipv6Addr::from(*addr));
        48 - cur.len()
    } else {
        let mut n = 0;
        for (i, &o) in addr[..4].iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            if o >= 100 {
                buf[n] = b'0' + o / 100;
                n += 1;
            }
            if o >= 10 {
                buf[n] = b'0' + o / 10 % 10;
                n += 1;
            }
            buf[n] = b'0' + o % 10;
            n += 1;
        }
        n
    };
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

#[cfg(test)]
#[test]
fn ipv4_by_hand_matches_display() {
    let mut buf = [0u8; 48];
    for o in 0..=255u8 {
        for at in 0..4 {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&[10, 200, 7, 99]);
            addr[at] = o;
            let want = std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string();
            assert_eq!(ip_str(&mut buf, 2, &addr), want);
        }
    }
    let mut v6 = [0u8; 16];
    (v6[0], v6[15]) = (0xfd, 9);
    assert_eq!(ip_str(&mut buf, 10, &v6), "fd00::9");
}

/// A byte string kept losslessly, as `columns::Bytes` keeps it (`<name>` as UTF-8, `<name>_raw` the exact
/// bytes only when they are not UTF-8), with `<name>` keyed: `comm` and `exe`, the same on every event of a
/// process. `<name>_raw` follows from the key too: built at `finish`, and only when some value is not UTF-8
/// (a row's null in a binary builder was 3 % of the lake's instructions).
#[derive(Debug, Default)]
pub(crate) struct KeyedBytes {
    text: Keys,
    /// Per distinct value: whether it is UTF-8.
    utf8: Vec<bool>,
}

impl KeyedBytes {
    pub(crate) fn fields(name: &str, f: &mut Vec<Field>) {
        f.push(Field::new(name, DataType::Utf8, true));
        f.push(Field::new(format!("{name}_raw"), DataType::Binary, true));
    }

    /// Returns the bytes added, for the memory estimate.
    pub(crate) fn append(&mut self, v: Option<&[u8]>) -> usize {
        let len = v.map_or(0, <[u8]>::len);
        if raw_row(&mut self.text, &mut self.utf8, v) { 2 * len } else { len }
    }
}

/// Appends a row to `keys`, noting whether a new value is UTF-8; whether the row's value is not (it then
/// has a `_raw` value too).
fn raw_row(keys: &mut Keys, utf8: &mut Vec<bool>, v: Option<&[u8]>) -> bool {
    let (k, new) = keys.append(v);
    if new {
        utf8.push(v.is_none_or(|v| std::str::from_utf8(v).is_ok()));
    }
    !utf8.get(k as usize).copied().unwrap_or(true)
}

/// The `_raw` column of `keys`' rows: a value's bytes where it is not UTF-8, else null.
fn raw_column(keys: &Keys, utf8: &[bool]) -> Result<ArrayRef, ArrowError> {
    let rows = keys.keys.len();
    if utf8.iter().all(|&u| u) {
        return Ok(new_null_array(&DataType::Binary, rows));
    }
    let d = &keys.distinct;
    let values: BinaryArray = (0..d.len()).map(|k| d.get(k as u32).filter(|_| !utf8[k])).collect();
    gather(&values, &UInt32Array::from_iter_values(keys.keys.iter().copied()))
}

impl KeyedColumn for KeyedBytes {
    /// `<name>` (or with `keyed` its placeholder and the keys) and `<name>_raw`.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        let raw = raw_column(&self.text, &self.utf8);
        let text = self.text.finish(out, keyed);
        self.utf8.clear();
        out.push(raw.as_ref().map_or_else(|_| new_null_array(&DataType::Binary, 0), Arc::clone));
        raw?;
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
}

impl KeyedArgs {
    /// Returns the bytes added, for the memory estimate (as the columns held them unkeyed: three copies).
    pub(crate) fn append(&mut self, v: Option<&[u8]>) -> usize {
        raw_row(&mut self.argv, &mut self.utf8, v);
        3 * v.map_or(0, <[u8]>::len)
    }
}

impl KeyedColumn for KeyedArgs {
    /// `cmdline`, `args` (or with `keyed` their placeholders and the keys) and `args_raw`; starts over empty.
    fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: Option<&ArrayRef>) -> Result<Option<KeyGroup>, ArrowError> {
        let first = out.len();
        let raw = raw_column(&self.argv, &self.utf8);
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
        out.push(raw.as_ref().map_or_else(|_| new_null_array(&DataType::Binary, 0), Arc::clone));
        raw?;
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

    use super::{KeyedBytes, KeyedColumn, KeyedIps, KeyedStrings};
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

    #[test]
    fn addresses_are_shown_per_family() {
        let (mut v4, mut v6) = ([0u8; 16], [0u8; 16]);
        v4[..4].copy_from_slice(&[10, 1, 2, 3]);
        (v6[0], v6[15]) = (0xfd, 1);
        // An IPv6 address whose first 4 bytes are those of the IPv4 one: the family tells them apart.
        let mut v6_like = v6;
        v6_like[..4].copy_from_slice(&[10, 1, 2, 3]);
        let want = [Some("10.1.2.3"), Some("fd00::1"), None, Some("10.1.2.3"), Some("a01:203::1"), Some("fd00::1")];
        for keyed in [false, true] {
            let mut k = KeyedIps::default();
            for (family, addr) in [(2, Some(v4)), (10, Some(v6)), (2, None), (2, Some(v4)), (10, Some(v6_like))]
                .into_iter()
                .chain([(10, Some(v6))])
            {
                match addr {
                    Some(a) => k.append(family, &a),
                    None => k.append_null(),
                }
            }
            let mut out = Vec::new();
            let group = k.finish(&mut out, keyed.then(|| placeholder(want.len())).as_ref()).unwrap();
            let batch = RecordBatch::try_from_iter_with_nullable([("ip", Arc::clone(&out[0]), true)]).unwrap();
            let batch = match group {
                Some(g) => Dictionaries { groups: vec![g], ids: Vec::new() }.materialize(&batch, 0),
                None => batch,
            };
            let col = batch.column(0).as_string::<i32>();
            let got: Vec<Option<&str>> = col.iter().collect();
            assert_eq!(got, want, "{keyed}");
        }
    }
}
