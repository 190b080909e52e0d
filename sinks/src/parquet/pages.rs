//! Column chunks written page by page, as the lake's own chunk writers (`dict_chunk`, `id_chunk`, the
//! all-null chunks below) need them: zstd pages with their offset and column index, and the RLE /
//! bit-packing hybrid their levels and dictionary indices are encoded in.

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
use bytes::Bytes;

/// A column chunk written page by page (zstd-compressed), with its offset index and column index: the
/// bytes and metadata `SerializedRowGroupWriter::append_column` takes.
pub(crate) struct Pages<'z> {
    sink: TrackedWrite<Vec<u8>>,
    zstd: &'z mut zstd::bulk::Compressor<'static>,
    compression: Compression,
    compressed: u64,
    uncompressed: u64,
    dictionary_offset: Option<i64>,
    data_offset: Option<i64>,
    offset_index: OffsetIndexBuilder,
    column_index: ColumnIndexBuilder,
    rows: u64,
    levels: u64,
    pub(crate) nulls: u64,
}

impl<'z> Pages<'z> {
    pub(crate) fn new(
        descr: &ColumnDescPtr,
        props: &WriterProperties,
        zstd: &'z mut Zstd,
    ) -> Result<Self, ParquetError> {
        let compression = props.compression(descr.path());
        let level = match compression {
            Compression::ZSTD(level) => level.compression_level(),
            other => return Err(ParquetError::General(format!("chunks are written here with zstd, not {other}"))),
        };
        let mut column_index = ColumnIndexBuilder::new(descr.physical_type());
        column_index.set_boundary_order(BoundaryOrder::UNORDERED);
        Ok(Pages {
            sink: TrackedWrite::new(Vec::new()),
            zstd: zstd.at(level)?,
            compression,
            compressed: 0,
            uncompressed: 0,
            dictionary_offset: None,
            data_offset: None,
            offset_index: OffsetIndexBuilder::new(),
            column_index,
            rows: 0,
            levels: 0,
            nulls: 0,
        })
    }

    /// Compresses `raw` into the page `page` makes of it and writes it; returns its offset.
    pub(crate) fn write(&mut self, raw: &[u8], page: impl FnOnce(Bytes) -> Page) -> Result<i64, ParquetError> {
        let page = compress(self.zstd, raw, page)?;
        self.put(page)
    }

    fn put(&mut self, page: CompressedPage) -> Result<i64, ParquetError> {
        let dictionary = page.page_type() == ::parquet::basic::PageType::DICTIONARY_PAGE;
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(page)?;
        self.compressed += spec.compressed_size as u64;
        self.uncompressed += spec.uncompressed_size as u64;
        let offset = spec.offset as i64;
        if dictionary {
            self.dictionary_offset.get_or_insert(offset);
        } else {
            self.data_offset.get_or_insert(offset);
            self.offset_index.append_offset_and_size(offset, spec.compressed_size as i32);
        }
        Ok(offset)
    }

    /// A data page (v1) of `rows` rows, `levels` values and levels, `nulls` of them null; `bounds` is its
    /// min and max as PLAIN encodes them (None: no value).
    pub(crate) fn data(
        &mut self,
        raw: &[u8],
        encoding: Encoding,
        (rows, levels, nulls): (usize, usize, u64),
        bounds: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Bytes, ParquetError> {
        let buf = Bytes::from(self.zstd.compress(raw).map_err(|e| ParquetError::External(Box::new(e)))?);
        self.data_compressed(buf.clone(), raw.len(), encoding, (rows, levels, nulls), bounds)?;
        Ok(buf)
    }

    /// As `data`, compressed already (`buf`, of `raw_len` bytes uncompressed).
    pub(crate) fn data_compressed(
        &mut self,
        buf: Bytes,
        raw_len: usize,
        encoding: Encoding,
        (rows, levels, nulls): (usize, usize, u64),
        bounds: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), ParquetError> {
        let page = Page::DataPage {
            buf,
            num_values: levels as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        self.put(CompressedPage::new(page, raw_len))?;
        self.offset_index.append_row_count(rows as i64);
        match bounds {
            Some((lo, hi)) => self.column_index.append(false, lo, hi, nulls as i64),
            None => self.column_index.append(true, Vec::new(), Vec::new(), nulls as i64),
        }
        self.rows += rows as u64;
        self.levels += levels as u64;
        self.nulls += nulls;
        Ok(())
    }

    pub(crate) fn close(
        self,
        descr: ColumnDescPtr,
        encodings: Vec<Encoding>,
        stats: Statistics,
        bloom_filter: Option<Sbbf>,
    ) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        let metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(self.compression)
            .set_encodings(encodings)
            .set_num_values(self.levels as i64)
            .set_total_compressed_size(self.compressed as i64)
            .set_total_uncompressed_size(self.uncompressed as i64)
            .set_dictionary_page_offset(self.dictionary_offset)
            .set_data_page_offset(self.data_offset.unwrap_or(0))
            .set_statistics(stats)
            .build()?;
        let bytes = Bytes::from(self.sink.into_inner()?);
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows,
            metadata,
            bloom_filter,
            column_index: Some(self.column_index.build()?),
            offset_index: Some(self.offset_index.build()),
        };
        Ok((bytes, close))
    }
}

