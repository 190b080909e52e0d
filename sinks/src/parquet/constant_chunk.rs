//! Column chunks of a flat number or boolean column whose rows that have a value all have the same one:
//! `class_uid` and `count` of every event table, `summary`, `container`, `exe_dev` beside execs, `ret` and
//! `mode` beside file opens, a connection's `remote_port` to one service. Such a column is most of a lake
//! table's number columns, and the Arrow writer spends as long on it as on one whose values differ (a delta
//! and a min / max per row); here a page is its levels and a constant run, with no work per row beyond
//! checking that the values are the same.
//!
//! Integers are `DELTA_BINARY_PACKED` as the writer's properties ask of them (`writer.rs`): the first value,
//! then blocks of zero deltas that take no bits. Booleans are `PLAIN`, as parquet-rs writes them in files of
//! format version 1. Any reader sees what the Arrow writer writes (tests read them back with parquet-rs and
//! pyarrow).

use ::parquet::basic::{Encoding, Type as PhysicalType};
use ::parquet::bloom_filter::Sbbf;
use ::parquet::column::writer::ColumnCloseResult;
use ::parquet::errors::ParquetError;
use ::parquet::file::properties::{WriterProperties, WriterVersion};
use ::parquet::file::statistics::Statistics;
use ::parquet::schema::types::ColumnDescPtr;
use arrow::array::{Array, ArrowPrimitiveType, AsArray, PrimitiveArray};
use arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampNanosecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use bytes::Bytes;

use super::pages::{Pages, Zstd, bit_width, constant_levels, levels_rle, zero_deltas};

/// The one value of a column, as its physical type holds it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Constant {
    Int32(i32),
    Int64(i64),
    Boolean(bool),
}

impl Constant {
    /// Its bytes as PLAIN encodes them (statistics, column index, bloom filter).
    fn plain(self) -> Vec<u8> {
        match self {
            Constant::Int32(v) => v.to_le_bytes().to_vec(),
            Constant::Int64(v) => v.to_le_bytes().to_vec(),
            Constant::Boolean(v) => vec![u8::from(v)],
        }
    }

    fn physical(self) -> PhysicalType {
        match self {
            Constant::Int32(_) => PhysicalType::INT32,
            Constant::Int64(_) => PhysicalType::INT64,
            Constant::Boolean(_) => PhysicalType::BOOLEAN,
        }
    }
}

/// The value every row with a value has, when there is one (None: values differ, no row has one, or a type
/// not handled here).
fn constant_of(column: &dyn Array) -> Option<Constant> {
    fn same<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>) -> Option<T::Native> {
        let values = a.values();
        let first = match a.nulls() {
            None => *values.first()?,
            Some(n) => *values.get(n.valid_indices().next()?)?,
        };
        // Rows without a value hold a value too (zero, mostly): only rows with one are compared.
        let all = match a.nulls() {
            None => values.iter().all(|&v| v == first),
            Some(n) => values.iter().zip(n.iter()).all(|(&v, valid)| !valid || v == first),
        };
        all.then_some(first)
    }
    // Unsigned values are stored in the signed physical type's bits (their logical type says how to order).
    Some(match column.data_type() {
        DataType::Int8 => Constant::Int32(i32::from(same(column.as_primitive::<Int8Type>())?)),
        DataType::Int16 => Constant::Int32(i32::from(same(column.as_primitive::<Int16Type>())?)),
        DataType::Int32 => Constant::Int32(same(column.as_primitive::<Int32Type>())?),
        DataType::UInt8 => Constant::Int32(i32::from(same(column.as_primitive::<UInt8Type>())?)),
        DataType::UInt16 => Constant::Int32(i32::from(same(column.as_primitive::<UInt16Type>())?)),
        DataType::UInt32 => Constant::Int32(same(column.as_primitive::<UInt32Type>())? as i32),
        DataType::Int64 => Constant::Int64(same(column.as_primitive::<Int64Type>())?),
        DataType::UInt64 => Constant::Int64(same(column.as_primitive::<UInt64Type>())? as i64),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Constant::Int64(same(column.as_primitive::<TimestampNanosecondType>())?)
        }
        DataType::Boolean => {
            let b = column.as_boolean();
            let first = match b.nulls() {
                None => b.values().value(0),
                Some(n) => b.values().value(n.valid_indices().next()?),
            };
            let values = b.values();
            let all = match b.nulls() {
                None => {
                    if first {
                        values.count_set_bits() == b.len()
                    } else {
                        values.count_set_bits() == 0
                    }
                }
                Some(n) => (0..b.len()).all(|i| !n.is_valid(i) || values.value(i) == first),
            };
            all.then_some(Constant::Boolean(first))?
        }
        _ => return None,
    })
}

