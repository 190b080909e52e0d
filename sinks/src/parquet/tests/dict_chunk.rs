//! Identity, lineage, node, kind, comm and exe columns encoded from the batch's keys (`dict_chunk`) against
//! the Arrow writer's own encoding of the same batch: the same rows read back, and a page index and bloom
//! filters that hold for them.

use std::fs::File;

use ::parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use ::parquet::column::page::Page;
use ::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use ::parquet::file::page_index::column_index::ColumnIndexMetaData;
use ::parquet::file::properties::ReaderProperties;
use ::parquet::file::reader::FileReader;
use ::parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use arrow::array::{Array, AsArray, RecordBatch};

use super::durability::files_under;
use super::*;
use crate::parquet::dict_chunk::Dictionaries;
use crate::parquet::identity::ID_COLUMNS;

const ROWS: u64 = 45_000;
/// Rows (in time order) from here to `HOST_END` are host processes: every identity column null, for whole
/// pages and a whole row group.
const HOST_START: u64 = 20_000;
const HOST_END: u64 = 40_000;
const STEP_NS: u64 = 50_000;
/// The hour ends after this many rows (in time order): two files, each from a slice of the batch's keys.
const HOUR_SPLIT: u64 = 40_000;

/// A mix the writer must get right: 600 pods (10-bit indices), runs of one pod longer and shorter than the
/// 8 an RLE run needs, a namespace shared by all (one dictionary entry), peers on some rows only, and rows
/// appended out of time order so the keys are sorted with the rows.
fn batch() -> (RecordBatch, Option<Dictionaries>, Vec<String>) {
    let pods: Vec<String> = (0..600).map(|j| format!("pod-{j:04}-{}", "x".repeat(j % 7))).collect();
    let containers: Vec<String> = (0..600).map(|j| format!("{j:064x}")).collect();
    let mut b = BatchBuilder::for_event_table(Table::ProcessActivity);
    // Row HOUR_SPLIT (in time order) starts an hour.
    let c = ctx(1_709_208_000_000_000_000i128 - i128::from(HOUR_SPLIT * STEP_NS));
    for i in 0..ROWS {
        // 7919 is prime and does not divide ROWS: a permutation of the times.
        let t = i * 7919 % ROWS;
        let ev = event_of(kind_of(t), t * STEP_NS, 100 + (t % 13) as u32);
        let j = pod_of(t);
        let mut id = if (HOST_START..HOST_END).contains(&t) {
            Identity::default()
        } else {
            Identity {
                pod: Some(&pods[j]),
                container_id: Some(&containers[j]),
                namespace: Some("payments"),
                image: Some(["a:1", "b:2", "c:3"][j % 3]),
                peer_pod: t.is_multiple_of(3).then_some(pods[(j + 1) % 600].as_str()),
                ..Identity::default()
            }
        };
        if !t.is_multiple_of(4) {
            let exe = [&b"/bin/sh"[..], b"/usr/bin/python3", b"/sbin/init", b"/bin/bash"][j % 4];
            id.ancestors[0] = Some(Ancestor { pid: 7, exe, args: [&b"sh\0-c\0x\0"[..], b"init\0"][j % 2] });
            // Lists of one and of two items (`ancestor_exes`), beside empty ones.
            if t % 3 == 1 {
                let exe = [&b"/usr/bin/containerd-shim-runc-v2"[..], b"/sbin/init"][j % 2];
                id.ancestors[1] = Some(Ancestor { pid: 1, exe, args: b"x\0" });
            }
        }
        b.append(&c, &ev.as_event(), &id);
    }
    let (batch, dicts) = b.finish_keyed(true).unwrap();
    (batch, dicts, pods)
}

/// The kind and pod of the row `t`-th in time order.
fn kind_of(t: u64) -> Kind {
    if t % 11 < 3 { Kind::Fork } else { Kind::Exec }
}

