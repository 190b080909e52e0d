//! Columns a SIEM mapping does not name, written as they are (name, type) so nothing in the row is lost:
//! under `tracelake.*` in ECS documents, flat in Splunk events.

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;

use super::json::{JsonWriter, base64, rfc3339_ns};
use super::rows::{Bin, Bool, Columns, Int, List, Str};

#[derive(Debug)]
enum Value<'a> {
    Str(Str<'a>),
    Int(Int<'a>),
    Time(Int<'a>),
    Bool(Bool<'a>),
    Bin(Bin<'a>),
    Strs(List<'a>),
    Nums(List<'a>),
}

/// The columns of a batch other than `mapped`, in schema order.
#[derive(Debug)]
pub struct Rest<'a> {
    cols: Vec<(&'a str, Value<'a>)>,
}

impl<'a> Rest<'a> {
    pub fn new(batch: &'a RecordBatch, cols: &Columns<'a>, mapped: &[&str]) -> Rest<'a> {
        let mut out = Vec::new();
        for f in batch.schema_ref().fields() {
            let name = f.name().as_str();
            if mapped.contains(&name) {
                continue;
            }
            let v = match f.data_type() {
                DataType::Utf8 => Value::Str(cols.str(name)),
                DataType::Binary => Value::Bin(cols.bin(name)),
                DataType::Boolean => Value::Bool(cols.bool(name)),
                DataType::Timestamp(_, _) => Value::Time(cols.int(name)),
                DataType::List(item) if matches!(item.data_type(), DataType::Utf8) => Value::Strs(cols.list(name)),
                DataType::List(_) => Value::Nums(cols.list(name)),
                _ => Value::Int(cols.int(name)),
            };
            // Safe: `name` borrows the batch's schema, which lives as long as the batch.
            out.push((name, v));
        }
        Rest { cols: out }
    }

    /// Writes the row's values (nulls left out; `*_raw` bytes as base64).
    pub fn write(&self, w: &mut JsonWriter, row: usize) {
        for (name, v) in &self.cols {
            match v {
                Value::Str(s) => w.str(name, s.get(row)),
                Value::Int(i) => match i {
                    Int::U64(_) => w.u64(name, i.u64(row)),
                    Int::None | Int::U32(_) | Int::U16(_) | Int::I64(_) | Int::I32(_) | Int::Ts(_) => {
                        w.i64(name, i.i64(row));
                    }
                },
                Value::Time(t) => w.str(name, t.i64(row).map(rfc3339_ns).as_deref()),
                Value::Bool(b) => w.bool(name, b.get(row)),
                Value::Bin(b) => w.str(name, b.get(row).map(base64).as_deref()),
                Value::Strs(l) => w.strs(name, l.strs(row)),
                Value::Nums(l) => w.u64s(name, l.u64s(row)),
            }
        }
    }
}
