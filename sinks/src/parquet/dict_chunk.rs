//! Column chunks encoded from a dictionary the batch already holds.
//!
//! The identity columns (namespace, pod, container_id, image, ... ~20 strings) hold a few distinct values per
//! file, each repeated on thousands of rows. The batch builder interns them already (`identity.rs`): one key per
//! row into a table of distinct identities. Given as plain strings, the Parquet writer re-does per row and per
//! column what that table knows: it hashes each value into its dictionary, compares it for the page's min and
//! max, and hashes it again into the bloom filter. With 20 such columns this was about a quarter of the cost of
//! writing a file (`lake/write_mixed`, BENCHMARKS.md).
//!
//! Here each chunk is written from the keys: the dictionary page is the distinct values (sorted, so a page's
//! min and max are those of its smallest and largest index), the data pages are the indices, and the bloom
//! filter gets each distinct value once. The result is what the Arrow writer makes of the same column (same
//! encodings, page index, bloom filter, zstd), spliced into the row group with `append_column`; any reader
//! sees an ordinary dictionary-encoded column (tests read it back with parquet-rs and pyarrow).

use ::parquet::basic::{BoundaryOrder, Compression, Encoding, Type as PhysicalType};
use ::parquet::bloom_filter::Sbbf;
use ::parquet::column::page::{CompressedPage, Page, PageWriter};
use ::parquet::column::writer::ColumnCloseResult;
use ::parquet::errors::ParquetError;
use ::parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder};
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::statistics::Statistics;
use ::parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use ::parquet::schema::types::ColumnDescPtr;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::buffer::{Buffer, OffsetBuffer};
use bytes::Bytes;

/// Columns of a batch given as distinct values plus one key per row: the writer encodes these columns from
/// the keys, and the batch holds only a `placeholder` for them until `materialize`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dictionaries {
    pub(crate) groups: Vec<KeyGroup>,
}

