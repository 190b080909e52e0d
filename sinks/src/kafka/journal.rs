//! The lake's record of its commits: for each offset committed, the fingerprint of the message before it
//! (`resume`). Kept in the lake (`_kafka/commits/<group>/`, one file per process), not in the commit's
//! metadata: brokers that speak the protocol do not all keep that metadata (tansu returns it empty), and the
//! `lake` processes of a group share the lake already (they read each other's files for the dedupe).
//!
//! A line is `<unix ns> <topic> <partition> <offset> <fingerprint hex>`; topic names cannot hold spaces. A line
//! is synced before its commit is sent, so a commit never names an offset the journal lacks, unless the journal
//! was lost; a torn last line (a crash mid-write) is skipped.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A process's file is rewritten with its latest line per partition past this size.
const ROTATE_BYTES: u64 = 1 << 20;

/// Files no process wrote for this long are removed at start: a partition idle for longer resumes unchecked.
const PRUNE_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// (topic, partition, committed offset).
pub(crate) type Commit = (String, i32, i64);

/// The journal's folder for a consumer group, under the lake's root.
pub(crate) fn dir(root: &Path, group: &str) -> PathBuf {
    root.join("_kafka").join("commits").join(escape(group))
}

/// Keeps `[A-Za-z0-9_-]` and escapes the rest (dots too, so no name is `.` or `..`) as `%XX`.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// This process's file of the journal.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    bytes: u64,
    /// The latest line per (topic, partition): what a rotation keeps.
    latest: HashMap<(String, i32), String>,
}

impl Journal {
    /// Creates this process's file, after removing files nobody wrote for `PRUNE_AGE`.
    pub(crate) fn open(dir: &Path) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let old = entry.metadata()?.modified()?.elapsed().is_ok_and(|age| age > PRUNE_AGE);
            if old {
                fs::remove_file(entry.path())?;
            }
        }
        let (path, file) = create(dir)?;
        Ok(Journal { dir: dir.to_path_buf(), path, file, bytes: 0, latest: HashMap::new() })
    }

    /// Records the commits of `topic`'s partitions, `(partition, offset, fingerprint)`, and syncs them.
    pub(crate) fn record(&mut self, topic: &str, commits: &[(i32, i64, u64)]) -> io::Result<()> {
        let ns = now_ns();
        let mut text = String::new();
        for &(partition, offset, fp) in commits {
            let line = format!("{ns} {topic} {partition} {offset} {fp:016x}\n");
            text.push_str(&line);
            self.latest.insert((topic.to_owned(), partition), line);
        }
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.bytes += text.len() as u64;
        if self.bytes > ROTATE_BYTES {
            self.rotate()?;
        }
        Ok(())
    }

    /// A new file with the latest line per partition; then the old one goes.
    fn rotate(&mut self) -> io::Result<()> {
        let (path, mut file) = create(&self.dir)?;
        let text: String = self.latest.values().map(String::as_str).collect();
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        File::open(&self.dir)?.sync_all()?;
        let old = std::mem::replace(&mut self.path, path);
        self.file = file;
        self.bytes = text.len() as u64;
        fs::remove_file(old)
    }
}

fn create(dir: &Path) -> io::Result<(PathBuf, File)> {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let path = dir.join(format!("{}-{}-{}.log", escape(host.trim()), std::process::id(), now_ns()));
    let file = OpenOptions::new().append(true).create_new(true).open(&path)?;
    File::open(dir)?.sync_all()?;
    Ok((path, file))
}

/// The fingerprints recorded for `wanted`, from every process's file; the latest line wins (an offset can
/// be committed in a log, then again in the log that replaced it).
pub(crate) fn lookup(dir: &Path, wanted: &HashSet<Commit>) -> io::Result<HashMap<Commit, u64>> {
    let mut found: HashMap<Commit, (u128, u64)> = HashMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "log") {
            continue;
        }
        let text = match fs::read(&path) {
            Ok(t) => t,
            // Rotated away since the listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in String::from_utf8_lossy(&text).lines() {
            let Some((ns, commit, fp)) = parse(line) else { continue };
            if wanted.contains(&commit) && found.get(&commit).is_none_or(|(t, _)| *t <= ns) {
                found.insert(commit, (ns, fp));
            }
        }
    }
    Ok(found.into_iter().map(|(k, (_, fp))| (k, fp)).collect())
}

fn parse(line: &str) -> Option<(u128, Commit, u64)> {
    let mut f = line.split(' ');
    let ns = f.next()?.parse().ok()?;
    let topic = f.next()?.to_owned();
    let partition = f.next()?.parse().ok()?;
    let offset = f.next()?.parse().ok()?;
    let fp = f.next().filter(|h| h.len() == 16).and_then(|h| u64::from_str_radix(h, 16).ok())?;
    if f.next().is_some() {
        return None;
    }
    Some((ns, (topic, partition, offset), fp))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    fn want(c: &[(&str, i32, i64)]) -> HashSet<Commit> {
        c.iter().map(|(t, p, o)| ((*t).to_owned(), *p, *o)).collect()
    }

    #[test]
    fn the_latest_line_wins_across_processes_and_torn_lines_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir(root.path(), "lake/../x y");
        assert!(dir.starts_with(root.path().join("_kafka/commits")));
        assert_eq!(dir.file_name().unwrap(), "lake%2F%2E%2E%2Fx%20y");
        let mut a = Journal::open(&dir).unwrap();
        a.record("t", &[(0, 10, 0xaa), (1, 5, 0xbb)]).unwrap();
        let mut b = Journal::open(&dir).unwrap();
        b.record("t", &[(0, 10, 0xcc)]).unwrap();
        a.record("u", &[(0, 10, u64::MAX)]).unwrap();
        // A crash mid-line, and lines of another format.
        std::fs::write(dir.join("torn.log"), "123 t 1 5 00000000000000\n9 t 1 5 zz\nnot a line\n").unwrap();
        let got = lookup(&dir, &want(&[("t", 0, 10), ("t", 1, 5), ("u", 0, 10), ("t", 2, 1)])).unwrap();
        assert_eq!(got.get(&("t".into(), 0, 10)), Some(&0xcc));
        assert_eq!(got.get(&("t".into(), 1, 5)), Some(&0xbb));
        assert_eq!(got.get(&("u".into(), 0, 10)), Some(&u64::MAX));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn rotation_keeps_the_latest_line_per_partition() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir(root.path(), "g");
        let mut j = Journal::open(&dir).unwrap();
        let first = j.path.clone();
        let rounds = 600;
        for offset in 1..=rounds {
            let commits: Vec<_> = (0..64).map(|p| (p, offset, (offset * 100 + i64::from(p)) as u64)).collect();
            j.record("topic", &commits).unwrap();
        }
        assert_ne!(j.path, first, "rotated");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the old file is gone");
        assert!(j.bytes < ROTATE_BYTES);
        let got = lookup(&dir, &want(&[("topic", 0, rounds), ("topic", 63, rounds), ("topic", 0, 1)])).unwrap();
        assert_eq!(got.get(&("topic".into(), 0, rounds)), Some(&(rounds as u64 * 100)));
        assert_eq!(got.get(&("topic".into(), 63, rounds)), Some(&(rounds as u64 * 100 + 63)));
        assert_eq!(got.get(&("topic".into(), 0, 1)), None, "rotated away");
    }

    #[test]
    fn no_journal_yet_is_no_fingerprint() {
        let root = tempfile::tempdir().unwrap();
        assert!(lookup(&dir(root.path(), "g"), &want(&[("t", 0, 1)])).unwrap().is_empty());
    }
}
