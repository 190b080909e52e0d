//! Arrow builders for the event tables: one `Common` set every event table
//! has, plus the columns of its class (`Extra`). Appending a row writes into
//! the builders' buffers only: nothing is allocated per event beyond their
//! amortised growth.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, GenericByteBuilder, ListBuilder, PrimitiveBuilder,
    StringBuilder, UInt64Array,
};
use arrow::datatypes::{
    ArrowPrimitiveType, ByteArrayType, DataType, Field, Int32Type, TimestampNanosecondType, UInt64Type,
};
use arrow::error::ArrowError;
use tracelake_model::json::{Identity, JsonContext, event_id};
use tracelake_model::{Body, Event, flags};

use super::dict_chunk::Dictionaries;
use super::id_chunk;
use super::identity::{ID_COLUMNS, IdentityColumns};
use super::keyed::{KeyedBytes, KeyedColumn, KeyedStrings};
use super::lineage::LineageColumns;
use super::numbers::{optional, optional_array, optional_bool};
use super::schema::{list_of, ocsf_class_uid, ts_type};
use super::subject::{SUBJECT_U32, SubjectColumns};

/// Rough fixed cost of a row in the builders, for the memory bound.
const ROW_BYTES: usize = 256;

pub(crate) fn finish(b: &mut impl Refill, out: &mut Vec<ArrayRef>) {
    let array = b.finish();
    *b = Refill::sized_for(&*array);
    out.push(array);
}

/// A builder made ready for a batch like one it finished. Arrow's `finish` leaves a builder with no
/// capacity, so a long-running sink grew every column from nothing again for each file: `realloc` and its
/// copies were 5 % of `lake/write_steady`.
pub(crate) trait Refill: ArrayBuilder + Sized {
    /// Empty, with room for as many rows (and bytes) as `like` holds.
    fn sized_for(like: &dyn Array) -> Self;
}

impl<T: ArrowPrimitiveType> Refill for PrimitiveBuilder<T> {
    fn sized_for(like: &dyn Array) -> Self {
        // Keeps a timestamp's time zone.
        PrimitiveBuilder::with_capacity(like.len()).with_data_type(like.data_type().clone())
    }
}

impl<T: ByteArrayType> Refill for GenericByteBuilder<T> {
    fn sized_for(like: &dyn Array) -> Self {
        let bytes = like.as_bytes_opt::<T>().map_or(0, |a| a.values().len());
        GenericByteBuilder::with_capacity(like.len(), bytes)
    }
}

impl Refill for BooleanBuilder {
    fn sized_for(like: &dyn Array) -> Self {
        BooleanBuilder::with_capacity(like.len())
    }
}

impl<T: Refill> Refill for ListBuilder<T> {
    fn sized_for(like: &dyn Array) -> Self {
        let values = like.as_list_opt::<i32>().map(|l| Arc::clone(l.values()));
        let items = match &values {
            Some(v) => T::sized_for(&**v),
            None => T::sized_for(&arrow::array::new_empty_array(&DataType::Null)),
        };
        ListBuilder::with_capacity(items, like.len())
    }
}

fn wall(ctx: &JsonContext<'_>, ktime_ns: u64) -> i64 {
    i64::try_from(ctx.clock.wall_ns(ktime_ns)).unwrap_or(i64::MAX)
}

/// Writes `v` into `b` (a builder's current value, a string), invalid UTF-8 as U+FFFD.
pub(crate) fn lossy_into(b: &mut impl Write, v: &[u8]) {
    // Almost always valid: one check, one copy.
    if let Ok(s) = std::str::from_utf8(v) {
        let _ = b.write_str(s);
        return;
    }
    for chunk in v.utf8_chunks() {
        let _ = b.write_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let _ = b.write_char('\u{fffd}');
        }
    }
}

/// An argv (NUL-separated) as a command line: its arguments joined by spaces, invalid UTF-8 as U+FFFD
/// (`cmdline`, `parent_cmdline`).
pub(crate) fn cmdline_into(b: &mut impl Write, argv: &[u8]) {
    for (i, arg) in split_args(argv).enumerate() {
        if i > 0 {
            let _ = b.write_char(' ');
        }
        lossy_into(b, arg);
    }
}

/// argv split at NULs, as `Event::args` does.
pub(crate) fn split_args(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    raw.split(|&b| b == 0).filter(move |_| !raw.is_empty())
}

/// A row's own columns (beside its keyed ones).
#[derive(Clone, Copy, Debug)]
struct CommonRow {
    time: i64,
    /// `first_time`, `last_time` of a summary.
    first: i64,
    last: i64,
    count: u64,
    class_uid: i32,
    flags: u32,
    summary: bool,
}

/// A `time`-typed column (UTC nanoseconds) of `rows`, null where `has` does not hold.
fn timestamps(rows: &[CommonRow], has: impl Fn(&CommonRow) -> bool, value: impl Fn(&CommonRow) -> i64) -> ArrayRef {
    Arc::new(optional_array::<TimestampNanosecondType, _>(rows, has, value).with_timezone("UTC"))
}

/// `flags` of `rows`: each row's set flags by name (most rows have none).
fn flag_lists(rows: &[CommonRow]) -> ArrayRef {
    let mut lists = ListBuilder::new(StringBuilder::new());
    for r in rows {
        if r.flags != 0 {
            for (bit, name) in flags::NAMES {
                if r.flags & bit != 0 {
                    lists.values().append_value(name);
                }
            }
        }
        lists.append(true);
    }
    Arc::new(lists.finish())
}

