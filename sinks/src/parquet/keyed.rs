//! A string column with few distinct values per batch (`node`, `kind`): a key per row and each value kept
//! once, so a row costs a compare and a push instead of a copy into a string builder, and the Parquet
//! writer encodes the column from the keys (`dict_chunk`).

use arrow::array::{ArrayRef, StringArray, UInt32Array};
use arrow::error::ArrowError;

use super::dict_chunk::KeyGroup;
use super::identity::gather;
use crate::hash::{FingerprintIndex, content_fingerprint};

#[derive(Debug, Default)]
pub(crate) struct KeyedStrings {
    values: Vec<Box<str>>,
    index: FingerprintIndex,
    last: u32,
    keys: Vec<u32>,
}

impl KeyedStrings {
    pub(crate) fn append(&mut self, v: &str) {
        // Most rows repeat the previous row's value: one compare, no hash.
        let k = match self.values.get(self.last as usize) {
            Some(last) if **last == *v => self.last,
            _ => self.index.find_or_add(
                content_fingerprint(v.as_bytes()),
                &mut self.values,
                |values, e| *values[e as usize] == *v,
                |values| {
                    values.push(v.into());
                    values.len() as u32 - 1
                },
            ),
        };
        self.last = k;
        self.keys.push(k);
    }

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
    fn rows_read_back_in_order() {
        let mut k = KeyedStrings::default();
        // Runs, and returns to earlier values.
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
