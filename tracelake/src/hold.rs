//! A new container's first events wait, briefly, for its identity.
//!
//! The runtime's answer for a new container (pod, namespace, workload) is
//! usually cached before its first process runs (the runtime announces the
//! container at creation), but not always: a lookup may still be in flight
//! when the entrypoint's exec is read. Writing that exec without its pod
//! would lose the one event that matters most for a 10 ms Job. So the
//! events of a container whose answer is pending are kept here, in arrival
//! order, until the answer is there or `enricher.hold_new_containers` has
//! passed, then handed on with the identity resolved again. Only such
//! containers' events are copied; every other event passes untouched.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracelake_enricher::{Enricher, Reason, Resolved};
use tracelake_model::{Event, OwnedEvent};

/// How often, at most, held queues are checked while events arrive.
const CHECK_EVERY: Duration = Duration::from_millis(5);

#[derive(Debug)]
struct Queue {
    since: Instant,
    events: VecDeque<(OwnedEvent, Resolved)>,
}

/// Events of containers whose identity is pending, per cgroup.
#[derive(Debug)]
pub struct Hold {
    queues: foldhash::HashMap<u64, Queue>,
    held: usize,
    max_wait: Duration,
    max_events: usize,
    next_check: Instant,
    /// Events that waited here, and of them those released without an answer.
    pub stats: HoldStats,
}

/// What the hold did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HoldStats {
    pub held: u64,
    pub expired: u64,
    pub full: u64,
}

/// What to do with an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Hand it on now.
    Pass,
    /// Kept: it comes back from [`Hold::release`].
    Held,
}

impl Hold {
    pub fn new(max_wait: Duration, max_events: usize) -> Hold {
        Hold {
            queues: foldhash::HashMap::default(),
            held: 0,
            max_wait,
            max_events,
            next_check: Instant::now(),
            stats: HoldStats::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Keeps `ev` if its container's answer is pending, or if earlier events of
    /// its cgroup are held (their order is kept).
    pub fn admit(&mut self, ev: &Event<'_>, resolved: &mut Resolved) -> Admit {
        let cgroup = ev.subject.cgroup_id;
        let queued = !self.is_empty() && self.queues.contains_key(&cgroup);
        if !queued && (!resolved.pending || self.max_wait.is_zero()) {
            return Admit::Pass;
        }
        if self.held >= self.max_events {
            self.stats.full += 1;
            if resolved.pending {
                resolved.missing = Some(Reason::HoldFull);
            }
            // Earlier events of this cgroup are still held: this one may overtake them, which is
            // better than losing it; the counter says it happened.
            return Admit::Pass;
        }
        let now = Instant::now();
        let q = self.queues.entry(cgroup).or_insert_with(|| Queue { since: now, events: VecDeque::new() });
        q.events.push_back((OwnedEvent::from_event(ev), std::mem::take(resolved)));
        self.held += 1;
        self.stats.held += 1;
        Admit::Held
    }

    /// Whether a check is due (cheap enough to ask on every event).
    pub fn due(&mut self) -> bool {
        if self.is_empty() {
            return false;
        }
        let now = Instant::now();
        if now < self.next_check {
            return false;
        }
        self.next_check = now + CHECK_EVERY;
        true
    }

    /// Takes out, in order, the events of every cgroup whose identity is no
    /// longer pending, or that waited `max_wait` (or all, with `all`), with
    /// their identity resolved again.
    pub fn release(&mut self, enricher: &mut Enricher, all: bool) -> Vec<(OwnedEvent, Resolved)> {
        let mut out = Vec::new();
        if self.is_empty() {
            return out;
        }
        let now = Instant::now();
        let mut done = Vec::new();
        for (&cgroup, q) in &mut self.queues {
            let Some((first, held)) = q.events.front_mut() else {
                done.push(cgroup);
                continue;
            };
            enricher.refresh(&first.as_event(), held);
            let expired = now.duration_since(q.since) >= self.max_wait;
            if held.pending && !expired && !all {
                continue;
            }
            done.push(cgroup);
        }
        for cgroup in done {
            let Some(q) = self.queues.remove(&cgroup) else { continue };
            self.held -= q.events.len();
            for (ev, mut r) in q.events {
                enricher.refresh(&ev.as_event(), &mut r);
                if r.pending {
                    r.pending = false;
                    r.missing = Some(Reason::HoldExpired);
                    self.stats.expired += 1;
                }
                out.push((ev, r));
            }
        }
        out
    }
}
