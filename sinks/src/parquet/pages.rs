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
///
/// A run can only start where the literals before it fill whole groups of 8, so only the group boundaries
/// are looked at: a run of 8 or more through a boundary is RLE from there, the values before it stay in the
/// literals (what borrowing them from the run's start would give too). A boundary costs one compare when no
/// run starts there: looking for runs at every value was half the cost of a dictionary column's pages.
pub(crate) fn rle_hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let mut literal_start = 0;
    let mut group = 0;
    while let Some(next) = values.get(group..group + 8) {
        let v = next[0];
        if next[1..].iter().any(|&x| x != v) {
            group += 8;
            continue;
        }
        let end = values[group + 8..].iter().position(|&x| x != v).map_or(values.len(), |n| group + 8 + n);
        bit_packed(&values[literal_start..group], width, out);
        rle_run(end - group, v, width, out);
        (literal_start, group) = (end, end);
    }
    bit_packed(&values[literal_start..], width, out);
}

/// Bit-packed runs of `values` (the last group of 8 padded with zeros; readers stop at the value count).
fn bit_packed(values: &[u32], width: u8, out: &mut Vec<u8>) {
    if values.is_empty() {
        return;
    }
    let w = usize::from(width);
    // Headers count groups of 8 in a ULEB128 u32; 2^16 groups per run keeps them small.
    for run in values.chunks(8 << 16) {
        let groups = run.len().div_ceil(8);
        uleb128(((groups as u64) << 1) | 1, out);
        // Room for the last group's whole register too (`pack8`).
        out.reserve(groups * w + 16);
        let mut whole = run.chunks_exact(8);
        for g in whole.by_ref() {
            pack8(g, w, out);
        }
        let tail = whole.remainder();
        if !tail.is_empty() {
            let mut last = [0u32; 8];
            last[..tail.len()].copy_from_slice(tail);
            pack8(&last, w, out);
        }
    }
}

/// 8 values of `w` bits as `w` bytes, least significant bit first. Up to 16 bits (any dictionary of up to
/// 65,536 values, every level) in one register's shifts and one copy; a byte at a time beyond.
fn pack8(g: &[u32], w: usize, out: &mut Vec<u8>) {
    let mask = if w >= 32 { u32::MAX } else { (1u32 << w) - 1 };
    let len = out.len();
    // The whole register is copied (a fixed size: no call to memcpy, which a copy of `w` bytes was), then
    // cut to the `w` bytes that hold the values.
    if w <= 8 {
        let acc = g.iter().enumerate().fold(0u64, |acc, (j, &v)| acc | (u64::from(v & mask) << (j * w)));
        out.extend_from_slice(&acc.to_le_bytes());
        out.truncate(len + w);
    } else if w <= 16 {
        let acc = g.iter().enumerate().fold(0u128, |acc, (j, &v)| acc | (u128::from(v & mask) << (j * w)));
        out.extend_from_slice(&acc.to_le_bytes());
        out.truncate(len + w);
    } else {
        let (mut acc, mut bits) = (0u64, 0);
        for &v in g {
            acc |= u64::from(v & mask) << bits;
            bits += w;
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
    }
}

/// `n` times `v` as `DELTA_BINARY_PACKED` (blocks of 128 values in 4 miniblocks, as parquet-rs writes them):
/// the header with the first value, then per block a zero minimum delta and four zero bit widths, with no
/// packed bits at all.
pub(crate) fn zero_deltas(v: i64, n: usize, out: &mut Vec<u8>) {
    uleb128(128, out);
    uleb128(4, out);
    uleb128(n as u64, out);
    uleb128(((v << 1) ^ (v >> 63)) as u64, out);
    for _ in 0..n.saturating_sub(1).div_ceil(128) {
        out.extend_from_slice(&[0; 5]);
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

#[cfg(test)]
mod tests {
    use super::{bit_width, rle_hybrid};

    /// The hybrid decoded as the format describes it (a reader written from the spec, not from the encoder).
    fn decode(mut buf: &[u8], width: u8, n: usize) -> Vec<u32> {
        let uleb = |buf: &mut &[u8]| {
            let (mut v, mut shift) = (0u64, 0);
            while let Some((&b, rest)) = buf.split_first() {
                *buf = rest;
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            v
        };
        let bytes = usize::from(width).div_ceil(8);
        let mut out = Vec::new();
        while out.len() < n && !buf.is_empty() {
            let header = uleb(&mut buf);
            if header & 1 == 0 {
                let mut v = [0u8; 4];
                v[..bytes].copy_from_slice(&buf[..bytes]);
                buf = &buf[bytes..];
                out.extend(std::iter::repeat_n(u32::from_le_bytes(v), (header >> 1) as usize));
            } else {
                let values = (header >> 1) as usize * 8;
                let packed = values * usize::from(width) / 8;
                for i in 0..values {
                    let bit = i * usize::from(width);
                    let v = (0..usize::from(width))
                        .map(|b| u32::from((packed_bit(&buf[..packed], bit + b)) as u8) << b)
                        .fold(0, |a, b| a | b);
                    out.push(v);
                }
                buf = &buf[packed..];
            }
        }
        out.truncate(n);
        out
    }

    fn packed_bit(buf: &[u8], bit: usize) -> bool {
        buf[bit / 8] >> (bit % 8) & 1 == 1
    }

    #[test]
    fn the_hybrid_decodes_to_its_values_at_every_width() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for width in 1..=32u8 {
            let max = if width == 32 { u32::MAX } else { (1u32 << width) - 1 };
            for shape in 0..6 {
                let n = (next() % 300) as usize + usize::from(shape == 0);
                let values: Vec<u32> = match shape {
                    // Random, runs of random lengths, one value, runs right at and around group boundaries.
                    0 | 1 => (0..n).map(|_| (next() as u32) & max).collect(),
                    2 => {
                        let mut v = Vec::new();
                        while v.len() < n {
                            let x = (next() as u32) & max;
                            v.extend(std::iter::repeat_n(x, (next() % 20) as usize + 1));
                        }
                        v
                    }
                    3 => vec![max; n],
                    4 => (0..n).map(|i| if (5..21).contains(&(i % 40)) { max } else { i as u32 & max }).collect(),
                    _ => (0..n).map(|i| (i / 8 % 2) as u32 * max).collect(),
                };
                let mut buf = Vec::new();
                rle_hybrid(&values, width, &mut buf);
                assert_eq!(decode(&buf, width, values.len()), values, "width {width}, shape {shape}");
                assert!(bit_width(max) == width, "width {width}");
            }
        }
    }
}
