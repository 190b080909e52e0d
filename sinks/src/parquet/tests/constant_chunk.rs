//! Number and boolean columns whose rows that have a value all have the same one (`constant_chunk`) against
//! the Arrow writer's own encoding of the same batch: the same rows read back, the same statistics and page
//! index.

use std::fs::File;

use ::parquet::file::metadata::ParquetMetaData;
use ::parquet::file::page_index::column_index::ColumnIndexMetaData;
use ::parquet::file::properties::{EnabledStatistics, WriterProperties};
use arrow::array::{Array, RecordBatch};

use super::dict_chunk::read;
use super::durability::files_under;
use super::*;

/// Per row group: (statistics' min, max, nulls), and per page (min, max, nulls) as the column index holds
/// them (its boundary order aside: ours says unordered).
type Bounds = (Option<Vec<u8>>, Option<Vec<u8>>, Option<u64>, Vec<(Option<String>, Option<String>, Option<i64>)>);

fn bounds(m: &ParquetMetaData, rg: usize, col: usize) -> Bounds {
    let s = m.row_group(rg).column(col).statistics().unwrap();
    let index = &m.column_index().unwrap()[rg][col];
    let page = |p: usize| -> (Option<String>, Option<String>) {
        let show = |v: Option<&dyn std::fmt::Debug>| v.map(|v| format!("{v:?}"));
        match index {
            ColumnIndexMetaData::BOOLEAN(i) => {
                (show(i.min_value(p).map(|v| v as _)), show(i.max_value(p).map(|v| v as _)))
            }
            ColumnIndexMetaData::INT32(i) => {
                (show(i.min_value(p).map(|v| v as _)), show(i.max_value(p).map(|v| v as _)))
            }
            ColumnIndexMetaData::INT64(i) => {
                (show(i.min_value(p).map(|v| v as _)), show(i.max_value(p).map(|v| v as _)))
            }
            other => panic!("column {col}: a column index of {other:?}"),
        }
    };
    let pages = (0..index.num_pages() as usize).map(|p| {
        let (lo, hi) = page(p);
        (lo, hi, index.null_count(p))
    });
    (s.min_bytes_opt().map(<[u8]>::to_vec), s.max_bytes_opt().map(<[u8]>::to_vec), s.null_count_opt(), pages.collect())
}

/// Writes `batch` with the lake's writer and with parquet-rs's `ArrowWriter` (row groups of 1,000 rows in
/// both), and checks every flat number and boolean column reads back the same with the same bounds. Returns
/// the columns that were constant in some row group (which `constant_chunk` wrote).
fn same_as_the_arrow_writer(table: Table, batch: &RecordBatch) -> Vec<String> {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let c = LakeConfig { row_group_rows: 1000, ..cfg(ours.path()) };
    LakeWriter::new(&c).unwrap().write(table, batch).unwrap();
    let ours = files_under(ours.path()).into_iter().find(|p| p.extension().is_some_and(|e| e == "parquet")).unwrap();
    let theirs = theirs.path().join("arrow-writer.parquet");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(1000))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build();
    let mut w =
        ::parquet::arrow::ArrowWriter::try_new(File::create(&theirs).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    let ((ob, om), (_, tm)) = (read(&ours), read(&theirs));
    assert_eq!(ob.columns(), batch.columns(), "rows differ");
    let mut constant = Vec::new();
    for (col, field) in batch.schema().fields().iter().enumerate() {
        use arrow::datatypes::DataType::{Boolean, Int32, Int64, Timestamp, UInt16, UInt32, UInt64};
        if !matches!(field.data_type(), Boolean | Int32 | Int64 | UInt16 | UInt32 | UInt64 | Timestamp(..)) {
            continue;
        }
        for rg in 0..om.num_row_groups() {
            assert_eq!(bounds(&om, rg, col), bounds(&tm, rg, col), "{} in row group {rg}", field.name());
            let rows = batch.column(col).slice(rg * 1000, 1000);
            let s = om.row_group(rg).column(col).statistics().unwrap();
            if rows.null_count() < rows.len() && s.min_bytes_opt() == s.max_bytes_opt() {
                constant.push(field.name().clone());
            }
        }
    }
    constant
}

/// Execs then exits at one instant (`time` the same on every row of the first row group), with a device
/// number and exit code whose high bit is set (unsigned values in the signed physical type), then execs at
/// different times and inodes.
#[test]
fn constant_number_columns_read_back_as_the_arrow_writer_writes_them() {
    let mut b = BatchBuilder::for_event_table(Table::ProcessActivity);
    let c = ctx(1_709_208_000_000_000_000);
    for i in 0..3000u64 {
        let kind = if i < 1500 && i % 3 == 2 { Kind::Exit } else { Kind::Exec };
        let mut ev = event_of(kind, if i < 1000 { 5_000 } else { i * 1000 }, 40);
        ev.body = match kind {
            Kind::Exit => OwnedBody::Exit { exit_code: 0xffff_fff0, signal: 0, core_dump: i >= 1000 },
            _ => OwnedBody::Exec {
                exe_ino: if i < 2000 { 7 } else { i },
                exe_dev: 0x8000_0001,
                exe_nlink: 1,
                launch: None,
            },
        };
        b.append(&c, &ev.as_event(), &identity());
    }
    let (batch, dicts) = b.finish_keyed(true).unwrap();
    let batch = dicts.unwrap().materialize(&batch, 0);
    let constant = same_as_the_arrow_writer(Table::ProcessActivity, &batch);
    for name in ["time", "class_uid", "count", "summary", "container", "exe_ino", "exe_dev", "exit_code", "core_dump"] {
        assert!(constant.iter().any(|c| c == name), "{name} was never constant: {constant:?}");
    }
}

/// Opens refused with -13 (a negative constant) beside unlinks (no inode, mode or flags), and ports of one
/// service.
#[test]
fn negative_and_optional_constants_read_back_as_the_arrow_writer_writes_them() {
    let mut b = BatchBuilder::for_event_table(Table::FileActivity);
    let c = ctx(1_709_208_000_000_000_000);
    for i in 0..2000u64 {
        let kind = if i % 4 == 0 { Kind::FileUnlink } else { Kind::FileOpen };
        let mut ev = event_of(kind, i * 1000, 41);
        ev.body =
            OwnedBody::File { ret: -13, ino: 99, dev: 8, open_flags: 0o101, mode: 0o600, owner_uid: 0, owner_gid: 0 };
        b.append(&c, &ev.as_event(), &identity());
    }
    let (batch, dicts) = b.finish_keyed(true).unwrap();
    let batch = dicts.unwrap().materialize(&batch, 0);
    let constant = same_as_the_arrow_writer(Table::FileActivity, &batch);
    for name in ["ret", "ino", "dev", "open_flags", "unlink_flags", "mode"] {
        assert!(constant.iter().any(|c| c == name), "{name} was never constant: {constant:?}");
    }
    let mut b = BatchBuilder::for_event_table(Table::NetworkActivity);
    for i in 0..2000u64 {
        b.append(&c, &event_of(Kind::NetConnect, i * 1000, 42).as_event(), &identity());
    }
    let (batch, dicts) = b.finish_keyed(true).unwrap();
    let batch = dicts.unwrap().materialize(&batch, 0);
    let constant = same_as_the_arrow_writer(Table::NetworkActivity, &batch);
    for name in ["local_port", "remote_port", "ret"] {
        assert!(constant.iter().any(|c| c == name), "{name} was never constant: {constant:?}");
    }
}