/// Columns every event table starts with.
#[derive(Debug, Default)]
pub(crate) struct Common {
    /// `time`, `class_uid`, `count`, `summary`, `first_time`, `last_time`, `flags`: one plain struct per row,
    /// the columns built at `finish` (`numbers.rs`).
    rows: Vec<CommonRow>,
    /// Kept as numbers: formatted at `finish`, or by the Parquet writer (`id_chunk`).
    event_id: Vec<u64>,
    node: KeyedStrings,
    kind: KeyedStrings,
    ids: IdentityColumns,
    /// `cgroup_id` ... `mntns`.
    subject: SubjectColumns,
    comm: KeyedBytes,
    exe: KeyedBytes,
    lineage: LineageColumns,
}

impl Common {
    pub(crate) fn fields(f: &mut Vec<Field>) {
        use DataType::{Boolean, Int32, UInt32, UInt64, Utf8};
        f.push(Field::new("time", ts_type(), false));
        f.push(Field::new("event_id", Utf8, false));
        f.push(Field::new("node", Utf8, false));
        f.push(Field::new("kind", Utf8, false));
        f.push(Field::new("class_uid", Int32, false));
        f.push(Field::new("count", UInt64, false));
        f.push(Field::new("summary", Boolean, false));
        f.push(Field::new("first_time", ts_type(), true));
        f.push(Field::new("last_time", ts_type(), true));
        f.push(Field::new("flags", list_of(Utf8), false));
        for name in ID_COLUMNS {
            f.push(Field::new(name, Utf8, true));
        }
        f.push(Field::new("cgroup_id", UInt64, false));
        f.push(Field::new("container", Boolean, false));
        f.push(Field::new("enrichment_partial", Boolean, false));
        for name in SUBJECT_U32 {
            f.push(Field::new(name, UInt32, false));
        }
        f.push(Field::new("proc_start_ns", UInt64, false));
        f.push(Field::new("pidns", UInt32, false));
        f.push(Field::new("mntns", UInt32, false));
        KeyedBytes::fields("comm", f);
        KeyedBytes::fields("exe", f);
        f.push(Field::new("parent_exe", Utf8, true));
        f.push(Field::new("parent_cmdline", Utf8, true));
        f.push(Field::new("ancestor_pids", list_of(UInt32), false));
        f.push(Field::new("ancestor_exes", list_of(Utf8), false));
    }

    /// Appends one row; returns an estimate of the bytes it added.
    pub(crate) fn append(&mut self, ctx: &JsonContext<'_>, ev: &Event<'_>, id: &Identity<'_>) -> usize {
        let s = &ev.subject;
        let mut size = ROW_BYTES;
        let (first, last) = ev.aggregate.map_or((0, 0), |a| (wall(ctx, a.first_ns), wall(ctx, a.last_ns)));
        self.rows.push(CommonRow {
            time: wall(ctx, s.ktime_ns),
            first,
            last,
            count: ev.count,
            class_uid: ocsf_class_uid(ev.kind),
            flags: ev.flags,
            summary: ev.aggregate.is_some(),
        });
        self.event_id.push(event_id(ctx.node_salt, ev));
        self.node.append(ctx.node);
        self.kind.append_static(ev.kind.name());
        size += self.ids.append(id);
        self.subject.append(s, id.container_id.is_some(), id.partial);
        size += self.comm.append(Some(s.comm()));
        let exe = match ev.body {
            Body::Exec { exe, .. } | Body::Snapshot { exe, .. } => Some(exe),
            Body::Fork { .. }
            | Body::Exit { .. }
            | Body::Threads
            | Body::File { .. }
            | Body::Net { .. }
            | Body::Syscall { .. } => id.process_exe,
        };
        size += self.exe.append(exe);
        size + self.lineage.append(id)
    }

    /// With `keyed`, the columns held as keys into distinct values (identity, lineage, node, kind, comm, exe) as such
    /// too, for the Parquet writer (`dict_chunk`).
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<ArrayRef>,
        keyed: Option<&ArrayRef>,
    ) -> Result<Option<Dictionaries>, ArrowError> {
        let rows = self.len();
        let r = &self.rows;
        out.push(timestamps(r, |_| true, |c| c.time));
        let numbers = UInt64Array::from(std::mem::replace(&mut self.event_id, Vec::with_capacity(rows)));
        let event_ids = match keyed {
            Some(placeholder) => {
                out.push(Arc::clone(placeholder));
                vec![(out.len() - 1, numbers)]
            }
            None => {
                out.push(id_chunk::hex_column(numbers.values()));
                Vec::new()
            }
        };
        // Every builder is emptied even if one fails, so later batches stay aligned.
        let node = self.node.finish(out, keyed);
        let kind = self.kind.finish(out, keyed);
        out.push(optional::<Int32Type, _>(r, |_| true, |c| c.class_uid));
        out.push(optional::<UInt64Type, _>(r, |_| true, |c| c.count));
        out.push(optional_bool(r, |_| true, |c| c.summary));
        out.push(timestamps(r, |c| c.summary, |c| c.first));
        out.push(timestamps(r, |c| c.summary, |c| c.last));
        out.push(flag_lists(r));
        self.rows.clear();
        let ids = self.ids.finish(out, keyed);
        let subject = self.subject.finish(out, keyed.is_some());
        let comm = self.comm.finish(out, keyed);
        let exe = self.exe.finish(out, keyed);
        let lineage = self.lineage.finish(out, keyed);
        let groups: Vec<_> = [node?, kind?, ids?, subject?, comm?, exe?, lineage?].into_iter().flatten().collect();
        // The batch holds placeholders for these columns: keys that do not cover its rows would lose data.
        if groups.iter().any(|g| g.keys.len() != rows) {
            return Err(ArrowError::InvalidArgumentError(format!("keyed columns do not have {rows} rows")));
        }
        Ok(keyed.map(|_| Dictionaries { groups, ids: event_ids }))
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}