fn pod_of(t: u64) -> usize {
    (if t % 97 < 5 { (t * 31) % 600 } else { (t / 13).wrapping_mul(2_654_435_761) % 600 }) as usize
}

fn write(dir: &Path, batch: &RecordBatch, dicts: Option<&Dictionaries>) -> Vec<PathBuf> {
    let c = LakeConfig { row_group_rows: 30_000, ..cfg(dir) };
    let mut w = LakeWriter::new(&c).unwrap();
    let written = w.write_with(Table::ProcessActivity, batch, dicts, &[]).unwrap();
    assert_eq!(written.iter().map(|f| f.rows).sum::<usize>(), ROWS as usize);
    files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect()
}

pub(super) fn read(path: &Path) -> (RecordBatch, std::sync::Arc<ParquetMetaData>) {
    let opts = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let b = ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(path).unwrap(), opts).unwrap();
    let meta = b.metadata().clone();
    let schema = b.schema().clone();
    let batches: Vec<RecordBatch> = b.build().unwrap().map(Result::unwrap).collect();
    (arrow::compute::concat_batches(&schema, &batches).unwrap(), meta)
}

/// The dictionary page of column `col` in row group `rg`, decoded (PLAIN: u32 length, bytes).
fn dictionary(path: &Path, rg: usize, col: usize) -> Option<Vec<Vec<u8>>> {
    let r = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let mut pages = r.get_row_group(rg).unwrap().get_column_page_reader(col).unwrap();
    let Some(Page::DictionaryPage { .. }) = pages.get_next_page().unwrap() else { return None };
    Some(dictionary_of(path, rg, col, |buf| {
        let mut out = Vec::new();
        let mut rest = buf;
        while rest.len() >= 4 {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            out.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        out
    }))
}

/// The dictionary page of column `col` in row group `rg`, split into its values by `split`.
fn dictionary_of(path: &Path, rg: usize, col: usize, split: impl Fn(&[u8]) -> Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let r = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let mut pages = r.get_row_group(rg).unwrap().get_column_page_reader(col).unwrap();
    let Some(Page::DictionaryPage { buf, num_values, .. }) = pages.get_next_page().unwrap() else {
        panic!("column {col}: no dictionary page")
    };
    let out = split(&buf);
    assert_eq!(out.len(), num_values as usize);
    out
}

#[test]
fn keyed_columns_read_back_like_the_arrow_writers() {
    let (batch, dicts, pods) = batch();
    let dicts = dicts.expect("keyed finish gives dictionaries");
    let keyed: Vec<usize> = dicts.groups.iter().flat_map(|g| g.columns.iter().map(|(c, _)| *c)).collect();
    assert_eq!(
        keyed.len(),
        ID_COLUMNS.len() + 28,
        "identity, subject (11), lineage (4), node, kind, comm, exe, cwd, cmdline, args, tty, \
         stdin/stdout/stderr types, stdio protocol and remote ip"
    );
    let event_id = Table::ProcessActivity.schema().index_of("event_id").unwrap();
    assert_eq!(dicts.ids.iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![event_id], "event_id held as numbers");
    let keyed_dir = tempfile::tempdir().unwrap();
    let plain_dir = tempfile::tempdir().unwrap();
    let keyed = write(keyed_dir.path(), &batch, Some(&dicts));
    // The batch holds placeholders for the keyed columns: the Arrow writer gets them gathered from the keys.
    assert!(batch.column_by_name("pod").unwrap().as_string::<i32>().iter().all(|v| v == Some("")));
    let plain = write(plain_dir.path(), &dicts.materialize(&batch, 0), None);
    assert_eq!(keyed.len(), 2, "one file per hour: {keyed:?}");
    assert_eq!(plain.len(), 2);

    let schema = Table::ProcessActivity.schema();
    let pod_col = schema.index_of("pod").unwrap();
    let mut rows = Vec::new();
    let mut widest = 0;
    for (k, p) in keyed.iter().zip(&plain) {
        let (kb, kmeta) = read(k);
        let (pb, _) = read(p);
        // Row by row, what was appended (both files could agree on a wrong batch).
        let first: u64 = rows.iter().sum();
        let (kinds, pod) = (kb.column_by_name("kind").unwrap(), kb.column_by_name("pod").unwrap());
        for (r, t) in (first..first + kb.num_rows() as u64).enumerate() {
            assert_eq!(kinds.as_string::<i32>().value(r), kind_of(t).name(), "row {t}");
            let want = (!(HOST_START..HOST_END).contains(&t)).then(|| pods[pod_of(t)].as_str());
            assert_eq!(pod.as_string::<i32>().is_valid(r).then(|| pod.as_string::<i32>().value(r)), want, "row {t}");
        }
        rows.push(kb.num_rows() as u64);
        for (c, f) in schema.fields().iter().enumerate() {
            assert_eq!(kb.column(c).as_ref(), pb.column(c).as_ref(), "{}: column {} differs", k.display(), f.name());
        }
        let opts = ReadOptionsBuilder::new()
            .with_reader_properties(ReaderProperties::builder().set_read_bloom_filter(true).build())
            .build();
        let file = SerializedFileReader::new_with_options(File::open(k).unwrap(), opts).unwrap();
        let mut first_row = 0usize;
        for (rg, g) in kmeta.row_groups().iter().enumerate() {
            let strings = ID_COLUMNS.iter().chain(&["node", "kind", "comm", "exe", "parent_exe", "parent_cmdline"]);
            for &name in strings.chain(&["event_id"]) {
                let c = schema.index_of(name).unwrap();
                let values = kb.column(c).as_string::<i32>().slice(first_row, g.num_rows() as usize);
                check_page_index(&kmeta, rg, c, &values, name);
                if name == "event_id" {
                    // Written from the numbers (`id_chunk`): no dictionary, the lengths delta-encoded.
                    assert!(dictionary(k, rg, c).is_none(), "event_id has no dictionary");
                    let encodings = g.column(c).encodings().collect::<Vec<_>>();
                    assert_eq!(encodings, vec![::parquet::basic::Encoding::DELTA_LENGTH_BYTE_ARRAY]);
                    let bloom = file.get_row_group(rg).unwrap().get_column_bloom_filter(c).cloned().expect("bloom");
                    assert!(values.iter().flatten().all(|v| bloom.check(v.as_bytes())), "event_id bloom misses an id");
                    let absent = (0..1000u64).filter(|i| bloom.check(format!("{:016x}", i << 40).as_bytes())).count();
                    assert!(absent < 50, "event_id: {absent} of 1000 absent ids pass the filter");
                    let stats = g.column(c).statistics().expect("chunk statistics");
                    let (lo, hi) = (values.iter().flatten().min(), values.iter().flatten().max());
                    assert_eq!(
                        (stats.min_bytes_opt(), stats.max_bytes_opt()),
                        (lo.map(str::as_bytes), hi.map(str::as_bytes))
                    );
                    continue;
                }
                if values.null_count() == values.len() {
                    continue;
                }
                // Written from the keys: the dictionary is sorted (the Arrow writer's is in order of arrival).
                let dict = dictionary(k, rg, c).expect("dictionary page");
                assert!(dict.windows(2).all(|w| w[0] < w[1]), "{name}: dictionary not sorted and distinct");
                let used: std::collections::BTreeSet<&[u8]> = values.iter().flatten().map(str::as_bytes).collect();
                assert_eq!(dict.len(), used.len(), "{name}: dictionary holds values no row of the chunk has");
                let stats = g.column(c).statistics().expect("chunk statistics");
                assert_eq!(stats.min_bytes_opt(), used.first().copied(), "{name}");
                assert_eq!(stats.max_bytes_opt(), used.last().copied(), "{name}");
                assert_eq!(stats.null_count_opt(), Some(values.null_count() as u64), "{name}");
                if Table::ProcessActivity.bloom_columns().contains(&name) {
                    let bloom = file.get_row_group(rg).unwrap().get_column_bloom_filter(c).cloned();
                    let bloom = bloom.unwrap_or_else(|| panic!("{name}: no bloom filter"));
                    for v in &used {
                        assert!(bloom.check(*v), "{name}: bloom filter misses {}", String::from_utf8_lossy(v));
                    }
                    let absent = (0..1000).filter(|i| bloom.check(format!("absent-{i}").as_bytes())).count();
                    assert!(absent < 50, "{name}: {absent} of 1000 absent values pass the filter");
                }
            }
            let at = RowGroup { keyed: k, plain: p, batch: &kb, meta: &kmeta, rg, first: first_row };
            for name in ["ancestor_exes", "ancestor_pids"] {
                check_list_chunk(name, &at);
            }
            for name in NUMBERS {
                check_number_chunk(name, &at);
            }
            first_row += g.num_rows() as usize;
        }
        // The same file written by the Arrow writer has a dictionary in order of arrival, not sorted: proof
        // that the keyed file's columns came from `dict_chunk`.
        let pd = dictionary(p, 0, pod_col).expect("dictionary page");
        widest = widest.max(dictionary(k, 0, pod_col).expect("dictionary page").len());
        assert!(pd.windows(2).any(|w| w[0] > w[1]), "the Arrow writer's dictionary happens to be sorted");
    }
    assert_eq!(rows, vec![HOUR_SPLIT, ROWS - HOUR_SPLIT]);
    assert!(widest > 512, "no chunk with indices of more than 9 bits: {widest} pods at most");
}

/// Each page's min, max and null count in the column index are those of the rows the offset index says the
/// page holds.
fn check_page_index(meta: &ParquetMetaData, rg: usize, c: usize, values: &arrow::array::StringArray, name: &str) {
    let index = &meta.column_index().expect("column index")[rg][c];
    let pages = meta.offset_index().expect("offset index")[rg][c].page_locations();
    let ColumnIndexMetaData::BYTE_ARRAY(index) = index else { panic!("{name}: column index {index:?}") };
    assert_eq!(index.num_pages() as usize, pages.len(), "{name}");
    for (p, loc) in pages.iter().enumerate() {
        let start = loc.first_row_index as usize;
        let end = pages.get(p + 1).map_or(values.len(), |n| n.first_row_index as usize);
        let page = values.slice(start, end - start);
        let present: Vec<&[u8]> = page.iter().flatten().map(str::as_bytes).collect();
        assert_eq!(index.null_count(p), Some(page.null_count() as i64), "{name} page {p}");
        assert_eq!(index.is_null_page(p), present.is_empty(), "{name} page {p}");
        if !present.is_empty() {
            assert_eq!(index.min_value(p), present.iter().min().copied(), "{name} page {p}: min");
            assert_eq!(index.max_value(p), present.iter().max().copied(), "{name} page {p}: max");
        }
    }
}

/// Row group `rg` of a file written from the keys, whose rows start at row `first` of `batch` (read back), and
/// the Arrow writer's file of the same rows.
#[derive(Clone, Copy)]
struct RowGroup<'a> {
    keyed: &'a Path,
    plain: &'a Path,
    batch: &'a RecordBatch,
    meta: &'a ParquetMetaData,
    rg: usize,
    first: usize,
}

