//! Durable Parquet files: sorted by time, split into hour partitions,
//! written under a dot-prefixed temporary name, fsynced, renamed into place
//! and the directory fsynced, so a reader (or a crash) never sees half a file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use ::parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use ::parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use ::parquet::column::writer::ColumnCloseResult;
use ::parquet::errors::ParquetError;
use ::parquet::file::metadata::{KeyValue, SortingColumn};
use ::parquet::file::properties::{EnabledStatistics, WriterProperties};
use ::parquet::file::writer::SerializedFileWriter;
use ::parquet::schema::types::ColumnPath;
use arrow::array::{Array, ArrayRef, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, FieldRef, Schema};
use arrow::error::ArrowError;
use bytes::Bytes;

use super::LakeConfig;
use super::constant_chunk;
use super::dict_chunk::{self, Dictionaries};
use super::id_chunk;
use super::pages;
use super::schema::Table;

/// Why the lake could not write or maintain files.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake: cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("lake: cannot encode {}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("lake: cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("lake table {table}: cannot build the batch")]
    Arrow {
        table: &'static str,
        #[source]
        source: ArrowError,
    },
    #[error("lake table {table}: the batch's schema is not the table's")]
    Schema { table: &'static str },
    #[error("lake: invalid configuration: {0}")]
    Config(String),
    #[error("lake: {rows} rows could not be written ({lost} lost, {pending} still pending)")]
    Unwritten {
        rows: u64,
        lost: u64,
        pending: u64,
        #[source]
        last: Option<Box<LakeError>>,
    },
}

impl LakeError {
    fn io<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> LakeError + 'p {
        move |source| LakeError::Io { what, path: path.to_path_buf(), source }
    }
}

/// One file made visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
}

/// A write that failed part way: what became visible, and what did not.
#[derive(Debug)]
pub struct PartialWrite {
    pub error: LakeError,
    pub written: Vec<WrittenFile>,
    /// The rows of no visible file, to retry.
    pub unwritten: RecordBatch,
}

/// Writes record batches of any lake table as complete Parquet files.
#[derive(Debug)]
pub struct LakeWriter {
    root: PathBuf,
    props: HashMap<Table, Arc<WriterProperties>>,
    /// Differs per process so two writers (or a restart) never pick the same name.
    nonce: u64,
    seq: u64,
}

/// Nanoseconds per hour partition.
pub(crate) const HOUR_NS: i64 = 3_600_000_000_000;