/// Columns that share one key per row (the ~20 identity columns share the row's identity).
#[derive(Clone, Debug)]
pub(crate) struct KeyGroup {
    /// One per row of the batch.
    pub(crate) keys: UInt32Array,
    /// (column index in the batch, distinct values indexed by key: `values[keys[row]]` is the row's value;
    /// a null value is a null row).
    pub(crate) columns: Vec<(usize, StringArray)>,
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
        Dictionaries { groups: groups.collect() }
    }

    /// The distinct values of `column` and the keys of rows `rows`, when the column is keyed. An error when
    /// it is keyed but the keys do not cover the rows: its column in the batch is only a placeholder.
    pub(crate) fn column(
        &self,
        column: usize,
        rows: Range<usize>,
    ) -> Result<Option<(&StringArray, &[u32])>, ParquetError> {
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

    /// `batch` (the batch's rows from `offset` on) with its keyed columns gathered from the keys, in place of
    /// their placeholders: what a retry or any other reader of the batch needs. Batches from elsewhere (whose
    /// schema is not the keys') come back as they are.
    pub(crate) fn materialize(&self, batch: &RecordBatch, offset: usize) -> RecordBatch {
        let mut columns = batch.columns().to_vec();
        for g in &self.groups {
            let keys = g.keys.values().get(offset..offset + batch.num_rows()).unwrap_or_default();
            for (c, values) in &g.columns {
                if let Some(slot) = columns.get_mut(*c) {
                    let rows: StringArray = keys
                        .iter()
                        .map(|&k| (k as usize) < values.len() && values.is_valid(k as usize))
                        .zip(keys)
                        .map(|(valid, &k)| valid.then(|| values.value(k as usize)))
                        .collect();
                    *slot = Arc::new(rows);
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
/// caller writes that column the ordinary way (all nulls cost nothing there).
pub(crate) fn encode(
    descr: ColumnDescPtr,
    props: &WriterProperties,
    zstd: &mut Zstd,
    values: &StringArray,
    keys: &[u32],
) -> Result<Option<(Bytes, ColumnCloseResult)>, ParquetError> {
    let Some(dict) = Dict::of_rows(values, keys) else { return Ok(None) };
    let path = descr.path().clone();
    let compression = props.compression(&path);
    let level = match compression {
        Compression::ZSTD(level) => level.compression_level(),
        other => return Err(ParquetError::General(format!("dictionary chunks are written with zstd, not {other}"))),
    };
    let zstd = zstd.at(level)?;
    let max_def = descr.max_def_level();
    if descr.max_rep_level() != 0 || max_def > 1 || descr.physical_type() != PhysicalType::BYTE_ARRAY {
        return Err(ParquetError::General(format!("{path}: not a flat byte array column")));
    }
    let mut sink = TrackedWrite::new(Vec::new());
    let mut pages = SerializedPageWriter::new(&mut sink);
    let mut scratch = Vec::new();
    let mut compressed = 0u64;
    let mut uncompressed = 0u64;

    let mut dict_page = Vec::with_capacity(dict.sorted.iter().map(|v| v.len() + 4).sum());
    for v in &dict.sorted {
        dict_page.extend_from_slice(&(v.len() as u32).to_le_bytes());
        dict_page.extend_from_slice(v);
    }
    let page = compress(zstd, &dict_page, |buf| Page::DictionaryPage {
        buf,
        num_values: dict.sorted.len() as u32,
        encoding: Encoding::PLAIN,
        is_sorted: true,
    })?;
    let spec = pages.write_page(page)?;
    compressed += spec.compressed_size as u64;
    uncompressed += spec.uncompressed_size as u64;

    let width = bit_width(dict.sorted.len() as u32 - 1);
    let page_rows = props.data_page_row_count_limit().clamp(1, 1 << 20);
    let mut column_index = ColumnIndexBuilder::new(PhysicalType::BYTE_ARRAY);
    column_index.set_boundary_order(BoundaryOrder::UNORDERED);
    let mut offset_index = OffsetIndexBuilder::new();
    let mut data_offset = None;
    let mut chunk_nulls = 0u64;
    let mut ids = Vec::with_capacity(page_rows.min(keys.len()));
    let mut levels = Vec::with_capacity(page_rows.min(keys.len()));
    for rows in keys.chunks(page_rows) {
        ids.clear();
        levels.clear();
        for &k in rows {
            let id = dict.remap.get(k as usize).copied().unwrap_or(NO_VALUE);
            levels.push(u32::from(id != NO_VALUE));
            if id != NO_VALUE {
                ids.push(id);
            }
        }
        let nulls = (rows.len() - ids.len()) as u64;
        scratch.clear();
        if max_def == 1 {
            let start = scratch.len();
            scratch.extend_from_slice(&[0; 4]);
            rle_hybrid(&levels, 1, &mut scratch);
            let len = (scratch.len() - start - 4) as u32;
            scratch[start..start + 4].copy_from_slice(&len.to_le_bytes());
        } else if nulls > 0 {
            return Err(ParquetError::General(format!("{path}: null value in a required column")));
        }
        scratch.push(width);
        rle_hybrid(&ids, width, &mut scratch);
        let page = compress(zstd, &scratch, |buf| Page::DataPage {
            buf,
            num_values: rows.len() as u32,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        })?;
        let spec = pages.write_page(page)?;
        data_offset.get_or_insert(spec.offset as i64);
        compressed += spec.compressed_size as u64;
        uncompressed += spec.uncompressed_size as u64;
        offset_index.append_row_count(rows.len() as i64);
        offset_index.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        chunk_nulls += nulls;
        match (ids.iter().min(), ids.iter().max()) {
            (Some(&lo), Some(&hi)) => {
                let (lo, hi) = (dict.sorted[lo as usize], dict.sorted[hi as usize]);
                column_index.append(false, lo.to_vec(), hi.to_vec(), nulls as i64);
            }
            _ => column_index.append(true, Vec::new(), Vec::new(), nulls as i64),
        }
    }
    pages.close()?;

    let bloom_filter = match props.bloom_filter_properties(&path) {
        Some(bp) => {
            let mut sbbf = Sbbf::new_with_ndv_fpp(dict.sorted.len() as u64, bp.fpp())?;
            for v in &dict.sorted {
                sbbf.insert(*v);
            }
            Some(sbbf)
        }
        None => None,
    };
    // The dictionary holds only values the chunk's rows use, sorted: its ends are the chunk's min and max.
    let (min, max) = (dict.sorted[0], dict.sorted[dict.sorted.len() - 1]);
    let stats = Statistics::byte_array(Some(min.into()), Some(max.into()), None, Some(chunk_nulls), false);
    let metadata = ColumnChunkMetaData::builder(descr)
        .set_compression(compression)
        .set_encodings(vec![Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY])
        .set_num_values(keys.len() as i64)
        .set_total_compressed_size(compressed as i64)
        .set_total_uncompressed_size(uncompressed as i64)
        .set_dictionary_page_offset(Some(0))
        .set_data_page_offset(data_offset.unwrap_or(0))
        .set_statistics(stats)
        .build()?;
    let bytes = Bytes::from(sink.into_inner()?);
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: keys.len() as u64,
        metadata,
        bloom_filter,
        column_index: Some(column_index.build()?),
        offset_index: Some(offset_index.build()),
    };
    Ok(Some((bytes, close)))
}

/// One zstd context for the chunks of a file: creating one per chunk (and its workspace, zeroed) was 2 % of
/// `lake/write_steady`.
#[derive(Default)]
pub(crate) struct Zstd(Option<(i32, zstd::bulk::Compressor<'static>)>);

impl Zstd {
    fn at(&mut self, level: i32) -> Result<&mut zstd::bulk::Compressor<'static>, ParquetError> {
        let external = |e| ParquetError::External(Box::new(e));
        match &mut self.0 {
            Some((l, c)) if *l == level => {}
            Some((l, c)) => {
                c.set_compression_level(level).map_err(external)?;
                *l = level;
            }
            None => self.0 = Some((level, zstd::bulk::Compressor::new(level).map_err(external)?)),
        }
        self.0.as_mut().map(|(_, c)| c).ok_or_else(|| ParquetError::General("no zstd context".into()))
    }
}

fn compress(
    zstd: &mut zstd::bulk::Compressor<'_>,
    raw: &[u8],
    page: impl FnOnce(Bytes) -> Page,
) -> Result<CompressedPage, ParquetError> {
    let out = zstd.compress(raw).map_err(|e| ParquetError::External(Box::new(e)))?;
    Ok(CompressedPage::new(page(Bytes::from(out)), raw.len()))
}

/// The file's dictionary: the values the rows use, sorted, and each key's index among them.
struct Dict<'a> {
    sorted: Vec<&'a [u8]>,
    /// Per key of the batch: its index in `sorted`, or `NO_VALUE`.
    remap: Vec<u32>,
}

impl<'a> Dict<'a> {
    /// None when no row has a value. A file may hold a slice of the batch (one hour of it), so only the
    /// values its rows use go into its dictionary.
    fn of_rows(values: &'a StringArray, keys: &[u32]) -> Option<Dict<'a>> {
        let mut used = vec![false; values.len()];
        for &k in keys {
            // A key past the values is a bug of the batch builder: keep the row null rather than panic.
            if let Some(u) = used.get_mut(k as usize) {
                *u = true;
            }
        }
        let mut order: Vec<u32> =
            (0..values.len() as u32).filter(|&k| used[k as usize] && values.is_valid(k as usize)).collect();
        if order.is_empty() {
            return None;
        }
        order.sort_unstable_by(|&a, &b| values.value(a as usize).cmp(values.value(b as usize)));
        let mut remap = vec![NO_VALUE; values.len()];
        let mut sorted: Vec<&[u8]> = Vec::with_capacity(order.len());
        for k in order {
            let v = values.value(k as usize).as_bytes();
            // Two keys may hold equal strings (an identity differing in another column): one entry.
            if sorted.last() != Some(&v) {
                sorted.push(v);
            }
            remap[k as usize] = sorted.len() as u32 - 1;
        }
        Some(Dict { sorted, remap })
    }
}

/// Bits needed for values up to `max` (at least 1: some readers mishandle width 0).
fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()).max(1) as u8
}

/// Appends `values` in Parquet's RLE / bit-packing hybrid encoding (without a length prefix): runs of 8 or
/// more equal values as RLE runs, the rest bit-packed in groups of 8.
pub(crate) fn rle_hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let mut literal_start = 0;
    let mut i = 0;
    while i < values.len() {
        let v = values[i];
        let mut run = 1;
        while i + run < values.len() && values[i + run] == v {
            run += 1;
        }
        // A run can only start once the literals before it fill whole groups of 8: borrow from the run.
        let pad = (8 - (i - literal_start) % 8) % 8;
        if run >= pad + 8 {
            bit_packed(&values[literal_start..i + pad], width, out);
            let rle = run - pad;
            uleb128((rle as u64) << 1, out);
            out.extend_from_slice(&v.to_le_bytes()[..usize::from(width).div_ceil(8)]);
            i += run;
            literal_start = i;
        } else {
            i += run;
        }
    }
    bit_packed(&values[literal_start..], width, out);
}

/// Bit-packed runs of `values` (the last group of 8 padded with zeros; readers stop at the value count).
fn bit_packed(values: &[u32], width: u8, out: &mut Vec<u8>) {
    // Headers count groups of 8 in a ULEB128 u32; 2^16 groups per run keeps them small.
    for run in values.chunks(8 << 16) {
        let groups = run.len().div_ceil(8);
        uleb128(((groups as u64) << 1) | 1, out);
        let mut acc = 0u64;
        let mut bits = 0u32;
        for g in 0..groups {
            for j in 0..8 {
                let v = run.get(g * 8 + j).copied().unwrap_or(0);
                acc |= u64::from(v) << bits;
                bits += u32::from(width);
                while bits >= 8 {
                    out.push(acc as u8);
                    acc >>= 8;
                    bits -= 8;
                }
            }
        }
        // 8 values of any width end on a byte boundary: nothing is left in `acc`.
        debug_assert_eq!(bits, 0);
    }
}

fn uleb128(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
