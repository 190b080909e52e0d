//! Column chunks encoded from a dictionary the batch already holds.
//!
//! The identity columns (namespace, pod, container_id, image, ... ~20 strings) hold a few distinct values per
//! file, each repeated on thousands of rows. The batch builder interns them already (`identity.rs`): one key per
//! row into a table of distinct identities. Given as plain strings, the Parquet writer re-does per row and per
//! column what that table knows: it hashes each value into its dictionary, compares it for the page's min and
//! max, and hashes it again into the bloom filter. With 20 such columns this was about a quarter of the cost of
//! writing a file (`lake/write_mixed`, BENCHMARKS.md).
//!
//! The same holds for `node`, `kind`, `comm`, `exe` and the classes' strings (`keyed.rs`: command lines and
//! `args`, cwd, paths, addresses) and the lineage's `parent_exe`, `parent_cmdline` and `ancestor_exes`
//! (`lineage.rs`). A list column's levels say where each row's list starts and which rows have none.
//!
//! Long values (a command line can be 1 MiB) are cut to 64 bytes in the page index and chunk statistics, as
//! the Arrow writer cuts them: in full, a file of two such rows had a 60 KiB footer.
//!
//! Here each chunk is written from the keys: the dictionary page is the distinct values (sorted, so a page's
//! min and max are those of its smallest and largest index), the data pages are the indices, and the bloom
//! filter gets each distinct value once. The result is what the Arrow writer makes of the same column (same
//! encodings, page index, bloom filter, zstd), spliced into the row group with `append_column`; any reader
//! sees an ordinary dictionary-encoded column (tests read it back with parquet-rs and pyarrow).

use ::parquet::basic::{Encoding, Type as PhysicalType};
use ::parquet::bloom_filter::Sbbf;
use ::parquet::column::page::Page;
use ::parquet::column::writer::ColumnCloseResult;
use ::parquet::errors::ParquetError;
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::statistics::Statistics;
use ::parquet::schema::types::{ColumnDescPtr, ColumnPath};
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
    new_empty_array, new_null_array,
};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::compute::take;
use arrow::datatypes::{DataType, SchemaRef, UInt32Type, UInt64Type};
use arrow::error::ArrowError;
use bytes::Bytes;

use super::pages::{Pages, Zstd, bit_width, constant_levels, levels_rle, rle_hybrid, rle_run};

/// Columns of a batch given as distinct values plus one key per row: the writer encodes these columns from
/// the keys, and the batch holds only a `placeholder` for them until `materialize`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dictionaries {
    pub(crate) groups: Vec<KeyGroup>,
    /// Columns of ids shown as 16 hex digits (`event_id`), held as the numbers, one per row: `id_chunk`
    /// writes them.
    pub(crate) ids: Vec<(usize, UInt64Array)>,
}

/// Columns that share one key per row (the ~20 identity columns share the row's identity).
#[derive(Clone, Debug)]
pub(crate) struct KeyGroup {
    /// One per row of the batch.
    pub(crate) keys: UInt32Array,
    /// (column index in the batch, distinct values indexed by key: `values[keys[row]]` is the row's value).
    pub(crate) columns: Vec<(usize, Values)>,
}

/// The distinct values of a keyed column, one per key.
#[derive(Clone, Debug)]
pub(crate) enum Values {
    /// A string column; a null value is a null row.
    Strings(StringArray),
    /// An integer column (u32 or u64, required): the process's (`subject.rs`).
    Numbers(ArrayRef),
    /// A column of lists of strings or of u32 (`ancestor_exes`, `ancestor_pids`); never null, a row without
    /// items is an empty list.
    Lists(ListArray),
}

impl Values {
    pub(crate) fn len(&self) -> usize {
        self.array().len()
    }

    fn array(&self) -> &dyn Array {
        match self {
            Values::Strings(v) => v,
            Values::Numbers(v) => v,
            Values::Lists(v) => v,
        }
    }