/// The chunk of `column` (one row group's rows of a flat column) when every row that has a value has the
/// same one; None otherwise, or for a shape, type or encoding left to the Arrow writer.
pub(crate) fn encode(
    descr: ColumnDescPtr,
    props: &WriterProperties,
    zstd: &mut Zstd,
    column: &dyn Array,
) -> Result<Option<(Bytes, ColumnCloseResult)>, ParquetError> {
    let path = descr.path().clone();
    if descr.max_rep_level() != 0 || descr.max_def_level() > 1 || column.is_empty() {
        return Ok(None);
    }
    let required = descr.max_def_level() == 0;
    let Some(value) = constant_of(column) else { return Ok(None) };
    let encoding = match value {
        Constant::Boolean(_) if props.writer_version() == WriterVersion::PARQUET_1_0 => Encoding::PLAIN,
        Constant::Int32(_) | Constant::Int64(_) if props.encoding(&path) == Some(Encoding::DELTA_BINARY_PACKED) => {
            Encoding::DELTA_BINARY_PACKED
        }
        Constant::Boolean(_) | Constant::Int32(_) | Constant::Int64(_) => return Ok(None),
    };
    if descr.physical_type() != value.physical() || (required && column.null_count() > 0) {
        return Ok(None);
    }
    let plain = value.plain();
    let mut pages = Pages::new(&descr, props, zstd)?;
    let page_rows = props.data_page_row_count_limit().clamp(1, 1 << 20);
    let mut raw = Vec::new();
    let mut defs = Vec::new();
    for start in (0..column.len()).step_by(page_rows) {
        let rows = page_rows.min(column.len() - start);
        let nulls = column.nulls().map_or(0, |n| n.slice(start, rows).null_count());
        let present = rows - nulls;
        raw.clear();
        if !required && nulls == 0 {
            constant_levels(rows, 1, &mut raw);
        } else if !required {
            let valid = column.nulls().map(|n| n.slice(start, rows));
            defs.clear();
            defs.extend(valid.iter().flat_map(|n| n.iter()).map(u32::from));
            levels_rle(&defs, bit_width(1), &mut raw);
        }
        match value {
            Constant::Boolean(v) => raw.extend(std::iter::repeat_n(if v { 0xff } else { 0 }, present.div_ceil(8))),
            Constant::Int32(v) => zero_deltas(i64::from(v), present, &mut raw),
            Constant::Int64(v) => zero_deltas(v, present, &mut raw),
        }
        let bounds = (present > 0).then(|| (plain.clone(), plain.clone()));
        pages.data(&raw, encoding, (rows, rows, nulls as u64), bounds)?;
    }
    let bloom_filter = match props.bloom_filter_properties(&path) {
        Some(bp) => {
            let mut sbbf = Sbbf::new_with_ndv_fpp(bp.ndv(), bp.fpp())?;
            sbbf.insert(plain.as_slice());
            Some(sbbf)
        }
        None => None,
    };
    let nulls = Some(column.null_count() as u64);
    let stats = match value {
        Constant::Int32(v) => Statistics::int32(Some(v), Some(v), None, nulls, false),
        Constant::Int64(v) => Statistics::int64(Some(v), Some(v), None, nulls, false),
        Constant::Boolean(v) => Statistics::boolean(Some(v), Some(v), None, nulls, false),
    };
    pages.close(descr, vec![encoding, Encoding::RLE], stats, bloom_filter).map(Some)
}
