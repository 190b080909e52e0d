//! On-disk form of the IP history: `snapshot` (the whole table) plus
//! `journal` (row upserts since), both sequences of framed records
//! `[len u32 LE][crc32 u32 LE][JSON row]`, the checksum covering length and
//! payload. A crash can leave a torn last record; loading stops at the first
//! frame that is short, too long or fails its checksum, logs it, and (when
//! writing) cuts the journal there, so garbage is never loaded and a bad
//! tail never stops a start. Compaction writes the snapshot to a temp file,
//! fsyncs and renames it, then replaces the journal the same way: a reader
//! that opens the journal before the snapshot always sees a snapshot at
//! least as new as that journal, and replaying an older journal over a newer
//! snapshot is harmless (its rows are the snapshot's own, as upserts).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::Row;

const SNAPSHOT: &str = "snapshot";
const JOURNAL: &str = "journal";
const LOCK: &str = "lock";
/// No row comes near this; a larger length is a corrupt frame.
const MAX_RECORD: usize = 1 << 20;
const HEADER: usize = 8;

/// Why the state dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("IP history dir {path} is used by another running tracelake")]
    Locked { path: PathBuf },
    #[error("IP history: {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PersistError + use<> {
    let path = path.to_path_buf();
    move |source| PersistError::Io { what, path, source }
}

/// The writer's handle on the state dir; holds its lock while alive.
#[derive(Debug)]
pub(super) struct Store {
    dir: PathBuf,
    journal: File,
    journal_bytes: u64,
    dirty: bool,
    _lock: File,
}

impl Store {
    /// Locks `dir`, loads snapshot and journal, cuts a bad journal tail.
    pub(super) fn open(dir: &Path) -> Result<(Store, Vec<Row>), PersistError> {
        fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path);
        let lock = lock.map_err(io_err("cannot open", &lock_path))?;
        // SAFETY: flock on an fd we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(PersistError::Locked { path: dir.to_path_buf() });
        }
        let journal_path = dir.join(JOURNAL);
        let mut rows = read_file(&dir.join(SNAPSHOT), false)?;
        rows.extend(read_file(&journal_path, true)?);
        let journal = OpenOptions::new().create(true).append(true).open(&journal_path);
        let journal = journal.map_err(io_err("cannot open", &journal_path))?;
        let journal_bytes = journal.metadata().map_err(io_err("cannot stat", &journal_path))?.len();
        Ok((Store { dir: dir.to_path_buf(), journal, journal_bytes, dirty: false, _lock: lock }, rows))
    }

    pub(super) fn journal_bytes(&self) -> u64 {
        self.journal_bytes
    }

    /// Appends rows in one write; a failed write is cut back off so later
    /// records never follow a torn one.
    pub(super) fn append(&mut self, rows: &[Row]) -> Result<(), PersistError> {
        let mut buf = Vec::new();
        for r in rows {
            encode(&mut buf, r);
        }
        let path = self.dir.join(JOURNAL);
        if let Err(e) = self.journal.write_all(&buf) {
            let _ = self.journal.set_len(self.journal_bytes);
            return Err(io_err("cannot append to", &path)(e));
        }
        self.journal_bytes += buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    pub(super) fn sync(&mut self) -> Result<(), PersistError> {
        if std::mem::take(&mut self.dirty) {
            self.journal.sync_data().map_err(io_err("cannot sync", &self.dir.join(JOURNAL)))?;
        }
        Ok(())
    }

    /// Replaces snapshot and journal by `rows` and an empty journal.
    pub(super) fn compact(&mut self, rows: &[Row]) -> Result<(), PersistError> {
        let mut buf = Vec::new();
        for r in rows {
            encode(&mut buf, r);
        }
        replace(&self.dir, SNAPSHOT, &buf)?;
        replace(&self.dir, JOURNAL, &[])?;
        let path = self.dir.join(JOURNAL);
        self.journal = OpenOptions::new().append(true).open(&path).map_err(io_err("cannot open", &path))?;
        self.journal_bytes = 0;
        self.dirty = false;
        Ok(())
    }
}

/// Writes `name` in `dir` atomically: temp file, fsync, rename, fsync dir.
fn replace(dir: &Path, name: &str, data: &[u8]) -> Result<(), PersistError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(io_err("cannot write", &tmp))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io_err("cannot rename into", &path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("cannot sync", dir))
}

/// Every row in `dir` without locking or repairing (missing files are empty).
pub(super) fn read_dir(dir: &Path) -> Result<Vec<Row>, PersistError> {
    if !dir.is_dir() {
        return Err(io_err("no state dir at", dir)(io::ErrorKind::NotFound.into()));
    }
    // Journal first: see the module comment.
    let journal = read_bytes(&dir.join(JOURNAL))?;
    let snapshot = read_bytes(&dir.join(SNAPSHOT))?;
    let mut rows = decode(&snapshot, &dir.join(SNAPSHOT)).0;
    rows.extend(decode(&journal, &dir.join(JOURNAL)).0);
    Ok(rows)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, PersistError> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut data).map_err(io_err("cannot read", path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err("cannot open", path)(e)),
    };
    Ok(data)
}

fn read_file(path: &Path, repair: bool) -> Result<Vec<Row>, PersistError> {
    let data = read_bytes(path)?;
    let (rows, good) = decode(&data, path);
    if repair && good < data.len() {
        let f = OpenOptions::new().write(true).open(path).map_err(io_err("cannot open", path))?;
        f.set_len(good as u64).and_then(|()| f.sync_all()).map_err(io_err("cannot truncate", path))?;
    }
    Ok(rows)
}

pub(super) fn encode(buf: &mut Vec<u8>, row: &Row) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    // A Row has no map with non-string keys: serializing it cannot fail.
    let _ = serde_json::to_writer(&mut *buf, row);
    let len = u32::try_from(buf.len() - start - HEADER).unwrap_or(u32::MAX);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(len, &buf[start + HEADER..]);
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The rows of the good prefix of `data` and that prefix's length; what
/// follows it is logged and ignored.
pub(super) fn decode(data: &[u8], path: &Path) -> (Vec<Row>, usize) {
    let (mut rows, mut at) = (Vec::new(), 0);
    let why = loop {
        let rest = &data[at..];
        if rest.is_empty() {
            return (rows, at);
        }
        let Some(header) = rest.get(..HEADER) else { break "torn frame header" };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len as usize > MAX_RECORD {
            break "impossible record length";
        }
        let Some(payload) = rest.get(HEADER..HEADER + len as usize) else { break "torn record" };
        if checksum(len, payload) != crc {
            break "checksum mismatch";
        }
        match serde_json::from_slice::<Row>(payload) {
            Ok(r) => rows.push(r),
            Err(_) => break "unreadable record",
        }
        at += HEADER + len as usize;
    };
    tracing::warn!(
        file = %path.display(),
        offset = at,
        dropped_bytes = data.len() - at,
        reason = why,
        kept_records = rows.len(),
        "IP history: bad tail dropped"
    );
    (rows, at)
}