/// A list column encoded from the keys (`ancestor_exes`, `ancestor_pids`): its dictionary, statistics and page
/// index against its rows, and its level count and statistics against the Arrow writer's file of the same rows.
fn check_list_chunk(name: &str, at: &RowGroup<'_>) {
    let RowGroup { keyed, plain, batch, meta, rg, first } = *at;
    let c = Table::ProcessActivity.schema().index_of(name).unwrap();
    // The flat schema: a list column has one leaf, so its leaf index is its column index.
    let g = &meta.row_groups()[rg];
    let lists = batch.column(c).as_list::<i32>().slice(first, g.num_rows() as usize);
    // Items as they sort (a u32 big-endian) and as PLAIN holds them.
    let sortable = |v: &dyn Array| -> Vec<Vec<u8>> {
        match (v.as_string_opt::<i32>(), v.as_primitive_opt::<arrow::datatypes::UInt32Type>()) {
            (Some(s), _) => s.iter().flatten().map(|s| s.as_bytes().to_vec()).collect(),
            (_, Some(n)) => n.iter().flatten().map(|n| n.to_be_bytes().to_vec()).collect(),
            _ => panic!("{name}: items of {}", v.data_type()),
        }
    };
    let plain_of = |v: &[u8]| match <[u8; 4]>::try_from(v) {
        Ok(n) if name == "ancestor_pids" => u32::from_be_bytes(n).to_le_bytes().to_vec(),
        _ => v.to_vec(),
    };
    let items = |rows: std::ops::Range<usize>| -> Vec<Vec<u8>> {
        lists.slice(rows.start, rows.len()).iter().flatten().flat_map(|v| sortable(&v)).collect()
    };
    let empties = |rows: std::ops::Range<usize>| {
        lists.slice(rows.start, rows.len()).iter().flatten().filter(|v| v.is_empty()).count()
    };
    assert!(lists.iter().flatten().any(|v| v.len() == 2), "{name}: no list of two items");
    assert!(empties(0..lists.len()) > 0, "{name}: no empty list");
    let used: std::collections::BTreeSet<Vec<u8>> = items(0..lists.len()).into_iter().collect();
    let dict = match name {
        "ancestor_pids" => dictionary_of(keyed, rg, c, |b| b.chunks(4).map(<[u8]>::to_vec).collect()),
        _ => dictionary(keyed, rg, c).expect("dictionary page"),
    };
    assert_eq!(dict, used.iter().map(|v| plain_of(v)).collect::<Vec<_>>(), "{name}: dictionary");
    let stats = g.column(c).statistics().expect("chunk statistics");
    assert_eq!(stats.min_bytes_opt(), used.first().map(|v| plain_of(v)).as_deref(), "{name}");
    assert_eq!(stats.max_bytes_opt(), used.last().map(|v| plain_of(v)).as_deref(), "{name}");
    assert_eq!(stats.null_count_opt(), Some(empties(0..lists.len()) as u64), "{name}");
    let pmeta = ParquetRecordBatchReaderBuilder::try_new(File::open(plain).unwrap()).unwrap().metadata().clone();
    let pg = &pmeta.row_groups()[rg];
    assert_eq!(g.column(c).num_values(), pg.column(c).num_values(), "{name}: levels, one per item or empty list");
    assert_eq!(Some(stats), pg.column(c).statistics(), "{name}: the Arrow writer's statistics");
    let index = &meta.column_index().expect("column index")[rg][c];
    let pages = meta.offset_index().expect("offset index")[rg][c].page_locations();
    for (p, loc) in pages.iter().enumerate() {
        let start = loc.first_row_index as usize;
        let end = pages.get(p + 1).map_or(lists.len(), |n| n.first_row_index as usize);
        let present = items(start..end);
        let (lo, hi) = (present.iter().min().map(|v| plain_of(v)), present.iter().max().map(|v| plain_of(v)));
        let (nulls, null_page, min, max) = match index {
            ColumnIndexMetaData::BYTE_ARRAY(i) => (
                i.null_count(p),
                i.is_null_page(p),
                i.min_value(p).map(<[u8]>::to_vec),
                i.max_value(p).map(<[u8]>::to_vec),
            ),
            ColumnIndexMetaData::INT32(i) => (
                i.null_count(p),
                i.is_null_page(p),
                i.min_value(p).map(|v| v.to_le_bytes().to_vec()),
                i.max_value(p).map(|v| v.to_le_bytes().to_vec()),
            ),
            other => panic!("{name}: column index {other:?}"),
        };
        assert_eq!(nulls, Some(empties(start..end) as i64), "{name} page {p}");
        assert_eq!(null_page, present.is_empty(), "{name} page {p}");
        if !present.is_empty() {
            assert_eq!((min, max), (lo, hi), "{name} page {p}: min, max");
        }
    }
}

