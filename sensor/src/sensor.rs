//! The running sensor: owns the loaded object and drives the read loop.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, MissedTickBehavior};
use tracelake_bpf::abi;
use tracelake_model::{BootClock, flags};

use crate::agg::{self, Aggregator};
use crate::loader::{self, Attached};
use crate::stats::{self, ReaderCounters, SensorStats};
use crate::{EventHandler, SensorConfig, SensorError, decode, procfs};

/// A loaded, attached sensor. Create it inside a tokio runtime.
pub struct Sensor {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    kcfg: abi::Config,
    cfg: SensorConfig,
    agg: Aggregator,
    counters: Arc<ReaderCounters>,
    latest: Arc<Mutex<SensorStats>>,
    attached: Attached,
    cgroups: Option<Arc<RecordedCgroups>>,
}

/// The kernel's record of every cgroup v2 directory created since the sensor
/// started (`tl_cgroup_paths`): id -> path, readable without any capability
/// beyond those that loaded it, and kept after the cgroup is removed.
pub struct RecordedCgroups {
    map: BpfHashMap<MapData, u64, abi::CgroupPath>,
}

impl std::fmt::Debug for RecordedCgroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedCgroups").finish_non_exhaustive()
    }
}

impl RecordedCgroups {
    /// The path of cgroup `id` relative to the cgroup2 root, if recorded
    /// whole (a truncated path would name another cgroup).
    pub fn path(&self, id: u64) -> Option<String> {
        let v = self.map.get(&id, 0).ok()?;
        v.path().map(str::to_owned)
    }
}

impl std::fmt::Debug for Sensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensor")
            .field("attached", &self.attached)
            .field("generation", &self.kcfg.generation)
            .finish_non_exhaustive()
    }
}

/// What a run ends with.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub stats: SensorStats,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// CLOCK_BOOTTIME now, in the kernel's units.
pub fn boottime_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
}

impl Sensor {
    /// Validates cfg, loads and configures the programs, attaches them.
    pub fn start(cfg: &SensorConfig) -> Result<Sensor, SensorError> {
        cfg.validate()?;
        let mut ebpf = loader::load_object(tracelake_bpf::sensor_object(), cfg)?;
        let kcfg = loader::kernel_config(cfg)?;
        loader::configure(&mut ebpf, cfg, &kcfg)?;
        let ring_map = ebpf.take_map("tl_events").ok_or(SensorError::MissingMap("tl_events"))?;
        let ring = RingBuf::try_from(ring_map).map_err(|e| SensorError::map("tl_events", e))?;
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged
        // until the AsyncFd (which owns the RingBuf) is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| SensorError::Io { what: "register the ring buffer with tokio", source: e.into() })?;
        let attached = loader::attach(&mut ebpf, cfg)?;
        tracing::info!(hooks = attached.hooks.len(), missing = ?attached.missing, "sensor attached");
        let cgroups = if loader::attach_cgroup_record(&mut ebpf)? {
            let map = ebpf.take_map("tl_cgroup_paths").ok_or(SensorError::MissingMap("tl_cgroup_paths"))?;
            let map = BpfHashMap::try_from(map).map_err(|e| SensorError::map("tl_cgroup_paths", e))?;
            Some(Arc::new(RecordedCgroups { map }))
        } else {
            None
        };
        let latest = Arc::new(Mutex::new(SensorStats::default()));
        let counters = Arc::<ReaderCounters>::default();
        stats::register_metrics(&ebpf, Arc::clone(&counters))?;
        Ok(Sensor {
            ebpf,
            ring,
            kcfg,
            cfg: cfg.clone(),
            agg: Aggregator::default(),
            counters,
            latest,
            attached,
            cgroups,
        })
    }

    /// The record of created cgroups, when this kernel could attach it.
    pub fn recorded_cgroups(&self) -> Option<Arc<RecordedCgroups>> {
        self.cgroups.clone()
    }

