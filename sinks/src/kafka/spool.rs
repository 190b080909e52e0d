//! The agent's on-disk spool: messages the broker did not take, kept in
//! order and replayed when it is back.
//!
//! A spool is a directory of segment files `<id:020>.seg`, each a sequence of
//! records `[len: u32 LE][crc32 of the data: u32 LE][data]`. Only the newest
//! segment is appended to. At open every segment is checked record by record;
//! a torn or corrupt tail (a crash mid-write, a bad sector) is cut off at the
//! last good record and counted. A segment is deleted once every record in it
//! was acknowledged by the broker. Nothing is silent: a full spool either
//! blocks (`block`) or deletes its oldest segment and counts what was in it
//! (`drop_oldest`).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{SpoolConfig, SpoolPolicy};
use super::stats::{ProducerStats, add, set};
use super::wire::Envelope;

const HEADER: u64 = 8;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool: cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool: a record of {0} bytes is larger than the whole spool")]
    TooLarge(u64),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io { what, path: path.to_path_buf(), source }
}

/// Where a replayed record came from, to acknowledge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    segment: u64,
}

/// What `append` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    Stored,
    /// Policy `block` and no room: nothing written, try again later.
    Full,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    records: u64,
    rows: u64,
    /// Closed for appends.
    sealed: bool,
    /// Records handed out by `next_record` in this generation, and where the next starts.
    sent: u64,
    read_off: u64,
    acked: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    policy: SpoolPolicy,
    segments: VecDeque<Segment>,
    /// The newest segment, open for appends (absent once sealed).
    writer: Option<File>,
    /// The segment `next_record` reads from.
    reader: Option<(u64, File)>,
    total: u64,
    /// Bumped on a rewind: tickets of earlier generations are stale.
    generation: u64,
    next_id: u64,
    stats: Arc<ProducerStats>,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

impl Spool {
    /// Opens (or creates) the spool, checking every record of every segment
    /// and truncating at the first bad one.
    pub fn open(cfg: &SpoolConfig, stats: Arc<ProducerStats>) -> Result<Spool, SpoolError> {
        fs::create_dir_all(&cfg.dir).map_err(io_err("create", &cfg.dir))?;
        let mut ids: Vec<u64> = fs::read_dir(&cfg.dir)
            .map_err(io_err("list", &cfg.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut spool = Spool {
            dir: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            segment_bytes: cfg.segment_bytes,
            policy: cfg.policy,
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            total: 0,
            generation: 0,
            next_id: ids.last().map_or(0, |l| l + 1),
            stats,
        };
        for id in ids {
            let seg = spool.recover(id)?;
            if seg.records == 0 {
                let path = seg_path(&spool.dir, id);
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                continue;
            }
            spool.total += seg.bytes;
            spool.segments.push_back(seg);
        }
        spool.publish();
        Ok(spool)
    }

    /// Scans one segment; cuts it at the first record whose length or crc is wrong.
    fn recover(&self, id: u64) -> Result<Segment, SpoolError> {
        let path = seg_path(&self.dir, id);
        let data = fs::read(&path).map_err(io_err("read", &path))?;
        let (mut off, mut records, mut rows) = (0usize, 0u64, 0u64);
        while let Some(rec) = record_at(&data, off) {
            records += 1;
            rows += Envelope::from_spool(rec).map_or(0, |e| u64::from(e.rows));
            off += HEADER as usize + rec.len();
        }
        if off < data.len() {
            let cut = (data.len() - off) as u64;
            tracing::warn!(segment = %path.display(), good_bytes = off, cut_bytes = cut, "spool: torn or corrupt tail cut");
            add(&self.stats.spool_truncated_bytes, cut);
            let f = OpenOptions::new().write(true).open(&path).map_err(io_err("open", &path))?;
            f.set_len(off as u64).map_err(io_err("truncate", &path))?;
            f.sync_all().map_err(io_err("fsync", &path))?;
        }
        Ok(Segment { id, bytes: off as u64, records, rows, sealed: true, sent: 0, read_off: 0, acked: 0 })
    }

    /// Appends one record (an `Envelope::to_spool`) of `rows` rows.
    pub fn append(&mut self, data: &[u8], rows: u64) -> Result<Appended, SpoolError> {
        let size = HEADER + data.len() as u64;
        if size > self.max_bytes {
            return Err(SpoolError::TooLarge(size));
        }
        while self.total + size > self.max_bytes {
            match self.policy {
                SpoolPolicy::Block => return Ok(Appended::Full),
                SpoolPolicy::DropOldest => self.drop_oldest()?,
            }
        }
        let roll = match self.segments.back() {
            Some(s) => s.sealed || self.writer.is_none() || (s.bytes > 0 && s.bytes + size > self.segment_bytes),
            None => true,
        };
        if roll {
            self.roll()?;
        }
        let Some(seg) = self.segments.back_mut() else { return Ok(Appended::Full) };
        let path = seg_path(&self.dir, seg.id);
        let Some(w) = self.writer.as_mut() else { return Ok(Appended::Full) };
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        w.write_all(&header).and_then(|()| w.write_all(data)).map_err(io_err("write", &path))?;
        seg.bytes += size;
        seg.records += 1;
        seg.rows += rows;
        self.total += size;
        add(&self.stats.spooled, 1);
        add(&self.stats.spooled_rows, rows);
        self.publish();
        Ok(Appended::Stored)
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        self.seal()?;
        let id = self.next_id;
        self.next_id += 1;
        let path = seg_path(&self.dir, id);
        let f = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err("create", &path))?;
        self.writer = Some(f);
        self.segments.push_back(Segment {
            id,
            bytes: 0,
            records: 0,
            rows: 0,
            sealed: false,
            sent: 0,
            read_off: 0,
            acked: 0,
        });
        Ok(())
    }

    /// Closes the newest segment for appends (fsynced: a sealed segment survives a node crash).
    fn seal(&mut self) -> Result<(), SpoolError> {
        if let Some(w) = self.writer.take()
            && let Some(seg) = self.segments.back_mut()
        {
            seg.sealed = true;
            w.sync_all().map_err(io_err("fsync", &seg_path(&self.dir, seg.id)))?;
        }
        Ok(())
    }

    fn drop_oldest(&mut self) -> Result<(), SpoolError> {
        let Some(seg) = self.segments.pop_front() else { return Ok(()) };
        if !seg.sealed {
            self.writer = None;
        }
        let lost = seg.records - seg.acked.min(seg.records);
        add(&self.stats.spool_dropped, lost);
        add(&self.stats.spool_dropped_rows, seg.rows);
        tracing::error!(segment = seg.id, messages = lost, rows = seg.rows, "spool full: oldest segment dropped");
        self.remove(&seg)
    }

    fn remove(&mut self, seg: &Segment) -> Result<(), SpoolError> {
        if self.reader.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            self.reader = None;
        }
        self.total -= seg.bytes;
        let path = seg_path(&self.dir, seg.id);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        self.publish();
        Ok(())
    }

