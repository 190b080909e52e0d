//! Identity that could not be resolved, counted per reason and warned about.
//!
//! An event without its pod is the product failing at what it sells, so it
//! is never silent: every such event is counted under the reason that
//! stopped it (`tracelake.enricher.unresolved{reason=...}`), and each reason
//! logs a warning that names the thing at fault (a socket, a cgroup, a
//! capability) at most once per [`WARN_EVERY`], with the count so far.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why an identity is missing or incomplete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The kernel refused to turn a cgroup id into its path (open_by_handle_at
    /// without CAP_DAC_READ_SEARCH) and the sensor had not recorded it.
    PermissionDenied,
    /// The cgroup was removed before its path was learned.
    CgroupGone,
    /// The container runtime's socket is missing or refuses connections.
    RuntimeUnreachable,
    /// The container runtime did not answer within `enricher.runtime_timeout`.
    RuntimeTimeout,
    /// The runtime answered that it does not know the container.
    ContainerUnknown,
    /// The Kubernetes API has not told of the pod (yet).
    PodUnknown,
    /// A new container's events were held for `enricher.hold_new_containers`
    /// and its metadata still had not arrived.
    HoldExpired,
    /// The hold queue was full: events went on without waiting.
    HoldFull,
}

impl Reason {
    /// Every reason, in the order of [`Unresolved::read`].
    pub const ALL: [Reason; 8] = [
        Reason::PermissionDenied,
        Reason::CgroupGone,
        Reason::RuntimeUnreachable,
        Reason::RuntimeTimeout,
        Reason::ContainerUnknown,
        Reason::PodUnknown,
        Reason::HoldExpired,
        Reason::HoldFull,
    ];

    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PermissionDenied => "permission_denied",
            Reason::CgroupGone => "cgroup_gone",
            Reason::RuntimeUnreachable => "runtime_unreachable",
            Reason::RuntimeTimeout => "runtime_timeout",
            Reason::ContainerUnknown => "container_unknown",
            Reason::PodUnknown => "pod_unknown",
            Reason::HoldExpired => "hold_expired",
            Reason::HoldFull => "hold_full",
        }
    }

    /// What an operator reads in the warning: the cause and what fixes it.
    pub fn hint(self) -> &'static str {
        match self {
            Reason::PermissionDenied => {
                "cgroup path unknown: the sensor did not record the cgroup's creation and open_by_handle_at needs \
                 CAP_DAC_READ_SEARCH (docs/deploy.md)"
            }
            Reason::CgroupGone => "cgroup removed before its path was learned",
            Reason::RuntimeUnreachable => {
                "container runtime socket unreachable (enricher.containerd_socket; mounted into the agent?)"
            }
            Reason::RuntimeTimeout => "container runtime did not answer within enricher.runtime_timeout",
            Reason::ContainerUnknown => {
                "the container runtime does not know the container (not a runtime's container?)"
            }
            Reason::PodUnknown => "the Kubernetes API has not told of the pod (yet)",
            Reason::HoldExpired => {
                "a new container's metadata did not arrive within enricher.hold_new_containers; its events went on without it"
            }
            Reason::HoldFull => "the hold queue was full (enricher.hold_max_events); events went on without identity",
        }
    }

    fn index(self) -> usize {
        match self {
            Reason::PermissionDenied => 0,
            Reason::CgroupGone => 1,
            Reason::RuntimeUnreachable => 2,
            Reason::RuntimeTimeout => 3,
            Reason::ContainerUnknown => 4,
            Reason::PodUnknown => 5,
            Reason::HoldExpired => 6,
            Reason::HoldFull => 7,
        }
    }
}

/// A reason's warning is repeated at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Counts per reason, shared by every part of the enricher.
#[derive(Debug)]
pub struct Unresolved {
    counts: [AtomicU64; 8],
    /// Milliseconds since `start` of each reason's last warning, plus one (0: never warned).
    warned: [AtomicU64; 8],
    start: Instant,
}

impl Default for Unresolved {
    fn default() -> Self {
        Unresolved { counts: Default::default(), warned: Default::default(), start: Instant::now() }
    }
}

impl Unresolved {
    /// A fresh set of counters.
    pub fn new() -> Arc<Unresolved> {
        Arc::new(Unresolved::default())
    }

    /// Counts `n` events (or lookups) that lacked identity for `reason`, and
    /// warns (rate-limited) with `what`: the thing at fault and what to do.
    pub fn count(&self, reason: Reason, n: u64, what: &dyn Display) {
        let total = self.counts[reason.index()].fetch_add(n, Ordering::Relaxed) + n;
        self.warn(reason, total, what);
    }

    /// Warns about `reason` without counting (a lookup failed; the events it
    /// leaves without identity are counted where they are written).
    pub fn warn(&self, reason: Reason, total: u64, what: &dyn Display) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        let last = &self.warned[reason.index()];
        let prev = last.load(Ordering::Relaxed);
        let due = prev == 0 || now.saturating_sub(prev) >= WARN_EVERY.as_millis() as u64;
        if due && last.compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(reason = reason.as_str(), events_so_far = total, "identity incomplete: {what}");
        }
    }

    /// The count of one reason.
    pub fn get(&self, reason: Reason) -> u64 {
        self.counts[reason.index()].load(Ordering::Relaxed)
    }

    /// Every reason with its count.
    pub fn read(&self) -> [(Reason, u64); 8] {
        Reason::ALL.map(|r| (r, self.get(r)))
    }

    /// Exports the counts as `tracelake.enricher.unresolved{reason}`.
    pub fn register(self: &Arc<Self>) {
        let meter = tracelake_telemetry::meter("enricher");
        let me = Arc::clone(self);
        tracelake_telemetry::observe_counters(
            &meter,
            "tracelake.enricher.unresolved",
            "Events written without full identity (container, pod), by the reason it could not be resolved",
            move |report| {
                for (r, n) in me.read() {
                    report(n, &[tracelake_telemetry::KeyValue::new("reason", r.as_str())]);
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_reason_apart() {
        let u = Unresolved::new();
        u.count(Reason::PermissionDenied, 3, &"cgroup 7");
        u.count(Reason::RuntimeTimeout, 1, &"socket");
        u.count(Reason::PermissionDenied, 2, &"cgroup 8");
        assert_eq!(u.get(Reason::PermissionDenied), 5);
        assert_eq!(u.get(Reason::RuntimeTimeout), 1);
        assert_eq!(u.get(Reason::CgroupGone), 0);
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names.len(), dedup.len());
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