    /// The column of rows with keys `keys` (a key past the values: a null row), for a chunk `encode` leaves to
    /// the Arrow writer: no row has a value (nulls, or lists that are empty or null).
    pub(crate) fn gather(&self, keys: &[u32]) -> Result<ArrayRef, ArrowError> {
        let values = self.array();
        // Most often every value is null (`path2` beside opens, `unix_path` beside TCP): no row to look up.
        if values.null_count() == values.len() {
            return Ok(new_null_array(values.data_type(), keys.len()));
        }
        if let Values::Lists(v) = self
            && v.null_count() == 0
            && v.offsets().first() == v.offsets().last()
        {
            return Ok(empty_lists(v.data_type(), keys.len()));
        }
        let keys: UInt32Array = keys.iter().map(|&k| ((k as usize) < self.len()).then_some(k)).collect();
        take(values, &keys, None)
    }
}

/// `rows` empty lists of `data_type`.
pub(crate) fn empty_lists(data_type: &DataType, rows: usize) -> ArrayRef {
    let DataType::List(item) = data_type else { return new_null_array(data_type, rows) };
    let items = new_empty_array(item.data_type());
    Arc::new(ListArray::new(Arc::clone(item), OffsetBuffer::new_zeroed(rows), items, None))
}

impl Dictionaries {
    /// The keys following the batch's rows put in `order` (None: kept as they are).
    pub(crate) fn reordered(&self, order: Option<&UInt32Array>) -> Dictionaries {
        let groups = self.groups.iter().map(|g| {
            let keys = match order {
                None => g.keys.clone(),
                Some(order) => {
                    let keys = g.keys.values();
                    // `order` is a permutation of the rows, and `Common::finish` checked each group has a key
                    // per row: the fallback (a null row) is for a bug, which `encode` then still writes.
                    let keys: Vec<u32> =
                        order.values().iter().map(|&r| keys.get(r as usize).copied().unwrap_or(NO_VALUE)).collect();
                    keys.into()
                }
            };
            KeyGroup { keys, columns: g.columns.clone() }
        });
        let ids = self.ids.iter().map(|(c, ids)| match order {
            None => (*c, ids.clone()),
            Some(order) => {
                let ids: Vec<u64> =
                    order.values().iter().map(|&r| ids.values().get(r as usize).copied().unwrap_or(0)).collect();
                (*c, UInt64Array::from(ids))
            }
        });
        Dictionaries { groups: groups.collect(), ids: ids.collect() }
    }

    /// About the bytes the keyed columns take once gathered (each value's average size per row), for the
    /// memory bounds of a batch that holds placeholders in their place.
    pub(crate) fn gathered_bytes(&self) -> usize {
        let groups = self.groups.iter().map(|g| {
            let per_value = |v: &Values| v.array().get_array_memory_size() / v.len().max(1);
            g.columns.iter().map(|(_, v)| per_value(v)).sum::<usize>() * g.keys.len()
        });
        groups.sum::<usize>() + self.ids.iter().map(|(_, ids)| 16 * ids.len()).sum::<usize>()
    }

    /// The keys of the rows `keep` keeps (a batch filtered with the same mask: the lake service drops the
    /// rows of events it has written already). None when the mask does not cover the keys.
    pub(crate) fn filter(&self, keep: &BooleanArray) -> Option<Dictionaries> {
        let groups = self.groups.iter().map(|g| {
            let keys = arrow::compute::filter(&g.keys, keep).ok()?;
            Some(KeyGroup { keys: keys.as_primitive_opt::<UInt32Type>()?.clone(), columns: g.columns.clone() })
        });
        let ids = self.ids.iter().map(|(c, ids)| {
            let ids = arrow::compute::filter(ids, keep).ok()?;
            Some((*c, ids.as_primitive_opt::<UInt64Type>()?.clone()))
        });
        Some(Dictionaries { groups: groups.collect::<Option<_>>()?, ids: ids.collect::<Option<_>>()? })
    }

