//! cgroup v2 id -> cgroup path, cached.
//!
//! The id in every kernel record is the inode number of the cgroup's
//! directory. Three ways lead from it to the path, tried in this order:
//! 1. the path the sensor recorded when the cgroup was created
//!    ([`CgroupPaths`], the `tl_cgroup_paths` map): exact, needs no
//!    capability beyond the BPF ones, and there before the container's first
//!    process runs, even if the cgroup is gone by the time its events are read;
//! 2. `open_by_handle_at` on the cgroup2 mount (the id is also the kernfs
//!    file handle): one syscall, but it needs CAP_DAC_READ_SEARCH, which the
//!    agent's DaemonSet does not grant; the first EPERM turns it off;
//! 3. a walk of the cgroup2 tree matching inode numbers (cgroups that existed
//!    before the sensor started, when the handle is refused), at most once
//!    per [`WALK_EVERY`].
//!
//! Paths are cached (moka: size bound, TTL, one lookup in flight per id); an
//! id that resolves to nothing is cached too, briefly, with the reason, so a
//! storm of events from a vanished cgroup costs one lookup.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::metrics::{self, CacheCounters};
use crate::unresolved::Reason;

/// A full walk of the cgroup tree happens at most this often.
pub const WALK_EVERY: Duration = Duration::from_secs(1);
/// Directories a walk visits at most (a node has a few thousand cgroups).
const WALK_MAX_DIRS: usize = 200_000;

/// cgroup paths recorded elsewhere, by id: the sensor's record of every
/// cgroup created since it started.
pub trait CgroupPaths: Send + Sync + std::fmt::Debug {
    /// The path of cgroup `id` relative to the cgroup2 root, if recorded.
    fn path(&self, id: u64) -> Option<String>;
}

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
    missing: Cache<u64, Reason>,
    counters: Arc<CacheCounters>,
    recorded: Option<Arc<dyn CgroupPaths>>,
    /// open_by_handle_at answered EPERM once: it will every time.
    handles_denied: AtomicBool,
    last_walk: Mutex<Option<Instant>>,
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
            recorded: None,
            handles_denied: AtomicBool::new(false),
            last_walk: Mutex::new(None),
        })
    }

    /// Looks ids up in `recorded` first (the sensor's record of created cgroups).
    pub fn with_recorded(mut self, recorded: Arc<dyn CgroupPaths>) -> CgroupIndex {
        self.recorded = Some(recorded);
        self
    }

    /// Whether open_by_handle_at was refused (the process lacks CAP_DAC_READ_SEARCH).
    pub fn handles_denied(&self) -> bool {
        self.handles_denied.load(Ordering::Relaxed)
    }

    /// Hit, miss and eviction counts of the path cache.
    pub fn counters(&self) -> &Arc<CacheCounters> {
        &self.counters
    }

    /// The cgroup path of `id` relative to the cgroup2 root ("/" for the
    /// root), or None if no such cgroup exists (any more).
    pub fn path(&self, id: u64) -> Option<Arc<str>> {
        self.path_or_reason(id).ok()
    }

    /// The path of `id`, or why there is none.
    pub fn path_or_reason(&self, id: u64) -> Result<Arc<str>, Reason> {
        if let Some(p) = self.found.get(&id) {
            self.counters.hit();
            return Ok(p);
        }
        self.counters.miss();
        if let Some(reason) = self.missing.get(&id) {
            return Err(reason);
        }
        // optionally_get_with runs one resolution per id even when many
        // callers miss at once.
        if let Some(p) = self.found.optionally_get_with(id, || self.resolve(id)) {
            return Ok(p);
        }
        let reason = if self.handles_denied() { Reason::PermissionDenied } else { Reason::CgroupGone };
        self.missing.insert(id, reason);
        Err(reason)
    }

    /// Remembers a path learned elsewhere (the /proc walk, a runtime event),
    /// so it survives the cgroup's removal for the cache's TTL.
    pub fn remember(&self, id: u64, path: &str) {
        self.found.insert(id, Arc::from(path));
    }

    fn resolve(&self, id: u64) -> Option<Arc<str>> {
        if let Some(p) = self.recorded.as_ref().and_then(|r| r.path(id)) {
            return Some(Arc::from(p.as_str()));
        }
        if !self.handles_denied() {
            match self.by_handle(id) {
                Ok(p) => return p,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
                    self.handles_denied.store(true, Ordering::Relaxed);
                    tracing::info!(
                        root = %self.root.display(),
                        "open_by_handle_at refused (no CAP_DAC_READ_SEARCH): cgroup paths come from the sensor's \
                         record of created cgroups and from walking the cgroup tree"
                    );
                }
                // ESTALE: no such cgroup (any more).
                Err(_) => return None,
            }
        }
        self.walk_for(id)
    }

    /// Walks the tree (rate-limited), remembering every cgroup, and answers `id` from it.
    fn walk_for(&self, id: u64) -> Option<Arc<str>> {
        {
            let Ok(mut last) = self.last_walk.lock() else { return None };
            if last.is_some_and(|t| t.elapsed() < WALK_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let mut hit = None;
        let mut stack = vec![self.root.clone()];
        let mut visited = 0usize;
        while let Some(dir) = stack.pop() {
            visited += 1;
            if visited > WALK_MAX_DIRS {
                tracing::warn!(root = %self.root.display(), "cgroup walk stopped after {WALK_MAX_DIRS} directories");
                break;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                // cgroup directories are never symlinks; d_type saves a stat on the files.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                let Some(rel) = path.strip_prefix(&self.root).ok().and_then(|r| r.to_str()) else { continue };
                let rel: Arc<str> = Arc::from(format!("/{rel}").as_str());
                if meta.ino() == id {
                    hit = Some(Arc::clone(&rel));
                } else if !self.found.contains_key(&meta.ino()) {
                    self.found.insert(meta.ino(), rel);
                }
                stack.push(path);
            }
        }
        if hit.is_none() && std::fs::metadata(&self.root).is_ok_and(|m| m.ino() == id) {
            hit = Some(Arc::from("/"));
        }
        hit
    }

    /// open_by_handle_at: Ok(None) when the id names no cgroup (or not one under the root).
    fn by_handle(&self, id: u64) -> std::io::Result<Option<Arc<str>>> {
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
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by the kernel and nothing else owns it.
        let dir = unsafe { File::from_raw_fd(fd as i32) };
        let Ok(full) = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())) else { return Ok(None) };
        let Some(rel) = full.strip_prefix(&self.root).ok().and_then(|r| r.to_str()) else { return Ok(None) };
        let s = format!("/{rel}");
        Ok(Some(Arc::from(s.as_str())))
    }
}

#[cfg(test)]
mod tests;
