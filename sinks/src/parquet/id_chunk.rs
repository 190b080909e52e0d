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

/// `v` as 16 lower-case hex digits.
pub(crate) fn hex16(v: u64) -> [u8; 16] {
    let mut hex = [0u8; 16];
    for (i, slot) in hex.iter_mut().enumerate() {
        *slot = b"0123456789abcdef"[((v >> ((15 - i) * 4)) & 15) as usize];
    }
    hex
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
    for page in ids.chunks(page_rows) {
        raw.clear();
        // Every length is 16: a constant run of lengths.
        zero_deltas(16, page.len(), &mut raw);
        for &id in page {
            raw.extend_from_slice(&hex16(id));
        }
        let bounds = page.iter().min().zip(page.iter().max());
        let bounds = bounds.map(|(&lo, &hi)| (hex16(lo).to_vec(), hex16(hi).to_vec()));
        pages.data(&raw, Encoding::DELTA_LENGTH_BYTE_ARRAY, (page.len(), page.len(), 0), bounds)?;
    }
    let bloom_filter = match props.bloom_filter_properties(&path) {
        Some(bp) => {
            // Every id is distinct.
            let mut sbbf = Sbbf::new_with_ndv_fpp(ids.len() as u64, bp.fpp())?;
            for &id in ids {
                sbbf.insert(&hex16(id)[..]);
            }
            Some(sbbf)
        }
        None => None,
    };
    let (lo, hi) = (hex16(min).to_vec(), hex16(max).to_vec());
    let stats = Statistics::byte_array(Some(lo.into()), Some(hi.into()), None, Some(0), false);
    pages.close(descr, vec![Encoding::DELTA_LENGTH_BYTE_ARRAY], stats, bloom_filter)
}