    /// Batches of one table, each with its keys when it has them, as one batch: with their keys merged
    /// (`concat`) when every part has keys, else with the keyed parts gathered first (their keyed columns
    /// may be placeholders). The lake sink's buffers and the lake service's pending rows both end here.
    pub(crate) fn join(
        schema: &SchemaRef,
        parts: &[(RecordBatch, Option<Dictionaries>)],
    ) -> Result<(RecordBatch, Option<Dictionaries>), ArrowError> {
        let keys: Option<Vec<&Dictionaries>> = parts.iter().map(|(_, d)| d.as_ref()).collect();
        if let Some(merged) = keys.and_then(|k| Dictionaries::concat(&k)) {
            let batch = arrow::compute::concat_batches(schema, parts.iter().map(|(b, _)| b))?;
            return Ok((batch, Some(merged)));
        }
        let batches: Vec<RecordBatch> =
            parts.iter().map(|(b, d)| d.as_ref().map_or_else(|| b.clone(), |d| d.materialize(b, 0))).collect();
        Ok((arrow::compute::concat_batches(schema, &batches)?, None))
    }

    /// The keys of batches built one after another by the same builder, as those of the batches concatenated
    /// in that order: each batch's keys move past the values of the batches before it. None when a batch has
    /// no keys or its keyed columns are not the first's.
    pub(crate) fn concat(parts: &[&Dictionaries]) -> Option<Dictionaries> {
        let first = parts.first()?;
        let same_shape = |d: &&Dictionaries| {
            d.groups.len() == first.groups.len()
                && d.ids.iter().map(|(c, _)| c).eq(first.ids.iter().map(|(c, _)| c))
                && d.groups.iter().zip(&first.groups).all(|(g, f)| {
                    g.columns.len() == f.columns.len()
                        && g.columns.iter().zip(&f.columns).all(|((c, v), (fc, fv))| {
                            c == fc && std::mem::discriminant(v) == std::mem::discriminant(fv)
                        })
                })
        };
        if !parts.iter().all(same_shape) {
            return None;
        }
        let mut groups = Vec::with_capacity(first.groups.len());
        for (i, f) in first.groups.iter().enumerate() {
            let mut keys = Vec::with_capacity(parts.iter().map(|d| d.groups[i].keys.len()).sum());
            let mut offset = 0u32;
            for d in parts {
                let g = &d.groups[i];
                let n = g.columns.first().map_or(0, |(_, v)| v.len()) as u32;
                // A key past its batch's values (a bug of the builder) stays a null row, not another's value.
                keys.extend(g.keys.values().iter().map(|&k| if k < n { k + offset } else { NO_VALUE }));
                offset += n;
            }
            let mut columns = Vec::with_capacity(f.columns.len());
            for (j, (c, v)) in f.columns.iter().enumerate() {
                let arrays: Vec<&dyn Array> = parts.iter().map(|d| d.groups[i].columns[j].1.array()).collect();
                let all = arrow::compute::concat(&arrays).ok()?;
                let values = match v {
                    Values::Strings(_) => Values::Strings(all.as_string_opt::<i32>()?.clone()),
                    Values::Numbers(_) => Values::Numbers(all),
                    Values::Lists(_) => Values::Lists(all.as_list_opt::<i32>()?.clone()),
                };
                columns.push((*c, values));
            }
            groups.push(KeyGroup { keys: keys.into(), columns });
        }
        let ids = first.ids.iter().enumerate().map(|(i, (c, _))| {
            let all: Vec<u64> = parts.iter().flat_map(|d| d.ids[i].1.values().iter().copied()).collect();
            (*c, UInt64Array::from(all))
        });
        Some(Dictionaries { groups, ids: ids.collect() })
    }