    /// Converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time.
    pub fn boot_clock() -> BootClock {
        BootClock::from_offset(clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME))
    }

    pub fn attached(&self) -> &Attached {
        &self.attached
    }

    /// Current counters, kernel and reader.
    pub fn stats(&self) -> Result<SensorStats, SensorError> {
        stats::read(&self.ebpf, &self.counters)
    }

    /// Reports every running process as a `process_snapshot` event.
    pub fn snapshot(&mut self, handler: &mut impl EventHandler) -> usize {
        let events = procfs::walk(boottime_ns());
        for ev in &events {
            handler.handle(&ev.as_event());
        }
        self.counters.delivered.fetch_add(events.len() as u64, Ordering::Relaxed);
        events.len()
    }

    /// Reads events until `shutdown` completes, then drains the ring buffer
    /// and both aggregation tables so nothing read by the kernel is lost.
    pub async fn run<H: EventHandler>(
        &mut self,
        handler: &mut H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, SensorError> {
        let aggregate = self.cfg.aggregation.enabled;
        let mut flush_tick =
            tokio::time::interval_at(Instant::now() + self.cfg.aggregation.interval, self.cfg.aggregation.interval);
        flush_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let status_every =
            if self.cfg.status_interval.is_zero() { Duration::from_secs(3600) } else { self.cfg.status_interval };
        let mut status_tick = tokio::time::interval_at(Instant::now() + status_every, status_every);
        let mut handler_tick = tokio::time::interval(Duration::from_secs(1));
        handler_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pending: Option<(Instant, usize)> = None;
        tokio::pin!(shutdown);
        loop {
            let drain_deadline = pending.map(|(t, _)| t).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = &mut shutdown => break,
                ready = self.ring.readable_mut() => {
                    let mut guard = ready.map_err(|source| SensorError::Io { what: "poll the ring buffer", source })?;
                    read_ring(guard.get_inner_mut(), &mut self.agg, &self.counters, handler);
                    guard.clear_ready();
                }
                _ = flush_tick.tick(), if aggregate && pending.is_none() => {
                    let table = self.agg.flip(&mut self.ebpf, &mut self.kcfg)?;
                    pending = Some((Instant::now() + agg::GRACE, table));
                }
                () = tokio::time::sleep_until(drain_deadline), if pending.is_some() => {
                    if let Some((_, table)) = pending.take() {
                        self.drain_table(table, handler)?;
                    }
                }
                _ = status_tick.tick() => self.status()?,
                _ = handler_tick.tick() => handler.tick(),
            }
        }
        read_ring(self.ring.get_mut(), &mut self.agg, &self.counters, handler);
        if aggregate {
            if let Some((_, table)) = pending.take() {
                tokio::time::sleep(agg::GRACE).await;
                self.drain_table(table, handler)?;
            }
            // Flip twice so both tables end up drained.
            for _ in 0..2 {
                let table = self.agg.flip(&mut self.ebpf, &mut self.kcfg)?;
                tokio::time::sleep(agg::GRACE).await;
                self.drain_table(table, handler)?;
            }
        }
        read_ring(self.ring.get_mut(), &mut self.agg, &self.counters, handler);
        handler.flush();
        let stats = self.stats()?;
        if let Ok(mut l) = self.latest.lock() {
            *l = stats.clone();
        }
        Ok(RunSummary { stats })
    }

    /// Reads what is already in the ring (so first occurrences are known),
    /// then turns one aggregation table into summary events.
    fn drain_table<H: EventHandler>(&mut self, table: usize, handler: &mut H) -> Result<(), SensorError> {
        read_ring(self.ring.get_mut(), &mut self.agg, &self.counters, handler);
        let counters = &self.counters;
        self.agg.drain(&mut self.ebpf, table, &mut |ev| {
            handler.handle(ev);
            counters.summaries.fetch_add(1, Ordering::Relaxed);
            counters.delivered.fetch_add(1, Ordering::Relaxed);
        })?;
        Ok(())
    }

    fn status(&mut self) -> Result<(), SensorError> {
        let s = self.stats()?;
        if !self.cfg.status_interval.is_zero() {
            tracing::info!(
                target: "tracelake::status",
                emitted = s.emitted_total,
                dropped = s.dropped_total,
                aggregated = s.aggregated_total,
                filtered = s.filtered,
                agg_full = s.agg_full,
                decode_errors = s.decode_errors,
                delivered = s.delivered,
                "sensor status"
            );
            if s.dropped_total > 0 {
                tracing::warn!(target: "tracelake::status", dropped = ?s.dropped, "ring buffer full: events lost (raise sensor.ring_buffer_bytes or narrow the scope)");
            }
        }
        if let Ok(mut l) = self.latest.lock() {
            *l = s;
        }
        Ok(())
    }
}

/// Decodes every record now in the ring and hands it to the handler.
fn read_ring<H: EventHandler>(
    ring: &mut RingBuf<MapData>,
    agg: &mut Aggregator,
    counters: &ReaderCounters,
    handler: &mut H,
) {
    let mut delivered = 0u64;
    while let Some(item) = ring.next() {
        match decode::decode(&item) {
            Ok(ev) => {
                if ev.flags & flags::AGGREGATED != 0 {
                    agg.remember(&ev);
                }
                handler.handle(&ev);
                delivered += 1;
            }
            Err(e) => {
                let n = counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                if n < 10 {
                    tracing::warn!(error = %e, "undecodable record");
                }
            }
        }
    }
    counters.delivered.fetch_add(delivered, Ordering::Relaxed);
}
