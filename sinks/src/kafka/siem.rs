//! `tracelake lake` forwarding its rows to SIEMs (docs/siem.md): the rows a message adds to a table (after
//! the dedupe) are pushed to every forwarder as they are consumed, and a table's file is written, and its
//! offsets committed, only once every forwarder holds those rows safely (delivered, dead-lettered, or in its
//! disk buffer). So a crash at any point replays what a SIEM may lack: before the forwarders were safe,
//! neither the file nor the commit exists; after, the SIEM has the rows, and the replay the lake's dedupe
//! drops needs no forwarding.

#[cfg(feature = "siem")]
mod on {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use arrow::array::RecordBatch;

    use crate::forward::Forwarder;
    use crate::parquet::Table;
    use crate::parquet::dict_chunk::Dictionaries;

    /// The forwarders and, per consumed table, the newest ticket each gave for its pending rows.
    #[derive(Debug, Default)]
    pub(crate) struct SiemGate {
        forwarders: Vec<(Arc<Forwarder>, Duration)>,
        tickets: Vec<Vec<u64>>,
    }

    impl SiemGate {
        /// `bound`: how long a flush waits for a forwarder (its spill bound plus a request timeout).
        pub(crate) fn new(forwarders: Vec<(Arc<Forwarder>, Duration)>, tables: usize) -> SiemGate {
            let n = forwarders.len();
            SiemGate { forwarders, tickets: vec![vec![0; n]; tables] }
        }

        /// Forwards rows the lake will write to table `i` (keyed columns gathered first: a SIEM reads values).
        pub(crate) fn push(&mut self, i: usize, table: Table, batch: &RecordBatch, keys: Option<&Dictionaries>) {
            if self.forwarders.is_empty() || batch.num_rows() == 0 {
                return;
            }
            let rows = match keys {
                Some(k) => k.materialize(batch, 0),
                None => batch.clone(),
            };
            for (f, (fwd, _)) in self.forwarders.iter().enumerate() {
                let t = fwd.push(table, &rows);
                if let Some(slot) = self.tickets.get_mut(i).and_then(|v| v.get_mut(f)) {
                    *slot = t;
                }
            }
        }

        /// Waits until every forwarder holds table `i`'s pushed rows safely; false (logged) past the bound,
        /// and the flush is tried again later: the file and the commit wait with it.
        pub(crate) fn ready(&self, i: usize) -> bool {
            let Some(tickets) = self.tickets.get(i) else { return true };
            for ((fwd, bound), &t) in self.forwarders.iter().zip(tickets) {
                let start = Instant::now();
                if !fwd.wait_for(t, *bound) {
                    tracing::error!(target = fwd.name(), waited = ?start.elapsed(), "lake: the SIEM forwarder has not made these rows safe (disk buffer full or failing?); not writing nor committing them yet");
                    return false;
                }
            }
            true
        }
    }
}

#[cfg(not(feature = "siem"))]
mod on {
    use arrow::array::RecordBatch;

    use crate::parquet::Table;
    use crate::parquet::dict_chunk::Dictionaries;

    /// Without the `siem` feature: nothing to forward, nothing to wait for.
    #[derive(Debug, Default)]
    pub(crate) struct SiemGate;

    impl SiemGate {
        pub(crate) fn push(&mut self, _i: usize, _t: Table, _b: &RecordBatch, _k: Option<&Dictionaries>) {}

        pub(crate) fn ready(&self, _i: usize) -> bool {
            true
        }
    }
}

pub(crate) use on::SiemGate;
