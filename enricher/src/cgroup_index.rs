//! cgroup v2 id -> cgroup path, cached.
//!
//! The id in every kernel record is the inode number of the cgroup's
//! directory, which is also its kernfs file handle: `open_by_handle_at` on
//! the cgroup2 mount turns it into the directory in one syscall, without
//! walking the tree. Paths are cached (moka: size bound, TTL, one lookup in
//! flight per id); an id that resolves to nothing is cached too, briefly,
//! so a storm of events from a vanished cgroup costs one lookup.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use crate::metrics::{self, CacheCounters};

/// kernfs's file handle type (include/linux/exportfs.h: FILEID_KERNFS).
const FILEID_KERNFS: i32 = 0xfe;

#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: u64,
}

/// Why the index cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the cgroup2 mount at {path}")]
pub struct IndexError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Resolves and caches cgroup ids.
pub struct CgroupIndex {
    root: PathBuf,
    root_dir: File,
    found: Cache<u64, Arc<str>>,
    missing: Cache<u64, ()>,
    counters: Arc<CacheCounters>,
}

impl std::fmt::Debug for CgroupIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgroupIndex").field("root", &self.root).field("cached", &self.found.entry_count()).finish()
    }
}

impl CgroupIndex {
    /// `root` is the cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified
    /// on hybrid hosts). Paths are kept for `ttl` after their last use, so
    /// events of exited containers still resolve for a while.
    pub fn open(root: &Path, capacity: u64, ttl: Duration) -> Result<CgroupIndex, IndexError> {
        let root_dir = File::open(root).map_err(|source| IndexError { path: root.to_path_buf(), source })?;
        let counters = Arc::<CacheCounters>::default();
        Ok(CgroupIndex {
            root: root.to_path_buf(),
            root_dir,
            found: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(ttl)
                .eviction_listener(metrics::listener(&counters))
                .build(),
            missing: Cache::builder().max_capacity(capacity).time_to_live(Duration::from_secs(1)).build(),
            counters,
        })
    }

    /// Hit, miss and eviction counts of the path cache.
    pub fn counters(&self) -> &Arc<CacheCounters> {
        &self.counters
    }

    /// The cgroup path of `id` relative to the cgroup2 root ("/" for the
    /// root), or None if no such cgroup exists (any more).
    pub fn path(&self, id: u64) -> Option<Arc<str>> {
        if let Some(p) = self.found.get(&id) {
            self.counters.hit();
            return Some(p);
        }
        self.counters.miss();
        if self.missing.contains_key(&id) {
            return None;
        }
        // optionally_get_with runs one resolution per id even when many
        // callers miss at once.
        let got = self.found.optionally_get_with(id, || self.resolve(id));
        if got.is_none() {
            self.missing.insert(id, ());
        }
        got
    }

    /// Remembers a path learned elsewhere (the /proc walk, a runtime event),
    /// so it survives the cgroup's removal for the cache's TTL.
    pub fn remember(&self, id: u64, path: &str) {
        self.found.insert(id, Arc::from(path));
    }

    fn resolve(&self, id: u64) -> Option<Arc<str>> {
        let handle = KernfsHandle { handle_bytes: 8, handle_type: FILEID_KERNFS, id };
        // SAFETY: the handle is a valid struct file_handle with 8 bytes of
        // payload; the returned fd, if any, is owned by the File below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                self.root_dir.as_raw_fd(),
                &handle as *const KernfsHandle,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd was just returned by the kernel and nothing else owns it.
        let dir = unsafe { File::from_raw_fd(fd as i32) };
        let full = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
        let rel = full.strip_prefix(&self.root).ok()?;
        let s = format!("/{}", rel.to_str()?);
        Some(Arc::from(s.as_str()))
    }
}

#[cfg(test)]
mod tests;
