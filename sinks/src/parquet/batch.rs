//! Public builder of one event table's record batches, for producers other
//! than `LakeSink` (live detections, test fixtures): the same column
//! builders, so the batches have exactly the lake's schema.

use arrow::array::{ArrayRef, RecordBatch};
use tracelake_model::Event;
use tracelake_model::json::{Identity, JsonContext};

use super::classes::Extra;
use super::columns::Common;
use super::schema::Table;
use super::writer::LakeError;

/// Rows of one event table (`Table::EVENT_TABLES`) being built into a batch.
#[derive(Debug)]
pub struct TableBuilder {
    table: Table,
    common: Common,
    extra: Extra,
    bytes: usize,
}

impl TableBuilder {
    /// None for tables no sensor event goes to (`detection_finding`, `ip_ownership`).
    pub fn new(table: Table) -> Option<TableBuilder> {
        Some(TableBuilder { table, common: Common::default(), extra: Extra::new(table)?, bytes: 0 })
    }

    pub fn table(&self) -> Table {
        self.table
    }

    /// Appends one event; it must belong to this table (`Table::of(ev) == self.table()`).
    pub fn push(&mut self, ctx: &JsonContext<'_>, ev: &Event<'_>, id: &Identity<'_>) {
        debug_assert_eq!(Table::of(ev), self.table);
        self.bytes += self.common.append(ctx, ev, id) + self.extra.append(ev);
    }

    pub fn len(&self) -> usize {
        self.common.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated bytes buffered (the sink's memory estimate).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The rows so far as one batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, LakeError> {
        let schema = self.table.schema();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        self.common.finish(&mut cols);
        self.extra.finish(&mut cols);
        self.bytes = 0;
        RecordBatch::try_new(schema, cols).map_err(|source| LakeError::Arrow { table: self.table.name(), source })
    }
}