/// The process's integer columns (`subject.rs`), encoded from the keys.
const NUMBERS: [&str; 11] =
    ["cgroup_id", "pid", "tid", "ppid", "uid", "euid", "gid", "egid", "proc_start_ns", "pidns", "mntns"];

/// An integer column encoded from the keys: a sorted dictionary, statistics equal to the Arrow writer's for the
/// same rows, and a page index that holds for the rows of each page.
fn check_number_chunk(name: &str, at: &RowGroup<'_>) {
    let RowGroup { keyed, plain, batch, meta, rg, first } = *at;
    use arrow::datatypes::{UInt32Type, UInt64Type};
    let c = Table::ProcessActivity.schema().index_of(name).unwrap();
    let g = &meta.row_groups()[rg];
    let col = batch.column(c).slice(first, g.num_rows() as usize);
    let values: Vec<u64> = match (col.as_primitive_opt::<UInt32Type>(), col.as_primitive_opt::<UInt64Type>()) {
        (Some(v), _) => v.values().iter().map(|&n| u64::from(n)).collect(),
        (_, Some(v)) => v.values().to_vec(),
        _ => panic!("{name}: {}", col.data_type()),
    };
    let width = if col.data_type() == &arrow::datatypes::DataType::UInt32 { 4 } else { 8 };
    let distinct: std::collections::BTreeSet<u64> = values.iter().copied().collect();
    let dict = dictionary_of(keyed, rg, c, |b| b.chunks(width).map(<[u8]>::to_vec).collect());
    let want: Vec<Vec<u8>> = distinct.iter().map(|&v| v.to_le_bytes()[..width].to_vec()).collect();
    assert_eq!(dict, want, "{name}: dictionary, sorted and only what the rows use");
    let pmeta = ParquetRecordBatchReaderBuilder::try_new(File::open(plain).unwrap()).unwrap().metadata().clone();
    assert_eq!(g.column(c).statistics(), pmeta.row_groups()[rg].column(c).statistics(), "{name}: statistics");
    let index = &meta.column_index().expect("column index")[rg][c];
    let pages = meta.offset_index().expect("offset index")[rg][c].page_locations();
    for (p, loc) in pages.iter().enumerate() {
        let start = loc.first_row_index as usize;
        let end = pages.get(p + 1).map_or(values.len(), |n| n.first_row_index as usize);
        let (lo, hi) = (values[start..end].iter().min().copied(), values[start..end].iter().max().copied());
        let got = match index {
            ColumnIndexMetaData::INT32(i) => {
                (i.min_value(p).map(|&v| u64::from(v as u32)), i.max_value(p).map(|&v| u64::from(v as u32)))
            }
            ColumnIndexMetaData::INT64(i) => (i.min_value(p).map(|&v| v as u64), i.max_value(p).map(|&v| v as u64)),
            other => panic!("{name}: column index {other:?}"),
        };
        assert_eq!(got, (lo, hi), "{name} page {p}: min, max");
    }
}