impl LakeWriter {
    /// A writer for the lake at `cfg.dir` (created if missing). Call
    /// `maintain::recover` first when taking over a lake a crash may have left.
    pub fn new(cfg: &LakeConfig) -> Result<LakeWriter, LakeError> {
        if cfg.row_group_rows == 0 {
            return Err(LakeError::Config("row_group_rows must be above 0".into()));
        }
        let level = ZstdLevel::try_new(cfg.zstd_level).map_err(|e| LakeError::Config(format!("zstd_level: {e}")))?;
        fs::create_dir_all(&cfg.dir).map_err(LakeError::io("create", &cfg.dir))?;
        let props = Table::ALL.into_iter().map(|t| (t, Arc::new(properties(t, cfg, level)))).collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let nonce = (u64::from(std::process::id()) << 40) ^ (now.as_nanos() as u64 & 0xff_ffff_ffff);
        Ok(LakeWriter { root: cfg.dir.clone(), props, nonce, seq: 0 })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Sorts `batch` by the table's time column and writes one file per
    /// hour partition it spans. On error, the files already made visible
    /// and the rows not written are returned, so a retry never duplicates.
    pub fn write(&mut self, table: Table, batch: &RecordBatch) -> Result<Vec<WrittenFile>, Box<PartialWrite>> {
        self.write_with(table, batch, None, &[])
    }

    /// As `write`, with the batch's dictionaries (columns the builder holds as keys into distinct values:
    /// identity, lineage, node, kind, comm, exe), from which those columns are encoded, and extra footer key-values
    /// (compaction records its sources there).
    pub(crate) fn write_with(
        &mut self,
        table: Table,
        batch: &RecordBatch,
        dicts: Option<&Dictionaries>,
        meta: &[KeyValue],
    ) -> Result<Vec<WrittenFile>, Box<PartialWrite>> {
        let mut written = Vec::new();
        if batch.num_rows() == 0 {
            return Ok(written);
        }
        let fail = |error, written, unwritten| Box::new(PartialWrite { error, written, unwritten });
        // With dictionaries, the batch's keyed columns are placeholders: rows handed back are gathered first.
        let whole = |b: &RecordBatch, d: Option<&Dictionaries>, offset| match d {
            Some(d) => d.materialize(b, offset),
            None => b.clone(),
        };
        let schema = table.schema();
        if batch.schema().fields() != schema.fields() {
            return Err(fail(LakeError::Schema { table: table.name() }, written, whole(batch, dicts, 0)));
        }
        let (sorted, order) = sort_by_time(table, batch).map_err(|e| fail(e, Vec::new(), whole(batch, dicts, 0)))?;
        let times = time_column(table, &sorted).map_err(|e| fail(e, Vec::new(), whole(batch, dicts, 0)))?;
        let dicts = dicts.map(|d| d.reordered(order.as_ref()));
        let mut start = 0;
        while start < sorted.num_rows() {
            let hour = times.value(start).div_euclid(HOUR_NS);
            let mut end = start + 1;
            while end < sorted.num_rows() && times.value(end).div_euclid(HOUR_NS) == hour {
                end += 1;
            }
            let part = sorted.slice(start, end - start);
            let dir = self.root.join(table.name()).join(partition_dir(hour));
            let name = format!("{}-{:019}-{:016x}-{}.parquet", prefix(meta), times.value(start), self.nonce, self.seq);
            self.seq += 1;
            let keyed = dicts.as_ref().map(|d| (d, start));
            match self.write_file(table, &dir, &name, &part, keyed, meta) {
                Ok(f) => written.push(f),
                Err(e) => {
                    let rest = sorted.slice(start, sorted.num_rows() - start);
                    return Err(fail(e, written, whole(&rest, dicts.as_ref(), start)));
                }
            }
            start = end;
        }
        Ok(written)
    }

    fn write_file(
        &self,
        table: Table,
        dir: &Path,
        name: &str,
        batch: &RecordBatch,
        keyed: Option<(&Dictionaries, usize)>,
        meta: &[KeyValue],
    ) -> Result<WrittenFile, LakeError> {
        create_dir_durable(&self.root, dir)?;
        let tmp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(name);
        let result = (|| {
            let file = File::create(&tmp).map_err(LakeError::io("create", &tmp))?;
            let props = (*self.props[&table]).clone();
            let props = if meta.is_empty() { props } else { with_metadata(props, meta) };
            let encode = |e| LakeError::Parquet { path: tmp.clone(), source: e };
            let file = encode_file(file, props, batch, keyed).map_err(encode)?;
            file.sync_all().map_err(LakeError::io("fsync", &tmp))?;
            let bytes = file.metadata().map_err(LakeError::io("stat", &tmp))?.len();
            fs::rename(&tmp, &path).map_err(LakeError::io("rename", &tmp))?;
            sync_dir(dir)?;
            Ok(WrittenFile { path: path.clone(), rows: batch.num_rows(), bytes })
        })();
        if result.is_err() {
            // Never leave a partial file behind, not even a hidden one.
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn field_type(schema: &Schema, i: usize) -> Option<&DataType> {
    schema.fields().get(i).map(|f| f.data_type())
}

/// One column of a row group: encoded here (from a dictionary, ids, or all nulls), or left to the Arrow
/// writer.
enum Chunk {
    Encoded(Bytes, Box<ColumnCloseResult>),
    Arrow(ArrayRef),
}

/// Arrow writers for `fields` only: making one costs a zstd context and buffers. Made for every column and
/// dropped for the keyed ones, they were most of the 3.1 % `create_column_writers` took of `lake/write_steady`. The factory takes a file
/// writer for its schema and properties only: one for these fields, writing nowhere. Their leaves' descriptors
/// are those of the file's (`append_column` checks).
fn arrow_writers(
    fields: Vec<FieldRef>,
    props: &Arc<WriterProperties>,
    group: usize,
) -> Result<Vec<ArrowColumnWriter>, ParquetError> {
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let schema = Arc::new(Schema::new(fields));
    let descr = ArrowSchemaConverter::new().with_coerce_types(props.coerce_types()).convert(&schema)?;
    let scratch = SerializedFileWriter::new(io::sink(), descr.root_schema_ptr(), Arc::clone(props))?;
    ArrowRowGroupWriterFactory::new(&scratch, schema).create_column_writers(group)
}

/// `batch` (one file's rows, sorted) as a Parquet file: what `ArrowWriter` writes (Arrow schema in the
/// footer, row groups of `max_row_group_row_count`), except that the columns `keyed` gives dictionaries for
/// are encoded from them (`dict_chunk`); the file's rows start at its row `offset` of their keys.
fn encode_file(
    file: File,
    mut props: WriterProperties,
    batch: &RecordBatch,
    keyed: Option<(&Dictionaries, usize)>,
) -> Result<File, ParquetError> {
    let schema = batch.schema();
    let parquet_schema = ArrowSchemaConverter::new().with_coerce_types(props.coerce_types()).convert(&schema)?;
    add_encoded_arrow_schema_to_metadata(&schema, &mut props);
    let group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
    let props = Arc::new(props);
    let mut out = SerializedFileWriter::new(file, parquet_schema.root_schema_ptr(), Arc::clone(&props))?;
    let leaves = parquet_schema.columns();
    // A field's leaves (a list has one, as a flat column).
    let mut field_leaves = vec![0; schema.fields().len()];
    for leaf in 0..leaves.len() {
        if let Some(n) = field_leaves.get_mut(parquet_schema.get_column_root_idx(leaf)) {
            *n += 1;
        }
    }
    let (mut start, mut group) = (0, 0);
    let (mut zstd, mut seen) = (pages::Zstd::default(), dict_chunk::SeenKeys::default());
    while start < batch.num_rows() {
        let len = group_rows.min(batch.num_rows() - start);
        let mut slots = Vec::with_capacity(field_leaves.len());
        let mut leaf = 0;
        for (i, column) in batch.columns().iter().enumerate() {
            let mut column = column.slice(start, len);
            let first_leaf = leaf;
            leaf += field_leaves[i];
            if let Some((d, offset)) = keyed {
                let rows = offset + start..offset + start + len;
                let descr = leaves.get(first_leaf).cloned();
                let descr = descr.ok_or_else(|| ParquetError::General(format!("no leaf for column {i}")))?;
                let encoded = match (d.ids(i, rows.clone())?, d.column(i, rows)?) {
                    (Some(ids), _) => Some(id_chunk::encode(descr, &props, &mut zstd, ids)?),
                    (None, Some((values, keys))) => {
                        let chunk = dict_chunk::encode(descr, &props, &mut zstd, values, keys, &mut seen)?;
                        if chunk.is_none() {
                            // No row has a value: written below from the nulls (the batch has a placeholder).
                            column = values.gather(keys).map_err(|e| ParquetError::External(Box::new(e)))?;
                        }
                        chunk
                    }
                    (None, None) => None,
                };
                if let Some((bytes, close)) = encoded {
                    slots.push(Chunk::Encoded(bytes, Box::new(close)));
                    continue;
                }
            }
            let flat = field_leaves[i] == 1 && !matches!(field_type(&schema, i), Some(DataType::List(_)));
            if flat && len > 0 {
                let descr = leaves.get(first_leaf).cloned();
                let descr = descr.ok_or_else(|| ParquetError::General(format!("no leaf for column {i}")))?;
                let encoded = if column.null_count() == len {
                    pages::nulls(descr, &props, &mut zstd, len)?
                } else {
                    constant_chunk::encode(descr, &props, &mut zstd, &column)?
                };
                if let Some((bytes, close)) = encoded {
                    slots.push(Chunk::Encoded(bytes, Box::new(close)));
                    continue;
                }
            }
            slots.push(Chunk::Arrow(column));
        }
        let fields = schema.fields().iter().zip(&slots);
        let arrow: Vec<FieldRef> =
            fields.filter(|(_, s)| matches!(s, Chunk::Arrow(_))).map(|(f, _)| Arc::clone(f)).collect();
        let mut writers = arrow_writers(arrow, &props, group)?.into_iter();
        let mut rg = out.next_row_group()?;
        for (field, slot) in schema.fields().iter().zip(slots) {
            match slot {
                Chunk::Encoded(bytes, close) => rg.append_column(&bytes, *close)?,
                Chunk::Arrow(column) => {
                    for leaf in compute_leaves(field, &column)? {
                        let next = writers.next();
                        let mut w = next.ok_or_else(|| ParquetError::General("fewer writers than leaves".into()))?;
                        w.write(&leaf)?;
                        w.close()?.append_to_row_group(&mut rg)?;
                    }
                }
            }
        }
        rg.close()?;
        start += len;
        group += 1;
    }
    out.into_inner()
}

fn prefix(meta: &[KeyValue]) -> &'static str {
    if meta.is_empty() { "part" } else { "compact" }
}

fn with_metadata(props: WriterProperties, meta: &[KeyValue]) -> WriterProperties {
    let mut kv = props.key_value_metadata().cloned().unwrap_or_default();
    kv.extend_from_slice(meta);
    props.into_builder().set_key_value_metadata(Some(kv)).build()
}

fn properties(table: Table, cfg: &LakeConfig, level: ZstdLevel) -> WriterProperties {
    let schema = table.schema();
    let time_idx = schema.index_of(table.time_column()).unwrap_or(0);
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(true)
        // Page-level statistics: a column index and an offset index per column chunk.
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(cfg.row_group_rows))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: time_idx as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by(format!("tracelake {}", env!("CARGO_PKG_VERSION")));
    // Integers (times, ids, counters, list items too) as deltas, bit-packed, without a dictionary. Measured
    // on `lake/write_mixed` (BENCHMARKS.md): `time` went from 60 to 13 ns a row in the writer, `pid` from
    // 25 to 13, `uid` from 16 to 12, and files from 13.2 to 10.9 bytes per event: the dictionary hashed
    // every value, and the deltas of sorted times and repeated ids pack to a few bits.
    if let Ok(leaves) = ArrowSchemaConverter::new().convert(&schema) {
        for leaf in leaves.columns() {
            if matches!(leaf.physical_type(), PhysicalType::INT32 | PhysicalType::INT64) {
                b = b
                    .set_column_dictionary_enabled(leaf.path().clone(), false)
                    .set_column_encoding(leaf.path().clone(), Encoding::DELTA_BINARY_PACKED);
            }
        }
    }
    for col in ["event_id", "finding_id"] {
        // Unique per row: a dictionary only costs. Random hex leaves zstd nothing to find but its entropy
        // stage: level 3 spent 220 ns a row on `event_id` (a fifth of the writer's time) and level 1 with the
        // lengths apart (DELTA_LENGTH_BYTE_ARRAY) 65-90 ns, for files 10 % smaller.
        let path = ColumnPath::from(col);
        b = b
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path.clone(), Encoding::DELTA_LENGTH_BYTE_ARRAY)
            // `ZstdLevel::default()` is level 1.
            .set_column_compression(path, Compression::ZSTD(ZstdLevel::default()));
    }
    for col in table.bloom_columns() {
        let path = ColumnPath::from(*col);
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            // Sized for a full row group, then folded down to what the values need.
            .set_column_bloom_filter_max_ndv(path, cfg.row_group_rows as u64);
    }
    b.build()
}

fn time_column(table: Table, batch: &RecordBatch) -> Result<&TimestampNanosecondArray, LakeError> {
    batch
        .column_by_name(table.time_column())
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or(LakeError::Schema { table: table.name() })
}

/// The batch sorted by time, and the order taken (None when it was sorted already).
fn sort_by_time(table: Table, batch: &RecordBatch) -> Result<(RecordBatch, Option<UInt32Array>), LakeError> {
    let times = time_column(table, batch)?;
    if times.null_count() == 0 && times.values().windows(2).all(|w| w[0] <= w[1]) {
        return Ok((batch.clone(), None));
    }
    let arrow = |source| LakeError::Arrow { table: table.name(), source };
    let idx =
        sort_to_indices(times, Some(SortOptions { descending: false, nulls_first: false }), None).map_err(arrow)?;
    Ok((take_record_batch(batch, &idx).map_err(arrow)?, Some(idx)))
}

/// `date=YYYY-MM-DD/hour=HH` of an hour number since the epoch.
pub(crate) fn partition_dir(hour: i64) -> String {
    let days = hour.div_euclid(24);
    let (y, m, d) = civil_from_days(days);
    format!("date={y:04}-{m:02}-{d:02}/hour={:02}", hour.rem_euclid(24))
}

/// Hour number since the epoch of a `date=YYYY-MM-DD/hour=HH` pair.
pub(crate) fn parse_partition(date: &str, hour: &str) -> Option<i64> {
    let date = date.strip_prefix("date=")?;
    let hour: i64 = hour.strip_prefix("hour=")?.parse().ok()?;
    let mut it = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, d) = (it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(0..24).contains(&hour) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 24 + hour)
}

/// Howard Hinnant's civil_from_days.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Creates `dir` and any missing parents below `root`, fsyncing each parent
/// whose entry changed so the new directories survive a crash.
fn create_dir_durable(root: &Path, dir: &Path) -> Result<(), LakeError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && parent != root
        && parent.starts_with(root)
    {
        create_dir_durable(root, parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(LakeError::Io { what: "create", path: dir.to_path_buf(), source: e }),
    }
    sync_dir(dir.parent().unwrap_or(root))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LakeError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(LakeError::io("fsync", dir))
}

#[cfg(test)]
mod tests {
    #[test]
    fn partitions_round_trip_through_their_names() {
        for hour in [0i64, 23, 24, 455_000, 494_219, 500_000] {
            let dir = super::partition_dir(hour);
            let (date, h) = dir.split_once('/').unwrap_or_default();
            assert_eq!(super::parse_partition(date, h), Some(hour), "{dir}");
        }
        assert_eq!(super::partition_dir(0), "date=1970-01-01/hour=00");
        // 2024-02-29 12:00 UTC = 1709208000 s.
        assert_eq!(super::partition_dir(1_709_208_000 / 3600), "date=2024-02-29/hour=12");
    }
}
