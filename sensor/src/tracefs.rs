//! tracefs must be mounted for tracepoint attachment; mount it if missing.

use std::path::Path;

use crate::SensorError;

const TRACEFS: &str = "/sys/kernel/tracing";

/// Where tracepoint definitions live once tracefs is mounted.
pub fn events_dir() -> &'static Path {
    Path::new("/sys/kernel/tracing/events")
}

/// Mounts tracefs at /sys/kernel/tracing unless it (or the legacy debugfs
/// location) is already there.
pub fn ensure_mounted() -> Result<(), SensorError> {
    if events_dir().is_dir() || Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: all pointers are valid NUL-terminated strings or null `data`.
    let rc = unsafe { libc::mount(c"nodev".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(SensorError::Tracefs { path: TRACEFS, source: std::io::Error::last_os_error() });
    }
    tracing::info!(path = TRACEFS, "mounted tracefs");
    Ok(())
}

/// True when the kernel defines this tracepoint.
pub fn has_tracepoint(category: &str, name: &str) -> bool {
    events_dir().join(category).join(name).is_dir()
        || Path::new("/sys/kernel/debug/tracing/events").join(category).join(name).is_dir()
}