    /// The next record not yet handed out, oldest first.
    pub fn next_record(&mut self) -> Result<Option<(Ticket, Vec<u8>)>, SpoolError> {
        let Some(i) = self.segments.iter().position(|s| s.sent < s.records) else { return Ok(None) };
        let (id, off) = (self.segments[i].id, self.segments[i].read_off);
        let path = seg_path(&self.dir, id);
        if self.reader.as_ref().is_none_or(|(r, _)| *r != id) {
            self.reader = Some((id, File::open(&path).map_err(io_err("open", &path))?));
        }
        let Some((_, f)) = self.reader.as_ref() else { return Ok(None) };
        let mut header = [0u8; 8];
        f.read_exact_at(&mut header, off).map_err(io_err("read", &path))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut data = vec![0u8; len];
        f.read_exact_at(&mut data, off + HEADER).map_err(io_err("read", &path))?;
        let seg = &mut self.segments[i];
        seg.sent += 1;
        seg.read_off += HEADER + len as u64;
        // The reader caught up with the writer: new records go to a new segment, so this one can go once acked.
        if !seg.sealed && seg.sent == seg.records {
            self.seal()?;
        }
        Ok(Some((Ticket { generation: self.generation, segment: id }, data)))
    }

    /// The broker took a record handed out by `next_record`.
    pub fn ack(&mut self, t: Ticket) -> Result<(), SpoolError> {
        if t.generation != self.generation {
            return Ok(());
        }
        if let Some(s) = self.segments.iter_mut().find(|s| s.id == t.segment) {
            s.acked += 1;
        }
        while let Some(front) = self.segments.front() {
            if !(front.sealed && front.acked >= front.records) {
                break;
            }
            if let Some(seg) = self.segments.pop_front() {
                self.remove(&seg)?;
            }
        }
        self.publish();
        Ok(())
    }

    /// A record handed out by `next_record` failed: everything not acknowledged is
    /// sent again from the oldest segment on (the lake drops what it already has).
    pub fn rewind(&mut self, t: Ticket) {
        if t.generation != self.generation {
            return;
        }
        self.generation += 1;
        for s in &mut self.segments {
            s.sent = 0;
            s.read_off = 0;
            s.acked = 0;
        }
    }

    /// Records handed out and not yet acknowledged, in this generation.
    pub fn in_flight(&self) -> u64 {
        self.segments.iter().map(|s| s.sent - s.acked.min(s.sent)).sum()
    }

    /// Records not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.segments.iter().map(|s| s.records - s.acked.min(s.records)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.records == 0)
    }

    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// Makes appended records durable (at shutdown; sealed segments already are).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let (Some(w), Some(seg)) = (self.writer.as_ref(), self.segments.back()) {
            w.sync_all().map_err(io_err("fsync", &seg_path(&self.dir, seg.id)))?;
        }
        Ok(())
    }

    fn publish(&self) {
        set(&self.stats.spool_bytes, self.total);
        set(&self.stats.spool_messages, self.pending());
    }
}

/// The record starting at `off` if its length and crc check out.
fn record_at(data: &[u8], off: usize) -> Option<&[u8]> {
    let header = data.get(off..off + HEADER as usize)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = off + HEADER as usize;
    let rec = data.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(rec) == crc).then_some(rec)
}