    /// The distinct values of `column` and the keys of rows `rows`, when the column is keyed. An error when
    /// it is keyed but the keys do not cover the rows: its column in the batch is only a placeholder.
    pub(crate) fn column(&self, column: usize, rows: Range<usize>) -> Result<Option<(&Values, &[u32])>, ParquetError> {
        for g in &self.groups {
            if let Some((_, values)) = g.columns.iter().find(|(c, _)| *c == column) {
                let keys = g
                    .keys
                    .values()
                    .get(rows.clone())
                    .ok_or_else(|| ParquetError::General(format!("column {column}: no keys for rows {rows:?}")))?;
                return Ok(Some((values, keys)));
            }
        }
        Ok(None)
    }

    /// The ids of rows `rows` of `column`, when it is held as numbers.
    pub(crate) fn ids(&self, column: usize, rows: Range<usize>) -> Result<Option<&[u64]>, ParquetError> {
        match self.ids.iter().find(|(c, _)| *c == column) {
            Some((_, ids)) => ids
                .values()
                .get(rows.clone())
                .map(Some)
                .ok_or_else(|| ParquetError::General(format!("column {column}: no ids for rows {rows:?}"))),
            None => Ok(None),
        }
    }

    /// `batch` (the batch's rows from `offset` on) with its keyed columns gathered from the keys, and its id
    /// columns formatted, in place of their placeholders: what a retry or any other reader of the batch needs.
    /// Batches from elsewhere (whose schema is not the keys') come back as they are.
    pub(crate) fn materialize(&self, batch: &RecordBatch, offset: usize) -> RecordBatch {
        let mut columns = batch.columns().to_vec();
        for (c, ids) in &self.ids {
            let ids = ids.values().get(offset..offset + batch.num_rows()).unwrap_or_default();
            if let Some(slot) = columns.get_mut(*c) {
                *slot = super::id_chunk::hex_column(ids);
            }
        }
        for g in &self.groups {
            let keys = g.keys.values().get(offset..offset + batch.num_rows()).unwrap_or_default();
            for (c, values) in &g.columns {
                // A key past the values (a bug of the batch builder) makes a null row rather than an error.
                match (columns.get_mut(*c), values.gather(keys)) {
                    (Some(slot), Ok(rows)) => *slot = rows,
                    (_, Err(e)) => tracing::error!(column = c, error = %e, "lake: cannot gather a keyed column"),
                    (None, Ok(_)) => {}
                }
            }
        }
        RecordBatch::try_new(batch.schema(), columns).unwrap_or_else(|e| {
            tracing::error!(error = %e, "lake: keyed columns do not fit the batch; left as they are");
            batch.clone()
        })
    }
}

/// What a keyed column holds in the batch until `Dictionaries::materialize`: empty strings, which nothing
/// reads (the writer encodes the column from its keys). Gathering the strings for every row instead was 8 %
/// of `lake/write_steady`. One array serves every keyed column of a batch.
pub(crate) fn placeholder(rows: usize) -> ArrayRef {
    Arc::new(StringArray::new(OffsetBuffer::new_zeroed(rows), Buffer::from(Vec::<u8>::new()), None))
}

/// Marks a key with no value (a null row).
const NO_VALUE: u32 = u32::MAX;

