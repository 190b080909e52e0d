//! Documents the SIEM rejected for good, one file each with the reason, so an operator can fix the mapping
//! and replay them; the stream goes on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ForwardError;
use super::json::escape_into;

#[derive(Debug)]
pub struct DeadLetters {
    dir: PathBuf,
    target: &'static str,
    seq: u64,
}

impl DeadLetters {
    /// Checks the directory can be made (a permission error shows at start, not at the first reject).
    pub fn open(dir: &Path, target: &'static str) -> Result<DeadLetters, ForwardError> {
        std::fs::create_dir_all(dir).map_err(|source| ForwardError::Io {
            what: "create the dead-letter directory",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(DeadLetters { dir: dir.to_path_buf(), target, seq: 0 })
    }

    /// Writes `<ns>-<seq>.json`: `{"target", "table", "reason", "document"}` (the document as the SIEM got
    /// it, as a string), fsynced.
    pub fn write(&mut self, table: &str, reason: &str, doc: &[u8]) -> Result<PathBuf, ForwardError> {
        let ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        self.seq += 1;
        let name = format!("{ns}-{}-{}.json", std::process::id(), self.seq);
        let path = self.dir.join(&name);
        let mut body = Vec::with_capacity(doc.len() + 256);
        body.extend_from_slice(b"{\"target\":");
        escape_into(&mut body, self.target);
        body.extend_from_slice(b",\"table\":");
        escape_into(&mut body, table);
        body.extend_from_slice(b",\"reason\":");
        escape_into(&mut body, reason);
        body.extend_from_slice(b",\"document\":");
        escape_into(&mut body, &String::from_utf8_lossy(doc));
        body.extend_from_slice(b"}\n");
        let io = |what, source| ForwardError::Io { what, path: path.clone(), source };
        let mut f = std::fs::File::create(&path).map_err(|e| io("create the dead letter", e))?;
        f.write_all(&body).map_err(|e| io("write the dead letter", e))?;
        f.sync_all().map_err(|e| io("fsync the dead letter", e))?;
        Ok(path)
    }
}