/// `n` levels of `value` as one length-prefixed RLE run (a run may be any length; encoders only prefer
/// bit-packing below 8).
pub(crate) fn constant_levels(n: usize, value: u32, out: &mut Vec<u8>) {
    if n == 0 {
        out.extend_from_slice(&0u32.to_le_bytes());
        return;
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    rle_run(n, value, bit_width(value), out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// One RLE run of `n` times `value` (of `width` bits) in the RLE / bit-packing hybrid (a run may be any length).
pub(crate) fn rle_run(n: usize, value: u32, width: u8, out: &mut Vec<u8>) {
    uleb128((n as u64) << 1, out);
    out.extend_from_slice(&value.to_le_bytes()[..usize::from(width).div_ceil(8)]);
}

/// Levels as a data page v1 holds them: their length in bytes, then RLE / bit-packed.
pub(crate) fn levels_rle(levels: &[u32], width: u8, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    rle_hybrid(levels, width, out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// One zstd context for the chunks of a file, rather than one (and its workspace) for each of the ~40 keyed
/// chunks of a row group.
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

/// The chunk of a flat optional column none of whose `rows` rows has a value (`first_time` beside events
/// that are not summaries, `*_raw` beside UTF-8, `child_pid` beside execs: 11 columns of the bench's process
/// files): pages of definition levels that are one run of 0, no values, in place of a level per row through
/// the Arrow writer.
pub(crate) fn nulls(
    descr: ColumnDescPtr,
    props: &WriterProperties,
    zstd: &mut Zstd,
    rows: usize,
) -> Result<Option<(Bytes, ColumnCloseResult)>, ParquetError> {
    let path = descr.path().clone();
    let nulls = Some(rows as u64);
    // Other shapes and types (none in the lake's tables) are left to the Arrow writer.
    let stats = match descr.physical_type() {
        _ if descr.max_rep_level() != 0 || descr.max_def_level() != 1 => return Ok(None),
        PhysicalType::BOOLEAN => Statistics::boolean(None, None, None, nulls, false),
        PhysicalType::INT32 => Statistics::int32(None, None, None, nulls, false),
        PhysicalType::INT64 => Statistics::int64(None, None, None, nulls, false),
        PhysicalType::BYTE_ARRAY => Statistics::byte_array(None, None, None, nulls, false),
        PhysicalType::INT96 | PhysicalType::FLOAT | PhysicalType::DOUBLE | PhysicalType::FIXED_LEN_BYTE_ARRAY => {
            return Ok(None);
        }
    };
    let mut pages = Pages::new(&descr, props, zstd)?;
    let page_rows = props.data_page_row_count_limit().clamp(1, 1 << 20);
    let mut raw = Vec::new();
    let mut left = rows;
    while left > 0 {
        let n = left.min(page_rows);
        raw.clear();
        constant_levels(n, 0, &mut raw);
        pages.data(&raw, Encoding::PLAIN, (n, n, n as u64), None)?;
        left -= n;
    }
    let bloom_filter = match props.bloom_filter_properties(&path) {
        Some(bp) => Some(Sbbf::new_with_ndv_fpp(bp.ndv(), bp.fpp())?),
        None => None,
    };
    pages.close(descr, vec![Encoding::PLAIN, Encoding::RLE], stats, bloom_filter).map(Some)
}

/// Bits needed for values up to `max` (at least 1: some readers mishandle width 0).
pub(crate) fn bit_width(max: u32) -> u8 {
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

pub(crate) fn uleb128(mut v: u64, out: &mut Vec<u8>) {
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