/// The column chunk of `keys` (one per row) into `values`: its bytes, with offsets relative to their start,
/// and the metadata `SerializedRowGroupWriter::append_column` needs. None when no row has a value: the
/// caller writes that column the ordinary way (`Values::empty_column`: all nulls cost nothing there).
pub(crate) fn encode(
    descr: ColumnDescPtr,
    props: &WriterProperties,
    zstd: &mut Zstd,
    values: &Values,
    keys: &[u32],
    seen: &mut SeenKeys,
) -> Result<Option<(Bytes, ColumnCloseResult)>, ParquetError> {
    let path = descr.path().clone();
    let (max_def, max_rep) = (descr.max_def_level().max(0) as u32, descr.max_rep_level());
    let (flat, lists) = match values {
        Values::Strings(v) if max_rep == 0 && max_def <= 1 => (v as &dyn Array, None),
        Values::Numbers(v) if max_rep == 0 && max_def <= 1 => (&**v, None),
        // `ancestor_exes`, `ancestor_pids`: required lists of optional items; `args`: optional lists of them.
        Values::Lists(v) if max_rep == 1 && (max_def == 2 || max_def == 3) => (&**v.values(), Some(v.offsets())),
        _ => return Err(ParquetError::General(format!("{path}: not the shape of its keyed values"))),
    };
    let null_lists = match values {
        Values::Lists(v) if v.null_count() > 0 => {
            if max_def < 3 {
                return Err(ParquetError::General(format!("{path}: a null list in a required list column")));
            }
            v.nulls()
        }
        Values::Strings(_) | Values::Numbers(_) | Values::Lists(_) => None,
    };
    let physical = descr.physical_type();
    // Each value's bytes, as they sort: a string's own, an unsigned integer's big-endian.
    let (numbers, wide): (Vec<[u8; 4]>, Vec<[u8; 8]>);
    let bytes: Vec<Option<&[u8]>> = match (physical, flat.as_string_opt::<i32>()) {
        (PhysicalType::BYTE_ARRAY, Some(v)) => v.iter().map(|v| v.map(str::as_bytes)).collect(),
        (PhysicalType::INT32, _) if flat.as_primitive_opt::<UInt32Type>().is_some() => {
            let v = flat.as_primitive::<UInt32Type>();
            numbers = v.values().iter().map(|n| n.to_be_bytes()).collect();
            numbers.iter().zip(v.iter()).map(|(b, n)| n.map(|_| &b[..])).collect()
        }
        (PhysicalType::INT64, _) if flat.as_primitive_opt::<UInt64Type>().is_some() => {
            let v = flat.as_primitive::<UInt64Type>();
            wide = v.values().iter().map(|n| n.to_be_bytes()).collect();
            wide.iter().zip(v.iter()).map(|(b, n)| n.map(|_| &b[..])).collect()
        }
        _ => return Err(ParquetError::General(format!("{path}: {physical} from {}", flat.data_type()))),
    };
    // The items of a row's list, or the row's value itself.
    let items = |k: u32| -> Range<usize> {
        match lists {
            Some(o) => match (o.get(k as usize), o.get(k as usize + 1)) {
                (Some(&a), Some(&b)) => a as usize..b as usize,
                _ => 0..0,
            },
            None => k as usize..k as usize + 1,
        }
    };
    // The values the rows use: their keys, or the items of their keys' lists (a plain loop over the rows,
    // then one over the keys: a chain of ranges per row and column was 5 % of `lake/write_steady`).
    let (keys_used, out_of_range) = seen.of(keys, values.len());
    let used: Cow<'_, [bool]> = match lists {
        None => Cow::Borrowed(keys_used),
        Some(_) => {
            let mut items_used = vec![false; bytes.len()];
            for k in (0..keys_used.len() as u32).filter(|&k| keys_used[k as usize]) {
                for i in items(k) {
                    if let Some(u) = items_used.get_mut(i) {
                        *u = true;
                    }
                }
            }
            Cow::Owned(items_used)
        }
    };
    let Some(dict) = Dict::of_used(&bytes, &used) else { return Ok(None) };
    // A flat column whose rows all have a value (most keyed columns): its indices are its keys remapped, in
    // one pass, and its definition levels one run; no level per row.
    let dense = lists.is_none() && !out_of_range && !used.iter().zip(&dict.remap).any(|(&u, &id)| u && id == NO_VALUE);
    // A value as PLAIN encoding, statistics and bloom filters hold it.
    let plain = |v: &[u8]| -> Vec<u8> {
        match physical {
            PhysicalType::INT32 | PhysicalType::INT64 => v.iter().rev().copied().collect(),
            _ => v.to_vec(),
        }
    };
    let mut pages = Pages::new(&descr, props, zstd)?;
    let mut scratch = Vec::new();

    let mut dict_page = Vec::with_capacity(dict.sorted.iter().map(|v| v.len() + 4).sum());
    for v in &dict.sorted {
        if physical == PhysicalType::BYTE_ARRAY {
            dict_page.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        dict_page.extend_from_slice(&plain(v));
    }
    pages.write(&dict_page, |buf| Page::DictionaryPage {
        buf,
        num_values: dict.sorted.len() as u32,
        encoding: Encoding::PLAIN,
        is_sorted: true,
    })?;

    let width = bit_width(dict.sorted.len() as u32 - 1);
    // One value on every row (a node, a namespace, an image): each page is one run of index 0.
    let constant = dense && dict.sorted.len() == 1;
    let page_rows = props.data_page_row_count_limit().clamp(1, 1 << 20);
    let bounds_of = |lo: u32, hi: u32| {
        let (lo, hi) = (plain(dict.sorted[lo as usize]), plain(dict.sorted[hi as usize]));
        match physical {
            PhysicalType::BYTE_ARRAY => {
                let cut = props.column_index_truncate_length();
                (truncated_min(lo, cut).0, truncated_max(hi, cut).0)
            }
            _ => (lo, hi),
        }
    };
    // A column of the same key group whose keys map to the same indices as the last one's has the same index
    // pages, compressed once: `tid` beside `pid` (a process's main thread), identity columns whose values
    // sort alike.
    if dense && let Some(same) = seen.pages_like(&dict.remap, max_def) {
        for p in same {
            let bounds = Some(bounds_of(p.lo, p.hi));
            pages.data_compressed(p.buf.clone(), p.raw_len, Encoding::RLE_DICTIONARY, (p.rows, p.rows, 0), bounds)?;
        }
        return close(pages, descr, props, &path, &dict, physical, plain).map(Some);
    }
    let mut kept = Vec::new();
    let mut ids = Vec::with_capacity(page_rows.min(keys.len()));
    let (mut defs, mut reps) = (Vec::with_capacity(page_rows.min(keys.len())), Vec::new());
    for rows in keys.chunks(page_rows) {
        ids.clear();
        defs.clear();
        reps.clear();
        if constant {
            // Every row's index is 0: nothing per row.
        } else if dense {
            ids.extend(rows.iter().map(|&k| dict.remap.get(k as usize).copied().unwrap_or(NO_VALUE)));
        } else {
            // A value's index and definition level (a null: one below the maximum).
            let mut value = |v: usize, defs: &mut Vec<u32>| {
                let id = dict.remap.get(v).copied().unwrap_or(NO_VALUE);
                defs.push(max_def.saturating_sub(u32::from(id == NO_VALUE)));
                if id != NO_VALUE {
                    ids.push(id);
                }
            };
            for &k in rows {
                match lists {
                    // One level per row.
                    None => value(k as usize, &mut defs),
                    // One per item; an empty list is one level two below the items', a null list (only an
                    // optional list has them) one of 0.
                    Some(_) => {
                        let row = items(k);
                        if row.is_empty() {
                            let null = null_lists.is_some_and(|n| n.is_null(k as usize));
                            defs.push(if null { 0 } else { max_def - 2 });
                            reps.push(0);
                        }
                        for (j, item) in row.enumerate() {
                            value(item, &mut defs);
                            reps.push(u32::from(j > 0));
                        }
                    }
                }
            }
        }
        // Levels: one per row of a flat column, one per item (or empty list) of a list column.
        let levels = if dense { rows.len() } else { defs.len() };
        let present = if constant { rows.len() } else { ids.len() };
        let nulls = (levels - present) as u64;
        scratch.clear();
        if max_rep > 0 {
            levels_rle(&reps, 1, &mut scratch);
        }
        if max_def > 0 && dense {
            constant_levels(levels, max_def, &mut scratch);
        } else if max_def > 0 {
            levels_rle(&defs, bit_width(max_def), &mut scratch);
        } else if nulls > 0 {
            return Err(ParquetError::General(format!("{path}: null value in a required column")));
        }
        scratch.push(width);
        let (lo, hi) = if constant {
            rle_run(rows.len(), 0, width, &mut scratch);
            (0, 0)
        } else {
            rle_hybrid(&ids, width, &mut scratch);
            // One pass that vectorizes, where `min` and `max` of an iterator were two that did not.
            ids.iter().fold((u32::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        };
        let bounds = (present > 0).then(|| bounds_of(lo, hi));
        let buf = pages.data(&scratch, Encoding::RLE_DICTIONARY, (rows.len(), levels, nulls), bounds)?;
        if dense {
            kept.push(SeenPage { buf, raw_len: scratch.len(), rows: rows.len(), lo, hi });
        }
    }
    if dense {
        seen.keep_pages(dict.remap.clone(), max_def, kept);
    }
    close(pages, descr, props, &path, &dict, physical, plain).map(Some)
}

/// The chunk's bloom filter and statistics, and its bytes and metadata.
fn close(
    pages: Pages<'_>,
    descr: ColumnDescPtr,
    props: &WriterProperties,
    path: &ColumnPath,
    dict: &Dict<'_>,
    physical: PhysicalType,
    plain: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let bloom_filter = match props.bloom_filter_properties(path) {
        Some(bp) => {
            let mut sbbf = Sbbf::new_with_ndv_fpp(dict.sorted.len() as u64, bp.fpp())?;
            for v in &dict.sorted {
                sbbf.insert(plain(v).as_slice());
            }
            Some(sbbf)
        }
        None => None,
    };
    // The dictionary holds only values the chunk's rows use, sorted: its ends are the chunk's min and max.
    let (min, max) = (dict.sorted[0], dict.sorted[dict.sorted.len() - 1]);
    // An unsigned column's statistics are its signed bits, ordered as unsigned (its logical type says so).
    let number = |be: &[u8]| be.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let nulls = Some(pages.nulls);
    let stats = match physical {
        PhysicalType::INT32 => {
            Statistics::int32(Some(number(min) as u32 as i32), Some(number(max) as u32 as i32), None, nulls, false)
        }
        PhysicalType::INT64 => {
            Statistics::int64(Some(number(min) as i64), Some(number(max) as i64), None, nulls, false)
        }
        _ => {
            let cut = props.statistics_truncate_length();
            let ((min, min_cut), (max, max_cut)) = (truncated_min(min.to_vec(), cut), truncated_max(max.to_vec(), cut));
            match Statistics::byte_array(Some(min.into()), Some(max.into()), None, nulls, false) {
                Statistics::ByteArray(v) => {
                    Statistics::ByteArray(v.with_min_is_exact(!min_cut).with_max_is_exact(!max_cut))
                }
                other => other,
            }
        }
    };
    let encodings = vec![Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY];
    pages.close(descr, encodings, stats, bloom_filter)
}

/// The file's dictionary: the values the rows use, sorted, and each key's index among them.
struct Dict<'a> {
    sorted: Vec<&'a [u8]>,
    /// Per value (key, or list item) of the batch: its index in `sorted`, or `NO_VALUE`.
    remap: Vec<u32>,
}

impl<'a> Dict<'a> {
    /// None when no value is used. A file may hold a slice of the batch (one hour of it), so only the values
    /// its rows use (`used`) go into its dictionary.
    fn of_used(values: &[Option<&'a [u8]>], used: &[bool]) -> Option<Dict<'a>> {
        let mut order: Vec<(&'a [u8], u32)> = values
            .iter()
            .zip(0..)
            .filter_map(|(v, k)| v.filter(|_| used.get(k as usize) == Some(&true)).map(|v| (v, k)))
            .collect();
        if order.is_empty() {
            return None;
        }
        order.sort_unstable();
        let mut remap = vec![NO_VALUE; values.len()];
        let mut sorted: Vec<&[u8]> = Vec::with_capacity(order.len());
        for (v, k) in order {
            // Two keys may hold equal values (an identity differing in another column): one entry.
            if sorted.last() != Some(&v) {
                sorted.push(v);
            }
            remap[k as usize] = sorted.len() as u32 - 1;
        }
        Some(Dict { sorted, remap })
    }
}

/// A string's lower bound of at most `cut` bytes, as the Arrow writer keeps it in page and chunk statistics (a
/// command line can be 1 MiB); whether it was cut. parquet-rs keeps its own private.
fn truncated_min(mut v: Vec<u8>, cut: Option<usize>) -> (Vec<u8>, bool) {
    let Some(cut) = cut.filter(|&c| c > 0 && v.len() > c) else { return (v, false) };
    // The values are UTF-8 (lossy by the builders): cut at a character boundary.
    let at = (1..=cut).rev().find(|&i| !is_continuation(v[i])).unwrap_or(cut);
    v.truncate(at);
    (v, true)
}

/// A string's upper bound of at most `cut` bytes: the prefix with its last character incremented (one
/// that cannot be, dropped). The value itself when no such bound exists.
fn truncated_max(v: Vec<u8>, cut: Option<usize>) -> (Vec<u8>, bool) {
    let Some(cut) = cut.filter(|&c| c > 0 && v.len() > c) else { return (v, false) };
    let prefix = match std::str::from_utf8(&v) {
        Ok(text) => {
            let at = (cut.saturating_sub(3)..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            text[..at].char_indices().rev().find_map(|(i, c)| {
                let next = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8())?;
                let mut out = text.as_bytes()[..i + c.len_utf8()].to_vec();
                next.encode_utf8(&mut out[i..]);
                Some(out)
            })
        }
        Err(_) => {
            let mut out = v[..cut].to_vec();
            while out.last() == Some(&u8::MAX) {
                out.pop();
            }
            out.last_mut().map(|b| *b += 1).map(|()| out)
        }
    };
    match prefix {
        Some(p) => (p, true),
        None => (v, false),
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

/// Which keys the rows of a chunk use, kept for the next column: the columns of a key group (the ~20
/// identity columns, the 11 process columns) share their keys, and marking them was a third of `encode`'s own
/// time when each column did it again.
#[derive(Default)]
pub(crate) struct SeenKeys {
    /// The keys (address and length) and value count it was computed for.
    of: Option<(usize, usize, usize)>,
    used: Vec<bool>,
    /// A key past the values: a bug of the batch builder, whose rows stay null rather than panic.
    out_of_range: bool,
    /// The data pages of the last dense column of these keys: its keys' indices, maximum definition level
    /// and pages.
    pages: Option<(Vec<u32>, u32, Vec<SeenPage>)>,
}

/// A data page of a dense column, compressed: all a column with the same indices needs.
struct SeenPage {
    buf: Bytes,
    raw_len: usize,
    rows: usize,
    /// The page's smallest and largest index.
    lo: u32,
    hi: u32,
}

impl SeenKeys {
    fn of(&mut self, keys: &[u32], values: usize) -> (&[bool], bool) {
        let this = Some((keys.as_ptr() as usize, keys.len(), values));
        if self.of != this {
            self.used.clear();
            self.used.resize(values, false);
            self.out_of_range = false;
            for &k in keys {
                match self.used.get_mut(k as usize) {
                    Some(u) => *u = true,
                    None => self.out_of_range = true,
                }
            }
            self.of = this;
            self.pages = None;
        }
        (&self.used, self.out_of_range)
    }

    /// The pages of the last dense column of these keys, when `remap` gives its keys the same indices.
    fn pages_like(&self, remap: &[u32], max_def: u32) -> Option<&[SeenPage]> {
        match &self.pages {
            Some((r, d, pages)) if r.as_slice() == remap && *d == max_def => Some(pages),
            _ => None,
        }
    }

    fn keep_pages(&mut self, remap: Vec<u32>, max_def: u32, pages: Vec<SeenPage>) {
        self.pages = Some((remap, max_def, pages));
    }
}
