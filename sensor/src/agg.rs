//! User-space half of in-kernel aggregation.
//!
//! The kernel counts repeats in one of two tables, chosen by
//! tl_config.generation. Every interval we flip the generation, wait for
//! programs still writing the old table to finish, then drain it: since no
//! program writes a table while it is drained, no increment can be lost and
//! the counts add up exactly. Each drained entry with repeats becomes one
//! summary event, described by the first occurrence the kernel emitted.

use std::collections::HashMap;
use std::time::Duration;

use aya::Ebpf;
use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use tracelake_bpf::abi::{self, AggKey, AggValue};
use tracelake_model::{Aggregate, Body, Event, Kind, OwnedBody, OwnedEvent, Subject, flags};

use crate::SensorError;

/// How long programs that read the old generation may still be running.
/// BPF programs run for microseconds; this is orders of magnitude more.
pub const GRACE: Duration = Duration::from_millis(50);

const TABLES: [&str; 2] = ["tl_agg_a", "tl_agg_b"];

/// Descriptors of first occurrences, by aggregation key.
#[derive(Debug, Default)]
pub struct Aggregator {
    generation: u32,
    descriptors: HashMap<AggKey, (OwnedEvent, u32)>,
}

/// The key the kernel used for an aggregated first occurrence (mirrors the
/// key construction in bpf/src/{file,net,priv}.h).
pub fn key_of(ev: &Event<'_>) -> Option<AggKey> {
    let s = &ev.subject;
    let object = match (ev.kind, ev.body) {
        (Kind::FileOpen, Body::File { dev, ino, open_flags, .. }) => {
            let wr = open_flags & 3 != 0 || open_flags & (0o100 | 0o1000) != 0;
            [u64::from(dev), ino, u64::from(wr)]
        }
        (
            kind @ (Kind::NetConnect | Kind::NetUdpSend | Kind::NetAccept | Kind::NetListen | Kind::NetBind),
            Body::Net { ret, family, protocol, local, remote, unix_path, .. },
        ) => {
            let extra = if family == 1 { fnv(unix_path) } else { 0 };
            let a0 = u64::from_le_bytes(remote.addr[..8].try_into().ok()?) ^ extra;
            let a1 = u64::from_le_bytes(remote.addr[8..].try_into().ok()?);
            // The ephemeral side's port is left out, as in bpf/src/net.h.
            let port = if matches!(kind, Kind::NetConnect | Kind::NetUdpSend) {
                u64::from(remote.port)
            } else {
                u64::from(local.port) << 16
            };
            [a0, a1, port | u64::from(family) << 32 | u64::from(protocol) << 48 | u64::from(ret < 0) << 63]
        }
        (
            Kind::Setuid | Kind::Setgid | Kind::Capset | Kind::Ptrace | Kind::Bpf | Kind::MemfdCreate,
            Body::Syscall { nr, ret, args, .. },
        ) => [u64::from(nr) | u64::from(ret < 0) << 63, args[0], args[1]],
        // Not aggregated in the kernel (or a body that does not fit the kind).
        (
            Kind::Exec
            | Kind::Fork
            | Kind::Exit
            | Kind::CloneThread
            | Kind::FileOpen
            | Kind::FileRename
            | Kind::FileUnlink
            | Kind::FileChmod
            | Kind::FileChown
            | Kind::NetConnect
            | Kind::NetUdpSend
            | Kind::NetAccept
            | Kind::NetListen
            | Kind::NetBind
            | Kind::NetClose
            | Kind::Setuid
            | Kind::Setgid
            | Kind::Capset
            | Kind::Ptrace
            | Kind::Bpf
            | Kind::MemfdCreate
            | Kind::Mount
            | Kind::Umount
            | Kind::Unshare
            | Kind::Setns
            | Kind::ModuleLoad
            | Kind::Chroot
            | Kind::PivotRoot
            | Kind::ProcessSnapshot,
            _,
        ) => return None,
    };
    // Open keys carry no cgroup (bpf/src/file.h: the tgid is enough there).
    let cgroup_id = if ev.kind == Kind::FileOpen { 0 } else { s.cgroup_id };
    Some(AggKey { cgroup_id, tgid: s.tgid, kind: ev.kind.id(), object })
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(108)
        .fold(14_695_981_039_346_656_037u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211))
}

impl Aggregator {
    /// Remembers a first occurrence so its summary can describe the object.
    pub fn remember(&mut self, ev: &Event<'_>) {
        if ev.flags & flags::AGGREGATED == 0 {
            return;
        }
        if let Some(k) = key_of(ev) {
            self.descriptors.insert(k, (OwnedEvent::from_event(ev), self.generation));
        }
    }

    /// Points the kernel at the other table; returns the one to drain after GRACE.
    pub fn flip(&mut self, ebpf: &mut Ebpf, kcfg: &mut abi::Config) -> Result<usize, SensorError> {
        let old = (self.generation & 1) as usize;
        self.generation = self.generation.wrapping_add(1);
        kcfg.generation = self.generation;
        let mut config: Array<&mut MapData, abi::Config> =
            Array::try_from(ebpf.map_mut("tl_config_map").ok_or(SensorError::MissingMap("tl_config_map"))?)
                .map_err(|e| SensorError::map("tl_config_map", e))?;
        config.set(0, *kcfg, 0).map_err(|e| SensorError::map("tl_config_map", e))?;
        Ok(old)
    }

