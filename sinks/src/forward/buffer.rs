//! The forwarder's disk buffer: rendered documents the SIEM has not taken yet, kept in order across
//! restarts.
//!
//! The layout and recovery follow the Kafka spool (`kafka/spool.rs`): segment files `<id:020>.seg` of
//! frames `[len: u32 LE][crc32 of the data: u32 LE][data]`, only the newest appended to, every frame checked
//! at open and a torn or corrupt tail cut off (counted). The code is not shared: the spool's records are
//! Kafka envelopes with per-generation tickets and producer stats, where this buffer hands out documents
//! one by one and deletes a segment once every document read from it was resolved. A full buffer blocks
//! or deletes its oldest segment (`WhenFull`), counted either way.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::ForwardError;
use super::config::WhenFull;

const HEADER: u64 = 8;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ForwardError + 'a {
    move |source| ForwardError::Io { what, path: path.to_path_buf(), source }
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    records: u64,
    sealed: bool,
    /// Records read out, and where the next starts.
    read: u64,
    read_off: u64,
    /// Records read out and then delivered, rejected or dropped.
    resolved: u64,
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    Stored,
    /// `WhenFull::Block` and no room: nothing written.
    Full,
}

#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    when_full: WhenFull,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    reader: Option<(u64, File)>,
    total: u64,
    next_id: u64,
    /// Documents lost to `drop_oldest`, and bytes cut from corrupt tails, since open.
    pub dropped: u64,
    pub truncated_bytes: u64,
}

