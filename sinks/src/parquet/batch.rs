//! Rows of one event table in the lake's Arrow builders, for producers that
//! ship record batches elsewhere (the Kafka agent) instead of writing files.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::error::ArrowError;
use tracelake_model::Event;
use tracelake_model::json::{Identity, JsonContext};

use super::classes::Extra;
use super::columns::Common;
use super::dict_chunk::{self, Dictionaries};
use super::schema::Table;
use super::writer::LakeError;

/// Builds record batches with exactly the schema of a lake table
/// (`Table::schema`), so a consumer can hand them to `LakeWriter::write`.
#[derive(Debug)]
pub struct BatchBuilder {
    table: Table,
    common: Common,
    extra: Extra,
    bytes: usize,
}

impl BatchBuilder {
    /// Builders for an event table; None for tables no sensor event goes to.
    pub fn new(table: Table) -> Option<BatchBuilder> {
        Some(BatchBuilder { table, common: Common::default(), extra: Extra::new(table)?, bytes: 0 })
    }

    /// Builders for one of `Table::EVENT_TABLES` (the lake sink's buffers; a table without event columns
    /// gets the process columns, as no event goes there).
    pub(crate) fn for_event_table(table: Table) -> BatchBuilder {
        let extra = Extra::new(table).unwrap_or(Extra::Process(Box::default()));
        BatchBuilder { table, common: Common::default(), extra, bytes: 0 }
    }

    pub fn table(&self) -> Table {
        self.table
    }

    /// Appends one event (which must belong to this table: `Table::of`);
    /// returns an estimate of the bytes it added.
    pub fn append(&mut self, ctx: &JsonContext<'_>, ev: &Event<'_>, id: &Identity<'_>) -> usize {
        debug_assert_eq!(Table::of(ev), self.table);
        let n = self.common.append(ctx, ev, id) + self.extra.append(ev);
        self.bytes += n;
        n
    }

    pub fn rows(&self) -> usize {
        self.common.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    /// Estimated bytes buffered since the last `finish`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The rows appended so far as one batch; the builders start empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, LakeError> {
        self.finish_keyed(false).map(|(batch, _)| batch)
    }

    /// As `finish`, with the keys its string and process columns were built from: a `LakeSink` given both
    /// (`push_built_keyed`) encodes those columns from the keys, as it does its own rows, rather than
    /// through the Arrow writer (the live detector shares its batches with the lake this way).
    pub fn finish_with_keys(&mut self) -> Result<(RecordBatch, BatchKeys), LakeError> {
        // Keyed, `finish_keyed` always gives the keys: without them the batch holds only placeholders.
        let (batch, keys) = self.finish_unmaterialized()?;
        Ok((keys.0.materialize(&batch, 0), keys))
    }

    /// As `finish`; with `keyed`, also the identity columns as keys into their distinct values, from which
    /// `LakeWriter` encodes them without re-interning every row.
    pub(crate) fn finish_keyed(&mut self, keyed: bool) -> Result<(RecordBatch, Option<Dictionaries>), LakeError> {
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.table.schema().fields().len());
        self.bytes = 0;
        let table = self.table.name();
        let arrow = |source| LakeError::Arrow { table, source };
        let rows = self.rows();
        // One placeholder serves every keyed column.
        let placeholder = keyed.then(|| dict_chunk::placeholder(rows));
        // Both are emptied before an error is returned: the next batch starts aligned.
        let common = self.common.finish(&mut cols, placeholder.as_ref());
        let extra = self.extra.finish(&mut cols, placeholder.as_ref());
        let mut dicts = common.map_err(arrow)?;
        let extra = extra.map_err(arrow)?;
        // The batch holds placeholders for these columns: keys that do not cover its rows would lose data.
        if extra.iter().any(|g| g.keys.len() != rows) {
            return Err(arrow(ArrowError::InvalidArgumentError(format!("keyed columns do not have {rows} rows"))));
        }
        if let Some(d) = &mut dicts {
            d.groups.extend(extra);
        }
        Ok((RecordBatch::try_new(self.table.schema(), cols).map_err(arrow)?, dicts))
    }
}

impl BatchBuilder {
    /// As `finish_with_keys`, without gathering the keyed columns: the batch holds placeholders there, so
    /// only the lake's writer, given the keys, may read it (the lake service, which needs only the event ids,
    /// and those are in the keys as numbers).
    pub(crate) fn finish_unmaterialized(&mut self) -> Result<(RecordBatch, BatchKeys), LakeError> {
        let (batch, dicts) = self.finish_keyed(true)?;
        let dicts = dicts.ok_or_else(|| LakeError::Arrow {
            table: self.table.name(),
            source: ArrowError::InvalidArgumentError("no keys for a keyed batch".into()),
        })?;
        Ok((batch, BatchKeys(dicts)))
    }
}

/// The keys of a batch's keyed columns (`BatchBuilder::finish_with_keys`); opaque outside the lake.
#[derive(Clone, Debug)]
pub struct BatchKeys(pub(crate) Dictionaries);

/// Bytes of the values a batch holds. Not `get_array_memory_size`: that counts every buffer's whole
/// allocation, and the columns of a decoded Arrow IPC message all share the message's, so a 20 KiB message
/// counted as megabytes and the lake service closed files long before `file_bytes`.
pub(crate) fn data_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or_else(|_| c.get_array_memory_size()))
        .sum()
}
