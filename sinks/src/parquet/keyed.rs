//! A string column with few distinct values per batch (`node`, `kind`): a key per row and each value kept
//! once, so a row costs a compare and a push instead of a copy into a string builder, and the Parquet
//! writer encodes the column from the keys (`dict_chunk`).

use std::collections::HashMap;

use arrow::array::{ArrayRef, StringArray, UInt32Array};
use arrow::error::ArrowError;

use super::dict_chunk::KeyGroup;
use super::identity::gather;

/// Past this many distinct values a map finds a value's key; below, a scan is cheaper.
const SCAN: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct KeyedStrings {
    values: Vec<Box<str>>,
    /// Only filled once there are more than `SCAN` values.
    index: HashMap<Box<str>, u32>,
    last: u32,
    keys: Vec<u32>,
}

impl KeyedStrings {
    pub(crate) fn append(&mut self, v: &str) {
        let k = match self.values.get(self.last as usize) {
            Some(last) if **last == *v => self.last,
            _ => self.find_or_add(v),
        };
        self.last = k;
        self.keys.push(k);
    }

    fn find_or_add(&mut self, v: &str) -> u32 {
        let found = if self.values.len() <= SCAN {
            self.values.iter().position(|x| **x == *v).map(|p| p as u32)
        } else {
            self.index.get(v).copied()
        };
        if let Some(k) = found {
            return k;
        }
        let k = self.values.len() as u32;
        self.values.push(v.into());
        if self.values.len() > SCAN {
            if self.index.is_empty() {
                self.index.extend(self.values.iter().enumerate().map(|(i, v)| (v.clone(), i as u32)));
            } else {
                self.index.insert(v.into(), k);
            }
        }
        k
    }

    /// The column of the rows appended so far (pushed to `out`); with `keyed`, also as keys into its
    /// distinct values. Starts over empty, keeping the keys' capacity.
    pub(crate) fn finish(&mut self, out: &mut Vec<ArrayRef>, keyed: bool) -> Result<Option<KeyGroup>, ArrowError> {
        let column = out.len();
        let rows = self.keys.len();
        let keys = UInt32Array::from(std::mem::replace(&mut self.keys, Vec::with_capacity(rows)));
        let values: StringArray = self.values.iter().map(|v| Some(&**v)).collect();
        self.values.clear();
        self.index.clear();
        self.last = 0;
        out.push(gather(&values, &keys)?);
        Ok(keyed.then(|| KeyGroup { keys, columns: vec![(column, values)] }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::KeyedStrings;

    #[test]
    fn rows_read_back_in_order_past_the_scan_limit() {
        let mut k = KeyedStrings::default();
        // Runs, returns to earlier values, and more distinct values than a scan serves.
        let input: Vec<String> = (0..500u32).map(|i| format!("v{}", (i / 3) % 40 + (i % 7 == 0) as u32)).collect();
        for (round, expect) in [input.clone(), input[..10].to_vec()].iter().enumerate() {
            for v in expect {
                k.append(v);
            }
            let mut out = Vec::new();
            let group = k.finish(&mut out, true).unwrap().expect("keyed");
            let col = out[0].as_string::<i32>();
            let got: Vec<&str> = (0..col.len()).map(|r| col.value(r)).collect();
            assert_eq!(got, expect.iter().map(String::as_str).collect::<Vec<_>>(), "round {round}");
            let (_, values) = &group.columns[0];
            assert_eq!(values.len(), expect.iter().collect::<std::collections::HashSet<_>>().len());
        }
    }
}