impl DiskBuffer {
    /// Opens (or creates) the buffer, checking every frame and cutting each segment at its first bad one.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
        when_full: WhenFull,
    ) -> Result<DiskBuffer, ForwardError> {
        fs::create_dir_all(dir).map_err(io_err("create the buffer directory", dir))?;
        let mut ids: Vec<u64> = fs::read_dir(dir)
            .map_err(io_err("list the buffer directory", dir))?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut buf = DiskBuffer {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            when_full,
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            total: 0,
            next_id: ids.last().map_or(0, |l| l + 1),
            dropped: 0,
            truncated_bytes: 0,
        };
        for id in ids {
            let seg = buf.recover(id)?;
            if seg.records == 0 {
                let path = seg_path(&buf.dir, id);
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                continue;
            }
            buf.total += seg.bytes;
            buf.segments.push_back(seg);
        }
        Ok(buf)
    }

    fn recover(&mut self, id: u64) -> Result<Segment, ForwardError> {
        let path = seg_path(&self.dir, id);
        let data = fs::read(&path).map_err(io_err("read", &path))?;
        let (mut off, mut records) = (0usize, 0u64);
        while let Some(rec) = frame_at(&data, off) {
            records += 1;
            off += HEADER as usize + rec.len();
        }
        if off < data.len() {
            let cut = (data.len() - off) as u64;
            tracing::warn!(segment = %path.display(), good_bytes = off, cut_bytes = cut, "siem buffer: torn or corrupt tail cut");
            self.truncated_bytes += cut;
            let f = OpenOptions::new().write(true).open(&path).map_err(io_err("open", &path))?;
            f.set_len(off as u64).map_err(io_err("truncate", &path))?;
            f.sync_all().map_err(io_err("fsync", &path))?;
        }
        Ok(Segment { id, bytes: off as u64, records, sealed: true, read: 0, read_off: 0, resolved: 0 })
    }

    /// Appends documents (not yet durable: `sync` makes them so). With `Block` and no room, nothing is
    /// written and `Full` comes back.
    pub fn append(&mut self, docs: &[&[u8]]) -> Result<Appended, ForwardError> {
        let size: u64 = docs.iter().map(|d| HEADER + d.len() as u64).sum();
        if size > self.max_bytes {
            return Err(ForwardError::Config(format!(
                "siem buffer: {size} bytes of documents do not fit in buffer.max_bytes = {}",
                self.max_bytes
            )));
        }
        while self.total + size > self.max_bytes {
            match self.when_full {
                WhenFull::Block => return Ok(Appended::Full),
                WhenFull::DropOldest => {
                    if !self.drop_oldest()? {
                        return Ok(Appended::Full);
                    }
                }
            }
        }
        for d in docs {
            self.append_one(d)?;
        }
        Ok(Appended::Stored)
    }

    fn append_one(&mut self, data: &[u8]) -> Result<(), ForwardError> {
        let size = HEADER + data.len() as u64;
        let roll = match self.segments.back() {
            Some(s) => s.sealed || self.writer.is_none() || (s.bytes > 0 && s.bytes + size > self.segment_bytes),
            None => true,
        };
        if roll {
            self.roll()?;
        }
        let (Some(seg), Some(w)) = (self.segments.back_mut(), self.writer.as_mut()) else {
            return Err(ForwardError::Config("siem buffer: no open segment".into()));
        };
        let path = seg_path(&self.dir, seg.id);
        let len =
            u32::try_from(data.len()).map_err(|_| ForwardError::Config("siem buffer: document over 4 GiB".into()))?;
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        w.write_all(&header).and_then(|()| w.write_all(data)).map_err(io_err("write", &path))?;
        seg.bytes += size;
        seg.records += 1;
        self.total += size;
        Ok(())
    }

    fn roll(&mut self) -> Result<(), ForwardError> {
        self.seal()?;
        let id = self.next_id;
        self.next_id += 1;
        let path = seg_path(&self.dir, id);
        let f = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err("create", &path))?;
        self.writer = Some(f);
        self.segments.push_back(Segment { id, bytes: 0, records: 0, sealed: false, read: 0, read_off: 0, resolved: 0 });
        Ok(())
    }

    fn seal(&mut self) -> Result<(), ForwardError> {
        if let Some(w) = self.writer.take()
            && let Some(seg) = self.segments.back_mut()
        {
            seg.sealed = true;
            w.sync_all().map_err(io_err("fsync", &seg_path(&self.dir, seg.id)))?;
        }
        Ok(())
    }

    /// Makes appended documents durable (before the rows they stand for count as safe).
    pub fn sync(&mut self) -> Result<(), ForwardError> {
        if let (Some(w), Some(seg)) = (self.writer.as_ref(), self.segments.back()) {
            w.sync_data().map_err(io_err("fsync", &seg_path(&self.dir, seg.id)))?;
        }
        Ok(())
    }

    /// Deletes the oldest segment; false when there is none to delete.
    fn drop_oldest(&mut self) -> Result<bool, ForwardError> {
        let Some(seg) = self.segments.pop_front() else { return Ok(false) };
        if !seg.sealed {
            self.writer = None;
        }
        let lost = seg.records - seg.resolved.min(seg.records);
        self.dropped += lost;
        tracing::error!(
            segment = seg.id,
            documents = lost,
            "siem buffer full: oldest segment dropped (buffer.when_full = drop_oldest)"
        );
        self.remove(&seg)?;
        Ok(true)
    }

    fn remove(&mut self, seg: &Segment) -> Result<(), ForwardError> {
        if self.reader.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            self.reader = None;
        }
        self.total -= seg.bytes;
        let path = seg_path(&self.dir, seg.id);
        fs::remove_file(&path).map_err(io_err("remove", &path))
    }

    /// The next document not read out yet, oldest first, with the segment it belongs to.
    pub fn next_unread(&mut self) -> Result<Option<(u64, Vec<u8>)>, ForwardError> {
        let Some(i) = self.segments.iter().position(|s| s.read < s.records) else { return Ok(None) };
        let (id, off) = (self.segments[i].id, self.segments[i].read_off);
        let path = seg_path(&self.dir, id);
        if self.reader.as_ref().is_none_or(|(r, _)| *r != id) {
            // Appended frames may still sit in the writer's file: a read goes through the page cache.
            self.reader = Some((id, File::open(&path).map_err(io_err("open", &path))?));
        }
        let Some((_, f)) = self.reader.as_ref() else { return Ok(None) };
        let mut header = [0u8; 8];
        f.read_exact_at(&mut header, off).map_err(io_err("read", &path))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut data = vec![0u8; len];
        f.read_exact_at(&mut data, off + HEADER).map_err(io_err("read", &path))?;
        let seg = &mut self.segments[i];
        seg.read += 1;
        seg.read_off += HEADER + len as u64;
        // Caught up with the writer: new documents start a new segment, so this one can go once resolved.
        if !seg.sealed && seg.read == seg.records {
            self.seal()?;
        }
        Ok(Some((id, data)))
    }

    /// A document read from segment `id` was delivered (or dead-lettered): the segment is deleted once all
    /// of its documents are.
    pub fn resolve(&mut self, id: u64) -> Result<(), ForwardError> {
        if let Some(s) = self.segments.iter_mut().find(|s| s.id == id) {
            s.resolved += 1;
        }
        while let Some(front) = self.segments.front() {
            if !(front.sealed && front.resolved >= front.records) {
                break;
            }
            if let Some(seg) = self.segments.pop_front() {
                self.remove(&seg)?;
            }
        }
        Ok(())
    }

    /// Documents not yet read out.
    pub fn unread(&self) -> u64 {
        self.segments.iter().map(|s| s.records - s.read).sum()
    }

    /// Documents on disk not yet resolved.
    pub fn pending(&self) -> u64 {
        self.segments.iter().map(|s| s.records - s.resolved.min(s.records)).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.total
    }
}

/// The frame starting at `off` if its length and crc check out.
fn frame_at(data: &[u8], off: usize) -> Option<&[u8]> {
    let header = data.get(off..off + HEADER as usize)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = off + HEADER as usize;
    let rec = data.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(rec) == crc).then_some(rec)
}