/// Values past the 64-byte statistics cut (a command line can be 1 MiB): the page index and the chunk
/// statistics written from the keys hold the bounds the Arrow writer computes for the same rows, cut at a
/// character, the max's last character incremented (or dropped when it cannot be without growing).
#[test]
fn long_values_are_cut_in_statistics_as_the_arrow_writer_cuts_them() {
    let cases = [
        "a".repeat(300),
        format!("{}\u{e9}{}", "b".repeat(63), "x".repeat(10)),
        format!("{}\u{7f}{}", "y".repeat(63), "x".repeat(10)),
        format!("{}\u{10ffff}{}", "c".repeat(62), "x".repeat(10)),
        "short".to_string(),
    ];
    let leaves = ["cmdline", "args.list.item", "cwd"];
    // The case as the chunk's max (beside "!"), then as its min (beside "~").
    for (case, other) in cases.iter().flat_map(|c| [(c, "!"), (c, "~")]) {
        let mut b = BatchBuilder::for_event_table(Table::ProcessActivity);
        let c = ctx(1_709_208_000_000_000_000);
        for i in 0..20u64 {
            let mut ev = event_of(Kind::Exec, i * 1000, 7);
            let v = if i % 2 == 0 { case.as_str() } else { other };
            ev.strings[1] = format!("{v}\0").into_bytes();
            ev.strings[2] = v.as_bytes().to_vec();
            b.append(&c, &ev.as_event(), &Identity::default());
        }
        let (batch, dicts) = b.finish_keyed(true).unwrap();
        let dicts = dicts.unwrap();
        let (keyed_dir, plain_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut w = LakeWriter::new(&cfg(keyed_dir.path())).unwrap();
        w.write_with(Table::ProcessActivity, &batch, Some(&dicts), &[]).unwrap();
        let mut w = LakeWriter::new(&cfg(plain_dir.path())).unwrap();
        w.write(Table::ProcessActivity, &dicts.materialize(&batch, 0)).unwrap();
        let file = |d: &Path| files_under(d).into_iter().find(|p| p.extension().is_some_and(|e| e == "parquet"));
        let (kb, kmeta) = read(&file(keyed_dir.path()).unwrap());
        let (pb, pmeta) = read(&file(plain_dir.path()).unwrap());
        assert_eq!(kb, pb, "{case:?}: rows differ");
        let columns = kmeta.file_metadata().schema_descr().columns().to_vec();
        for name in leaves {
            let leaf = columns.iter().position(|c| c.path().string() == name).unwrap();
            let (k, p) = (kmeta.row_group(0).column(leaf), pmeta.row_group(0).column(leaf));
            // Written from the keys (a sorted dictionary), not by the Arrow writer.
            assert_eq!(k.encodings().collect::<Vec<_>>(), p.encodings().collect::<Vec<_>>(), "{name}");
            let (ks, ps) = (k.statistics().unwrap(), p.statistics().unwrap());
            let bounds = |s: &::parquet::file::statistics::Statistics| {
                (
                    s.min_bytes_opt().map(<[u8]>::to_vec),
                    s.max_bytes_opt().map(<[u8]>::to_vec),
                    s.min_is_exact(),
                    s.max_is_exact(),
                )
            };
            assert_eq!(bounds(ks), bounds(ps), "{case:?} beside {other:?}: {name} statistics");
            // The pages' bounds (the Arrow writer also records an order and level histograms).
            let index = |m: &ParquetMetaData| {
                let ColumnIndexMetaData::BYTE_ARRAY(index) = &m.column_index().unwrap()[0][leaf] else { panic!() };
                let page = |p| (index.min_value(p).map(<[u8]>::to_vec), index.max_value(p).map(<[u8]>::to_vec));
                (0..index.num_pages() as usize).map(page).collect::<Vec<_>>()
            };
            assert_eq!(index(&kmeta), index(&pmeta), "{case:?} beside {other:?}: {name} page index");
        }
        if case.len() > 64 {
            let cmdline = columns.iter().position(|c| c.path().string() == "cmdline").unwrap();
            let s = kmeta.row_group(0).column(cmdline).statistics().unwrap();
            assert!(!(s.min_is_exact() && s.max_is_exact()), "{case:?}: a bound was cut");
        }
    }
}

/// Columns without a value in a file (`child_pid` beside execs, `*_raw` beside UTF-8, the addresses of unix
/// sockets) are written as runs of null levels: they read back null, with the statistics, page index and bloom
/// filters parquet-rs's own writer gives them.
#[test]
fn columns_without_a_value_read_back_null_as_the_arrow_writer_writes_them() {
    let mut b = BatchBuilder::for_event_table(Table::NetworkActivity);
    let c = ctx(1_709_208_000_000_000_000);
    for i in 0..3000u64 {
        let mut ev = event_of(Kind::NetConnect, i * 1000, 7);
        let local = Endpoint { addr: [0; 16], port: 0 };
        ev.body =
            OwnedBody::Net { ret: 0, family: 1, protocol: 0, local, remote: local, bytes_sent: 0, bytes_received: 0 };
        ev.strings[0] = format!("/run/app-{}.sock", i % 3).into_bytes();
        b.append(&c, &ev.as_event(), &Identity::default());
    }
    let (batch, dicts) = b.finish_keyed(true).unwrap();
    let batch = dicts.unwrap().materialize(&batch, 0);
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let c = LakeConfig { row_group_rows: 1000, ..cfg(ours.path()) };
    LakeWriter::new(&c).unwrap().write(Table::NetworkActivity, &batch).unwrap();
    let ours = files_under(ours.path()).into_iter().find(|p| p.extension().is_some_and(|e| e == "parquet")).unwrap();
    let theirs = theirs.path().join("arrow-writer.parquet");
    let props = ::parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1000))
        .set_statistics_enabled(::parquet::file::properties::EnabledStatistics::Page)
        .set_bloom_filter_enabled(true)
        .build();
    let mut w =
        ::parquet::arrow::ArrowWriter::try_new(File::create(&theirs).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let ((ob, om), (_, tm)) = (read(&ours), read(&theirs));
    assert_eq!(ob.columns(), batch.columns(), "rows differ");
    let opts = ReadOptionsBuilder::new()
        .with_reader_properties(ReaderProperties::builder().set_read_bloom_filter(true).build())
        .build();
    let file = SerializedFileReader::new_with_options(File::open(&ours).unwrap(), opts).unwrap();
    let mut checked = Vec::new();
    for (col, field) in batch.schema().fields().iter().enumerate() {
        if batch.column(col).null_count() != batch.num_rows()
            || matches!(field.data_type(), arrow::datatypes::DataType::List(_))
        {
            continue;
        }
        checked.push(field.name().clone());
        for rg in 0..om.num_row_groups() {
            let stats = |m: &ParquetMetaData| {
                let s = m.row_group(rg).column(col).statistics().unwrap().clone();
                (s.null_count_opt(), s.min_bytes_opt().is_some(), s.max_bytes_opt().is_some())
            };
            assert_eq!(stats(&om), stats(&tm), "{} statistics", field.name());
            let nulls = |m: &ParquetMetaData| {
                let index = &m.column_index().unwrap()[rg][col];
                (0..index.num_pages())
                    .map(|p| (index.is_null_page(p as usize), index.null_count(p as usize)))
                    .collect::<Vec<_>>()
            };
            assert_eq!(nulls(&om), nulls(&tm), "{} page index", field.name());
            if Table::NetworkActivity.bloom_columns().contains(&field.name().as_str()) {
                let bloom = file.get_row_group(rg).unwrap().get_column_bloom_filter(col).cloned();
                assert!(bloom.is_some_and(|b| !b.check(&b"10.0.0.1"[..])), "{}: an empty bloom filter", field.name());
            }
        }
    }
    for name in ["local_ip", "remote_ip", "unix_path_raw", "bytes_sent", "first_time", "comm_raw"] {
        assert!(checked.iter().any(|c| c == name), "{name} has values: {checked:?}");
    }
}
