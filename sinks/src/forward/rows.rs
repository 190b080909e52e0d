//! Typed, by-name access to the columns of a lake batch, resolved once per batch: the renderers read a row's
//! values through it whatever the column order, and a column a batch lacks (an older file, a table without
//! it) reads as null.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int32Array, Int64Array, ListArray, StringArray,
    TimestampNanosecondArray, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

/// The columns of one batch, by name.
#[derive(Debug)]
pub struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    pub fn new(batch: &'a RecordBatch) -> Columns<'a> {
        Columns { batch }
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    fn col(&self, name: &str) -> Option<&'a ArrayRef> {
        let i = self.batch.schema_ref().index_of(name).ok()?;
        Some(self.batch.column(i))
    }

    pub fn str(&self, name: &str) -> Str<'a> {
        Str(self.col(name).and_then(|c| c.as_any().downcast_ref::<StringArray>()))
    }

    pub fn bin(&self, name: &str) -> Bin<'a> {
        Bin(self.col(name).and_then(|c| c.as_any().downcast_ref::<BinaryArray>()))
    }

    /// Any integer column, widened.
    pub fn int(&self, name: &str) -> Int<'a> {
        let Some(c) = self.col(name) else { return Int::None };
        match c.data_type() {
            DataType::UInt64 => c.as_any().downcast_ref::<UInt64Array>().map_or(Int::None, Int::U64),
            DataType::UInt32 => c.as_any().downcast_ref::<UInt32Array>().map_or(Int::None, Int::U32),
            DataType::UInt16 => c.as_any().downcast_ref::<UInt16Array>().map_or(Int::None, Int::U16),
            DataType::Int64 => c.as_any().downcast_ref::<Int64Array>().map_or(Int::None, Int::I64),
            DataType::Int32 => c.as_any().downcast_ref::<Int32Array>().map_or(Int::None, Int::I32),
            DataType::Timestamp(_, _) => {
                c.as_any().downcast_ref::<TimestampNanosecondArray>().map_or(Int::None, Int::Ts)
            }
            _ => Int::None,
        }
    }

    pub fn bool(&self, name: &str) -> Bool<'a> {
        Bool(self.col(name).and_then(|c| c.as_any().downcast_ref::<BooleanArray>()))
    }

    pub fn list(&self, name: &str) -> List<'a> {
        List(self.col(name).and_then(|c| c.as_any().downcast_ref::<ListArray>()))
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Str<'a>(Option<&'a StringArray>);

impl<'a> Str<'a> {
    pub fn get(&self, row: usize) -> Option<&'a str> {
        let a = self.0?;
        (!a.is_null(row)).then(|| a.value(row))
    }
    /// Absent, null and empty alike as `None` (identity columns use null, some producers "").
    pub fn nonempty(&self, row: usize) -> Option<&'a str> {
        self.get(row).filter(|s| !s.is_empty())
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Bin<'a>(Option<&'a BinaryArray>);

impl<'a> Bin<'a> {
    pub fn get(&self, row: usize) -> Option<&'a [u8]> {
        let a = self.0?;
        (!a.is_null(row)).then(|| a.value(row))
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Int<'a> {
    None,
    U64(&'a UInt64Array),
    U32(&'a UInt32Array),
    U16(&'a UInt16Array),
    I64(&'a Int64Array),
    I32(&'a Int32Array),
    Ts(&'a TimestampNanosecondArray),
}

impl Int<'_> {
    pub fn i64(&self, row: usize) -> Option<i64> {
        match self {
            Int::None => None,
            Int::U64(a) => (!a.is_null(row)).then(|| i64::try_from(a.value(row)).unwrap_or(i64::MAX)),
            Int::U32(a) => (!a.is_null(row)).then(|| i64::from(a.value(row))),
            Int::U16(a) => (!a.is_null(row)).then(|| i64::from(a.value(row))),
            Int::I64(a) => (!a.is_null(row)).then(|| a.value(row)),
            Int::I32(a) => (!a.is_null(row)).then(|| i64::from(a.value(row))),
            Int::Ts(a) => (!a.is_null(row)).then(|| a.value(row)),
        }
    }

    /// Unsigned values as they are (u64 ids and counts above i64::MAX stay exact).
    pub fn u64(&self, row: usize) -> Option<u64> {
        match self {
            Int::U64(a) => (!a.is_null(row)).then(|| a.value(row)),
            Int::None | Int::U32(_) | Int::U16(_) | Int::I64(_) | Int::I32(_) | Int::Ts(_) => {
                self.i64(row).and_then(|v| u64::try_from(v).ok())
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Bool<'a>(Option<&'a BooleanArray>);

impl Bool<'_> {
    pub fn get(&self, row: usize) -> Option<bool> {
        let a = self.0?;
        (!a.is_null(row)).then(|| a.value(row))
    }
}

#[derive(Clone, Copy, Debug)]
pub struct List<'a>(Option<&'a ListArray>);

impl List<'_> {
    /// The row's strings (a list of strings), empty when null.
    pub fn strs(&self, row: usize) -> Vec<&str> {
        let Some(a) = self.0.filter(|a| !a.is_null(row)) else { return Vec::new() };
        let offsets = a.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let Some(values) = a.values().as_string_opt::<i32>() else { return Vec::new() };
        (start..end).filter(|&i| !values.is_null(i)).map(|i| values.value(i)).collect()
    }

    /// The row's unsigned numbers (a list of u32 or u64), empty when null.
    pub fn u64s(&self, row: usize) -> Vec<u64> {
        let Some(a) = self.0.filter(|a| !a.is_null(row)) else { return Vec::new() };
        let offsets = a.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let values = a.values();
        if let Some(v) = values.as_any().downcast_ref::<UInt32Array>() {
            return (start..end).filter(|&i| !v.is_null(i)).map(|i| u64::from(v.value(i))).collect();
        }
        if let Some(v) = values.as_any().downcast_ref::<UInt64Array>() {
            return (start..end).filter(|&i| !v.is_null(i)).map(|i| v.value(i)).collect();
        }
        Vec::new()
    }
}
