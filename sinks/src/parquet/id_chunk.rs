//! `event_id` column chunks written from the ids' numbers.
//!
//! An event id is a u64 shown as 16 lower-case hex digits. Built as strings, each row cost a formatted copy
//! into a string builder, and the Parquet writer then compared each string for the page's min and max,
//! hashed it into the bloom filter and measured its length: 65-93 ns a row in the writer alone, the most of
//! any column (a per-column timer, session 6, BENCHMARKS.md). Here the rows' ids stay numbers until their page is written: fixed-width
//! hex sorts as the numbers do, so a page's min and max are those of its numbers, and every length is 16.
//! The chunk is what the writer's properties ask of `event_id`: `DELTA_LENGTH_BYTE_ARRAY`, zstd, page index,
//! bloom filter.

use ::parquet::basic::{Encoding, Type as PhysicalType};
use ::parquet::bloom_filter::Sbbf;
use ::parquet::column::writer::ColumnCloseResult;
use ::parquet::errors::ParquetError;
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::statistics::Statistics;
use ::parquet::schema::types::ColumnDescPtr;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use bytes::Bytes;

use super::pages::{Pages, Zstd, zero_deltas};

/// `v` as 16 lower-case hex digits: each half's nibbles spread into the bytes of a word, then turned into
/// digits all at once (a table lookup per digit was a quarter of this column's cost).
pub(crate) fn hex16(v: u64) -> [u8; 16] {
    // Nibble i of `x` (from the least significant) in byte i.
    fn spread(x: u32) -> u64 {
        let x = u64::from(x);
        let x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
        let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
        ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f)
    }
    fn digits(nibbles: u64) -> u64 {
        // 1 in each byte whose nibble is 10 or more: those become 'a'.. rather than ':'..
        let letters = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        // The most significant nibble is written first.
        (nibbles + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64).swap_bytes()
    }
    let mut hex = [0u8; 16];
    hex[..8].copy_from_slice(&digits(spread((v >> 32) as u32)).to_le_bytes());
    hex[8..].copy_from_slice(&digits(spread(v as u32)).to_le_bytes());
    hex
}

#[cfg(test)]
#[test]
fn hex16_is_format_s() {
    let mut v = 0x0123_4567_89ab_cdefu64;
    for _ in 0..10_000 {
        assert_eq!(std::str::from_utf8(&hex16(v)).unwrap_or_default(), format!("{v:016x}"));
        v = v.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (v >> 3);
    }
    for v in [0, u64::MAX, 0xa, 0x9, 0xf0, 1 << 63] {
        assert_eq!(std::str::from_utf8(&hex16(v)).unwrap_or_default(), format!("{v:016x}"));
    }
}

/// `ids` as the Utf8 column of their hex strings (batches for other writers, rows kept for a retry).
pub(crate) fn hex_column(ids: &[u64]) -> ArrayRef {
    let mut hex = StringBuilder::with_capacity(ids.len(), 16 * ids.len());
    for &id in ids {
        hex.append_value(std::str::from_utf8(&hex16(id)).unwrap_or_default());
    }
    Arc::new(hex.finish())
}

/// The column chunk of `ids` (one per row, a required byte array column).
pub(crate) fn encode(
    descr: ColumnDescPtr,
    props: &WriterProperties,
    zstd: &mut Zstd,
    ids: &[u64],
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let path = descr.path().clone();
    if descr.physical_type() != PhysicalType::BYTE_ARRAY || descr.max_def_level() != 0 || descr.max_rep_level() != 0 {
        return Err(ParquetError::General(format!("{path}: not a required flat byte array column")));
    }
    let (Some(&min), Some(&max)) = (ids.iter().min(), ids.iter().max()) else {
        return Err(ParquetError::General(format!("{path}: a chunk of no rows")));
    };
    let mut pages = Pages::new(&descr, props, zstd)?;
    let page_rows = props.data_page_row_count_limit().clamp(1, 1 << 20);
    let mut raw = Vec::with_capacity(page_rows.min(ids.len()) * 16 + 64);
    let mut bloom_filter = match props.bloom_filter_properties(&path) {
        // Every id is distinct.
        Some(bp) => Some(Sbbf::new_with_ndv_fpp(ids.len() as u64, bp.fpp())?),
        None => None,
    };
    for page in ids.chunks(page_rows) {
        raw.clear();
        // Every length is 16: a constant run of lengths.
        zero_deltas(16, page.len(), &mut raw);
        let values = raw.len();
        for &id in page {
            raw.extend_from_slice(&hex16(id));
        }
        if let Some(sbbf) = &mut bloom_filter {
            for hex in raw[values..].chunks_exact(16) {
                sbbf.insert(hex);
            }
        }
        let bounds = page.iter().min().zip(page.iter().max());
        let bounds = bounds.map(|(&lo, &hi)| (hex16(lo).to_vec(), hex16(hi).to_vec()));
        pages.data(&raw, Encoding::DELTA_LENGTH_BYTE_ARRAY, (page.len(), page.len(), 0), bounds)?;
    }
    let (lo, hi) = (hex16(min).to_vec(), hex16(max).to_vec());
    let stats = Statistics::byte_array(Some(lo.into()), Some(hi.into()), None, Some(0), false);
    pages.close(descr, vec![Encoding::DELTA_LENGTH_BYTE_ARRAY], stats, bloom_filter)
}