    /// Empties one table (which the kernel no longer writes) and hands a
    /// summary per entry with repeats to `emit`. Returns the repeats folded.
    pub fn drain(
        &mut self,
        ebpf: &mut Ebpf,
        table: usize,
        emit: &mut dyn FnMut(&Event<'_>),
    ) -> Result<u64, SensorError> {
        let name = TABLES[table & 1];
        let mut map: BpfHashMap<&mut MapData, AggKey, AggValue> =
            BpfHashMap::try_from(ebpf.map_mut(name).ok_or(SensorError::MissingMap(name))?)
                .map_err(|e| SensorError::map(name, e))?;
        let keys: Vec<AggKey> = map.keys().filter_map(Result::ok).collect();
        let mut folded = 0;
        for k in keys {
            let Ok(v) = map.get(&k, 0) else { continue };
            map.remove(&k).map_err(|e| SensorError::map(name, e))?;
            // Threads are never emitted one by one: all of them are repeats.
            let repeats = if k.kind == abi::kind::CLONE_THREAD { v.count } else { v.count.saturating_sub(1) };
            if repeats == 0 {
                continue;
            }
            folded += repeats;
            let summary = self.summary(&k, &v, repeats);
            emit(&summary.as_event());
        }
        // Descriptors unused for two generations describe nothing pending.
        let gen_now = self.generation;
        self.descriptors.retain(|_, (_, g)| gen_now.wrapping_sub(*g) <= 2);
        Ok(folded)
    }

    fn summary(&self, k: &AggKey, v: &AggValue, repeats: u64) -> OwnedEvent {
        let mut ev = match self.descriptors.get(k) {
            Some((d, _)) => d.clone(),
            None => bare(k),
        };
        ev.count = repeats;
        ev.flags &= !flags::AGGREGATED;
        ev.subject.ktime_ns = v.last_ns;
        ev.aggregate = Some(Aggregate { first_ns: v.first_ns, last_ns: v.last_ns });
        ev
    }
}

/// A summary whose first occurrence was never seen (thread counts, or a
/// first occurrence lost to a full ring): what the key alone tells.
fn bare(k: &AggKey) -> OwnedEvent {
    let kind = Kind::from_id(k.kind).unwrap_or(Kind::CloneThread);
    let body = match kind {
        Kind::FileOpen => OwnedBody::File {
            ret: 0,
            ino: k.object[1],
            dev: k.object[0] as u32,
            open_flags: if k.object[2] != 0 { 1 } else { 0 },
            mode: 0,
            owner_uid: 0,
            owner_gid: 0,
        },
        Kind::NetConnect | Kind::NetAccept | Kind::NetListen | Kind::NetClose | Kind::NetUdpSend | Kind::NetBind => {
            let mut remote = tracelake_model::Endpoint::default();
            remote.addr[..8].copy_from_slice(&k.object[0].to_le_bytes());
            remote.addr[8..].copy_from_slice(&k.object[1].to_le_bytes());
            remote.port = (k.object[2] & 0xffff) as u16;
            OwnedBody::Net {
                ret: if k.object[2] >> 63 != 0 { -1 } else { 0 },
                family: ((k.object[2] >> 32) & 0xffff) as u16,
                protocol: ((k.object[2] >> 48) & 0x7fff) as u16,
                local: tracelake_model::Endpoint { addr: [0; 16], port: ((k.object[2] >> 16) & 0xffff) as u16 },
                remote,
                bytes_sent: 0,
                bytes_received: 0,
            }
        }
        Kind::Setuid
        | Kind::Setgid
        | Kind::Capset
        | Kind::Ptrace
        | Kind::Mount
        | Kind::Umount
        | Kind::Unshare
        | Kind::Setns
        | Kind::ModuleLoad
        | Kind::Bpf
        | Kind::MemfdCreate
        | Kind::Chroot
        | Kind::PivotRoot => OwnedBody::Syscall {
            nr: (k.object[0] & 0xffff_ffff) as u32,
            ret: if k.object[0] >> 63 != 0 { -1 } else { 0 },
            args: [k.object[1], k.object[2], 0, 0, 0, 0],
        },
        // Only opens and the kinds above are aggregated by the kernel.
        Kind::FileRename | Kind::FileUnlink | Kind::FileChmod | Kind::FileChown => {
            OwnedBody::File { ret: 0, ino: 0, dev: 0, open_flags: 0, mode: 0, owner_uid: 0, owner_gid: 0 }
        }
        Kind::Exec | Kind::Fork | Kind::Exit | Kind::CloneThread | Kind::ProcessSnapshot => OwnedBody::Threads,
    };
    OwnedEvent {
        kind,
        subject: Subject { cgroup_id: k.cgroup_id, tgid: k.tgid, pid: k.tgid, ..Subject::default() },
        flags: 0,
        count: 0,
        aggregate: None,
        body,
        strings: Default::default(),
    }
}
