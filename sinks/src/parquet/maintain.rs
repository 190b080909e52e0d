//! Lake housekeeping: crash recovery at start, retention by age, and
//! compaction of the small files of finished hour partitions.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::file::metadata::KeyValue;
use ::parquet::file::reader::{FileReader, SerializedFileReader};
use arrow::compute::concat_batches;

use super::LakeConfig;
use super::schema::Table;
use super::writer::{HOUR_NS, LakeError, LakeWriter, parse_partition, sync_dir};

/// Footer key of a compacted file: the file names it replaces, `/`-separated.
pub const COMPACTED_FROM: &str = "tracelake.compacted_from";

/// What housekeeping did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Temporary files of interrupted writes removed.
    pub temp_files_removed: u64,
    /// Sources of a compaction that a crash left next to its result, removed.
    pub compacted_sources_removed: u64,
    /// Hour partitions deleted by retention.
    pub partitions_dropped: u64,
    /// Files merged away by compaction, and files it produced.
    pub files_compacted: u64,
    pub compactions: u64,
}

/// One hour partition of one table.
#[derive(Debug)]
struct Partition {
    table: Table,
    dir: PathBuf,
    hour: i64,
}

fn io<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> LakeError + 'p {
    move |source| LakeError::Io { what, path: path.to_path_buf(), source }
}

fn read_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, LakeError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(LakeError::Io { what: "list", path: dir.to_path_buf(), source: e }),
    };
    for e in entries {
        let e = e.map_err(io("list", dir))?;
        // Names that are not UTF-8 are none of ours.
        if let Ok(name) = e.file_name().into_string() {
            out.push((name, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn partitions(root: &Path) -> Result<Vec<Partition>, LakeError> {
    let mut out = Vec::new();
    for table in Table::ALL {
        for (date, date_dir) in read_dir(&root.join(table.name()))? {
            for (hour, dir) in read_dir(&date_dir)? {
                if let Some(hour) = parse_partition(&date, &hour) {
                    out.push(Partition { table, dir, hour });
                }
            }
        }
    }
    Ok(out)
}

fn visible_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, LakeError> {
    Ok(read_dir(dir)?.into_iter().filter(|(n, _)| !n.starts_with('.') && n.ends_with(".parquet")).collect())
}

/// Run before writing into a lake a crash may have left: removes temporary
/// files (a write that never completed has no visible rows) and the
/// sources a finished compaction had not yet deleted.
pub fn recover(root: &Path) -> Result<MaintenanceReport, LakeError> {
    let mut report = MaintenanceReport::default();
    for p in partitions(root)? {
        let mut touched = false;
        for (name, path) in read_dir(&p.dir)? {
            if name.starts_with('.') && name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io("remove", &path))?;
                report.temp_files_removed += 1;
                touched = true;
            } else if name.starts_with("compact-") && name.ends_with(".parquet") {
                for src in compacted_from(&path)? {
                    // Names only, never paths: a footer cannot point outside the partition.
                    if src.contains('/') || !src.ends_with(".parquet") {
                        continue;
                    }
                    let src_path = p.dir.join(&src);
                    if src_path.exists() {
                        fs::remove_file(&src_path).map_err(io("remove", &src_path))?;
                        report.compacted_sources_removed += 1;
                        touched = true;
                    }
                }
            }
        }
        if touched {
            sync_dir(&p.dir)?;
        }
    }
    Ok(report)
}

fn compacted_from(path: &Path) -> Result<Vec<String>, LakeError> {
    let file = File::open(path).map_err(io("open", path))?;
    let reader = SerializedFileReader::new(file).map_err(|source| LakeError::Read { path: path.into(), source })?;
    let kv = reader.metadata().file_metadata().key_value_metadata();
    let list = kv.and_then(|kv| kv.iter().find(|k| k.key == COMPACTED_FROM)).and_then(|k| k.value.clone());
    Ok(list.map(|l| l.split('/').map(str::to_string).collect()).unwrap_or_default())
}

/// Deletes hour partitions that ended more than `cfg.retention` before `now_ns`.
pub fn retention(root: &Path, cfg: &LakeConfig, now_ns: i64) -> Result<MaintenanceReport, LakeError> {
    let mut report = MaintenanceReport::default();
    if cfg.retention.is_zero() {
        return Ok(report);
    }
    let keep_ns = i64::try_from(cfg.retention.as_nanos()).unwrap_or(i64::MAX);
    for p in partitions(root)? {
        if (p.hour + 1).saturating_mul(HOUR_NS) <= now_ns.saturating_sub(keep_ns) {
            fs::remove_dir_all(&p.dir).map_err(io("remove", &p.dir))?;
            report.partitions_dropped += 1;
            if let Some(date_dir) = p.dir.parent() {
                // The date folder goes with its last hour; a non-empty one stays.
                if fs::remove_dir(date_dir).is_ok() {
                    sync_dir(date_dir.parent().unwrap_or(root))?;
                } else {
                    sync_dir(date_dir)?;
                }
            }
        }
    }
    Ok(report)
}

/// Merges the small files of each finished hour partition (ended before
/// `now_ns`) into one file sorted by time. The merged file becomes visible
/// (rename) before its sources are deleted, and names them in its footer so
/// `recover` finishes the job if a crash comes in between.
pub fn compact(writer: &mut LakeWriter, cfg: &LakeConfig, now_ns: i64) -> Result<MaintenanceReport, LakeError> {
    let mut report = MaintenanceReport::default();
    let root = writer.root().to_path_buf();
    for p in partitions(&root)? {
        if (p.hour + 1).saturating_mul(HOUR_NS) > now_ns {
            continue;
        }
        let mut small = Vec::new();
        let mut total = 0u64;
        for (name, path) in visible_files(&p.dir)? {
            let len = fs::metadata(&path).map_err(io("stat", &path))?.len();
            if len < cfg.compact_small_bytes && total + len <= cfg.compact_max_bytes {
                total += len;
                small.push((name, path));
            }
        }
        if small.len() < cfg.compact_min_files.max(2) {
            continue;
        }
        let mut batches = Vec::new();
        for (_, path) in &small {
            let file = File::open(path).map_err(io("open", path))?;
            let read = |source| LakeError::Read { path: path.clone(), source };
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(read)?.build().map_err(read)?;
            for b in reader {
                batches.push(b.map_err(|e| LakeError::Read { path: path.clone(), source: e.into() })?);
            }
        }
        let merged = concat_batches(&p.table.schema(), &batches)
            .map_err(|source| LakeError::Arrow { table: p.table.name(), source })?;
        let names: Vec<&str> = small.iter().map(|(n, _)| n.as_str()).collect();
        let meta = [KeyValue::new(COMPACTED_FROM.to_string(), names.join("/"))];
        writer.write_with(p.table, &merged, None, &meta).map_err(|e| e.error)?;
        for (_, path) in &small {
            fs::remove_file(path).map_err(io("remove", path))?;
        }
        sync_dir(&p.dir)?;
        report.files_compacted += small.len() as u64;
        report.compactions += 1;
    }
    Ok(report)
}
