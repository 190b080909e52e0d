//! The agent's message format for sensor events (docs/kafka.md, "Records"): the events of one table and
//! one workload as the sensor and enricher produced them, with each distinct container identity and
//! process lineage written once per message. The lake service turns them into rows with the same
//! `BatchBuilder` `tracelake run` uses, so the node spends its CPU on the sensor, not on the ~85 Arrow
//! columns of every row (BENCHMARKS.md, "Kafka transport").
//!
//! Little endian throughout. A message is
//! `"TLR2" | node_salt u64 | clock offset i128 | containers | processes | events`, each section a u32
//! count and its entries (`records-1` messages start with "TLR1" and have no launch part). Byte strings are a u32 length and the bytes; an absent one has length
//! `u32::MAX`.

use tracelake_model::json::{Ancestor, Identity, JsonContext, MAX_ANCESTORS};
use tracelake_model::{Aggregate, Body, BootClock, Endpoint, Event, Fd, FdType, Kind, Launch, Session, Subject};

use arrow::array::RecordBatch;

use crate::hash::{FingerprintIndex, address_fingerprint, mix};
use crate::parquet::{BatchBuilder, BatchKeys, Table, error_chain};

const MAGIC: &[u8; 4] = b"TLR2";
/// The magic of `records-1` messages (no terminal, session or standard fds), still read.
const MAGIC_1: &[u8; 4] = b"TLR1";
/// The `tracelake-schema-version` header of a records message: the lake builds the rows itself, so what
/// must match is this format, not an Arrow schema. `records-2` added the exec's and snapshot's terminal,
/// session and standard fds (an optional part after their strings); the lake still reads `records-1`.
pub const VERSION: &str = "records-2";
/// The versions `Records::parse` reads.
pub const READS: [&str; 2] = ["records-1", VERSION];
const ABSENT: u32 = u32::MAX;

/// Container identity strings, in this order.
const ID_FIELDS: usize = 20;

fn id_fields<'a>(id: &Identity<'a>) -> ContainerFields<'a> {
    [
        id.cgroup,
        id.container_id,
        id.container_runtime,
        id.pod_uid,
        id.containerd_namespace,
        id.pod,
        id.namespace,
        id.container_name,
        id.image,
        id.pod_ip,
        id.peer_pod,
        id.peer_namespace,
        id.peer_workload_kind,
        id.peer_workload,
        id.peer_container_id,
        id.peer_service,
        id.workload_kind,
        id.workload,
        id.workload_source,
        id.image_digest,
    ]
    .map(|s| s.map(str::as_bytes))
}

fn set_id_fields<'a>(id: &mut Identity<'a>, v: [Option<&'a str>; ID_FIELDS]) {
    let [c, cid, rt, puid, cns, pod, ns, cname, img, ip, ppod, pns, pwk, pw, pcid, psvc, wk, w, ws, dig] = v;
    (id.cgroup, id.container_id, id.container_runtime, id.pod_uid, id.containerd_namespace) = (c, cid, rt, puid, cns);
    (id.pod, id.namespace, id.container_name, id.image, id.pod_ip) = (pod, ns, cname, img, ip);
    (id.peer_pod, id.peer_namespace, id.peer_workload_kind, id.peer_workload) = (ppod, pns, pwk, pw);
    (id.peer_container_id, id.peer_service) = (pcid, psvc);
    (id.workload_kind, id.workload, id.workload_source, id.image_digest) = (wk, w, ws, dig);
}

/// Why a records message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("records: message ends inside a field")]
    Truncated,
    #[error("records: not a records message (magic {0:?})")]
    Magic([u8; 4]),
    #[error("records: unknown event kind id {0}")]
    Kind(u32),
    #[error("records: unknown body tag {0}")]
    Body(u8),
    #[error("records: unknown standard fd type {0}")]
    FdType(u8),
    #[error("records: {0} entry {1} out of range")]
    Reference(&'static str, u32),
    #[error("records: identity string is not UTF-8")]
    Utf8,
    #[error("records: {0} bytes after the last event")]
    Trailing(usize),
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        // A value of 4 GiB cannot come from the sensor (strings are bounded in the kernel).
        Some(v) => {
            put_u32(out, v.len().min(ABSENT as usize - 1) as u32);
            out.extend_from_slice(&v[..v.len().min(ABSENT as usize - 1)]);
        }
        None => put_u32(out, ABSENT),
    }
}

/// Entries written once per message, found again by fingerprint.
#[derive(Debug, Default)]
struct Section {
    entries: Encoded,
    index: FingerprintIndex,
}

#[derive(Debug, Default)]
struct Encoded {
    bytes: Vec<u8>,
    /// Start of each entry in `bytes`.
    starts: Vec<u32>,
}

impl Encoded {
    fn entry(&self, e: u32) -> &[u8] {
        let start = self.starts[e as usize] as usize;
        let end = self.starts.get(e as usize + 1).map_or(self.bytes.len(), |&s| s as usize);
        &self.bytes[start..end]
    }
}

impl Section {
    /// The entry for `fp` if it holds what `encode` would write, else a new one.
    fn find_or_add(&mut self, fp: u64, same: impl Fn(&[u8]) -> bool, encode: impl FnOnce(&mut Vec<u8>)) -> u32 {
        self.index.find_or_add(
            fp,
            &mut self.entries,
            |s, e| same(s.entry(e)),
            |s| {
                s.starts.push(s.bytes.len() as u32);
                encode(&mut s.bytes);
                s.starts.len() as u32 - 1
            },
        )
    }

    fn clear(&mut self) {
        self.entries.bytes.clear();
        self.entries.starts.clear();
        self.index.clear();
    }
}

/// The process part of an identity: its executable and lineage.
fn process_parts<'a>(id: &Identity<'a>) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
    let ancestors = id.ancestors;
    std::iter::once(id.process_exe)
        .chain(ancestors.into_iter().map_while(|a| a).flat_map(|a| [Some(a.exe), Some(a.args)]))
}

/// Events of one table and one workload gathered into a message.
#[derive(Debug, Default)]
pub struct RecordWriter {
    events: Vec<u8>,
    rows: u32,
    containers: Section,
    processes: Section,
}

impl RecordWriter {
    pub fn rows(&self) -> usize {
        self.rows as usize
    }

    /// Bytes the message will take.
    pub fn bytes(&self) -> usize {
        40 + self.events.len() + self.containers.entries.bytes.len() + self.processes.entries.bytes.len()
    }

    /// Appends one event; the identity's strings are written once per message.
    pub fn append(&mut self, ev: &Event<'_>, id: &Identity<'_>) {
        let fields = id_fields(id);
        let fp = address_fingerprint(fields.iter().copied(), 0);
        let container = self.containers.find_or_add(
            fp,
            |stored| read_container(stored).is_ok_and(|(v, _)| v == fields),
            |out| fields.iter().for_each(|f| put_bytes(out, *f)),
        );
        let fp = address_fingerprint(process_parts(id), 1) ^ ancestor_pids_hash(id);
        let process = self.processes.find_or_add(
            fp,
            |stored| read_process(stored).is_ok_and(|(p, _)| p == (id.process_exe, id.ancestors)),
            |out| write_process(out, id),
        );
        let out = &mut self.events;
        put_u32(out, ev.kind.id());
        put_u32(out, ev.flags);
        put_u64(out, ev.count);
        match ev.aggregate {
            Some(a) => {
                out.push(1);
                put_u64(out, a.first_ns);
                put_u64(out, a.last_ns);
            }
            None => out.push(0),
        }
        let s = &ev.subject;
        for v in [s.ktime_ns, s.cgroup_id, s.proc_start_ns] {
            put_u64(out, v);
        }
        for v in [s.pid, s.tgid, s.ppid, s.uid, s.gid, s.euid, s.egid, s.pidns, s.mntns] {
            put_u32(out, v);
        }
        out.extend_from_slice(&s.comm);
        put_u32(out, container);
        put_u32(out, process);
        out.push(u8::from(id.partial));
        write_body(out, &ev.body);
        self.rows += 1;
    }

    /// The message of what was appended; starts over empty, keeping the buffers.
    pub fn finish(&mut self, ctx: &JsonContext<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes());
        out.extend_from_slice(MAGIC);
        put_u64(&mut out, ctx.node_salt);
        out.extend_from_slice(&ctx.clock.offset_ns().to_le_bytes());
        for section in [&self.containers.entries, &self.processes.entries] {
            put_u32(&mut out, section.starts.len() as u32);
            out.extend_from_slice(&section.bytes);
        }
        put_u32(&mut out, self.rows);
        out.extend_from_slice(&self.events);
        self.events.clear();
        self.rows = 0;
        self.containers.clear();
        self.processes.clear();
        out
    }
}

fn ancestor_pids_hash(id: &Identity<'_>) -> u64 {
    id.ancestors.iter().map_while(Option::as_ref).fold(0u64, |h, a| mix(h, u64::from(a.pid)))
}

fn write_process(out: &mut Vec<u8>, id: &Identity<'_>) {
    put_bytes(out, id.process_exe);
    let n = id.ancestors.iter().map_while(Option::as_ref).count();
    out.push(n as u8);
    for a in id.ancestors.iter().map_while(Option::as_ref) {
        put_u32(out, a.pid);
        put_bytes(out, Some(a.exe));
        put_bytes(out, Some(a.args));
    }
}

const TAG_EXEC: u8 = 1;
const TAG_FORK: u8 = 2;
const TAG_EXIT: u8 = 3;
const TAG_THREADS: u8 = 4;
const TAG_FILE: u8 = 5;
const TAG_NET: u8 = 6;
const TAG_SYSCALL: u8 = 7;
const TAG_SNAPSHOT: u8 = 8;

fn put_endpoint(out: &mut Vec<u8>, e: &Endpoint) {
    out.extend_from_slice(&e.addr);
    out.extend_from_slice(&e.port.to_le_bytes());
}

fn write_body(out: &mut Vec<u8>, body: &Body<'_>) {
    match *body {
        Body::Exec { exe, args, cwd, exe_ino, exe_dev, exe_nlink, launch } => {
            out.push(TAG_EXEC);
            put_u64(out, exe_ino);
            put_u32(out, exe_dev);
            put_u32(out, exe_nlink);
            for s in [exe, args, cwd] {
                put_bytes(out, Some(s));
            }
            put_launch(out, launch.as_ref());
        }
        Body::Fork { child_pid, child_start_ns } => {
            out.push(TAG_FORK);
            put_u32(out, child_pid);
            put_u64(out, child_start_ns);
        }
        Body::Exit { exit_code, signal, core_dump } => {
            out.push(TAG_EXIT);
            put_u32(out, exit_code);
            put_u32(out, signal);
            out.push(u8::from(core_dump));
        }
        Body::Threads => out.push(TAG_THREADS),
        Body::File { ret, path, path2, ino, dev, open_flags, mode, owner_uid, owner_gid } => {
            out.push(TAG_FILE);
            put_u64(out, ret as u64);
            put_u64(out, ino);
            for v in [dev, open_flags, mode, owner_uid, owner_gid] {
                put_u32(out, v);
            }
            put_bytes(out, Some(path));
            put_bytes(out, Some(path2));
        }
        Body::Net { ret, family, protocol, local, remote, unix_path, bytes_sent, bytes_received } => {
            out.push(TAG_NET);
            put_u64(out, ret as u64);
            out.extend_from_slice(&family.to_le_bytes());
            out.extend_from_slice(&protocol.to_le_bytes());
            put_endpoint(out, &local);
            put_endpoint(out, &remote);
            put_u64(out, bytes_sent);
            put_u64(out, bytes_received);
            put_bytes(out, Some(unix_path));
        }
        Body::Syscall { nr, ret, args, str1, str2, str3 } => {
            out.push(TAG_SYSCALL);
            put_u32(out, nr);
            put_u64(out, ret as u64);
            for a in args {
                put_u64(out, a);
            }
            for s in [str1, str2, str3] {
                put_bytes(out, Some(s));
            }
        }
        Body::Snapshot { exe, args, cwd, launch } => {
            out.push(TAG_SNAPSHOT);
            for s in [exe, args, cwd] {
                put_bytes(out, Some(s));
            }
            put_launch(out, launch.as_ref());
        }
    }
}

/// `records-2`: a u8 (0: unknown), then tty u32, sid u32, leader u8, and per standard fd its type u8,
/// family u16, protocol u16, peer (16 bytes, port u16), rdev u32.
fn put_launch(out: &mut Vec<u8>, launch: Option<&Launch>) {
    let Some(l) = launch else {
        out.push(0);
        return;
    };
    out.push(1);
    put_u32(out, l.session.tty);
    put_u32(out, l.session.sid);
    out.push(u8::from(l.session.leader));
    for fd in &l.stdio {
        out.push(fd.fd_type.id());
        out.extend_from_slice(&fd.family.to_le_bytes());
        out.extend_from_slice(&fd.protocol.to_le_bytes());
        put_endpoint(out, &fd.remote);
        put_u32(out, fd.rdev);
    }
}

/// Reads fields off the front of a message, never past its end.
#[derive(Clone, Copy, Debug)]
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let (head, rest) = self.b.split_first_chunk::<N>().ok_or(RecordError::Truncated)?;
        self.b = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        self.take().map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, RecordError> {
        let n = self.u32()?;
        if n == ABSENT {
            return Ok(None);
        }
        let (head, rest) = self.b.split_at_checked(n as usize).ok_or(RecordError::Truncated)?;
        self.b = rest;
        Ok(Some(head))
    }
    fn string(&mut self) -> Result<&'a [u8], RecordError> {
        self.bytes().map(Option::unwrap_or_default)
    }
    fn endpoint(&mut self) -> Result<Endpoint, RecordError> {
        Ok(Endpoint { addr: self.take()?, port: self.u16()? })
    }
    /// `put_launch`'s part; `records-1` messages have none.
    fn launch(&mut self, v2: bool) -> Result<Option<Launch>, RecordError> {
        if !v2 || self.u8()? == 0 {
            return Ok(None);
        }
        let session = Session { tty: self.u32()?, sid: self.u32()?, leader: self.u8()? != 0 };
        let mut stdio = [Fd::default(); 3];
        for fd in &mut stdio {
            let t = self.u8()?;
            fd.fd_type = FdType::from_id(t).ok_or(RecordError::FdType(t))?;
            (fd.family, fd.protocol) = (self.u16()?, self.u16()?);
            fd.remote = self.endpoint()?;
            fd.rdev = self.u32()?;
        }
        Ok(Some(Launch { session, stdio }))
    }
}

type Lineage<'a> = (Option<&'a [u8]>, [Option<Ancestor<'a>>; MAX_ANCESTORS]);

/// A container entry and the bytes after it.
/// A container entry's strings, in `id_fields` order.
type ContainerFields<'a> = [Option<&'a [u8]>; ID_FIELDS];

fn read_container(b: &[u8]) -> Result<(ContainerFields<'_>, &[u8]), RecordError> {
    let mut r = Reader { b };
    let mut v = [None; ID_FIELDS];
    for f in &mut v {
        *f = r.bytes()?;
    }
    Ok((v, r.b))
}

fn read_process(b: &[u8]) -> Result<(Lineage<'_>, &[u8]), RecordError> {
    let mut r = Reader { b };
    let exe = r.bytes()?;
    let n = r.u8()? as usize;
    let mut ancestors = [None; MAX_ANCESTORS];
    for i in 0..n {
        let a = Ancestor { pid: r.u32()?, exe: r.string()?, args: r.string()? };
        // More than this build keeps: the rows keep as many as the schema's lists do.
        if let Some(slot) = ancestors.get_mut(i) {
            *slot = Some(a);
        }
    }
    Ok(((exe, ancestors), r.b))
}

fn read_body<'a>(r: &mut Reader<'a>, v2: bool) -> Result<Body<'a>, RecordError> {
    let tag = r.u8()?;
    Ok(match tag {
        TAG_EXEC => {
            let (exe_ino, exe_dev, exe_nlink) = (r.u64()?, r.u32()?, r.u32()?);
            let (exe, args, cwd) = (r.string()?, r.string()?, r.string()?);
            Body::Exec { exe_ino, exe_dev, exe_nlink, exe, args, cwd, launch: r.launch(v2)? }
        }
        TAG_FORK => Body::Fork { child_pid: r.u32()?, child_start_ns: r.u64()? },
        TAG_EXIT => Body::Exit { exit_code: r.u32()?, signal: r.u32()?, core_dump: r.u8()? != 0 },
        TAG_THREADS => Body::Threads,
        TAG_FILE => Body::File {
            ret: r.u64()? as i64,
            ino: r.u64()?,
            dev: r.u32()?,
            open_flags: r.u32()?,
            mode: r.u32()?,
            owner_uid: r.u32()?,
            owner_gid: r.u32()?,
            path: r.string()?,
            path2: r.string()?,
        },
        TAG_NET => Body::Net {
            ret: r.u64()? as i64,
            family: r.u16()?,
            protocol: r.u16()?,
            local: r.endpoint()?,
            remote: r.endpoint()?,
            bytes_sent: r.u64()?,
            bytes_received: r.u64()?,
            unix_path: r.string()?,
        },
        TAG_SYSCALL => {
            let (nr, ret) = (r.u32()?, r.u64()? as i64);
            let mut args = [0u64; 6];
            for a in &mut args {
                *a = r.u64()?;
            }
            Body::Syscall { nr, ret, args, str1: r.string()?, str2: r.string()?, str3: r.string()? }
        }
        TAG_SNAPSHOT => {
            let (exe, args, cwd) = (r.string()?, r.string()?, r.string()?);
            Body::Snapshot { exe, args, cwd, launch: r.launch(v2)? }
        }
        t => return Err(RecordError::Body(t)),
    })
}

/// A records message, checked and indexed; `for_each` hands out its events.
#[derive(Debug)]
pub struct Records<'a> {
    pub node_salt: u64,
    pub clock: BootClock,
    containers: Vec<[Option<&'a str>; ID_FIELDS]>,
    processes: Vec<Lineage<'a>>,
    rows: u32,
    events: &'a [u8],
    /// `records-2`: execs and snapshots carry their launch part.
    v2: bool,
}

impl<'a> Records<'a> {
    /// Reads the header and the identity sections (the events are read by `for_each`).
    pub fn parse(b: &'a [u8]) -> Result<Records<'a>, RecordError> {
        let mut r = Reader { b };
        let magic: [u8; 4] = r.take()?;
        let v2 = match &magic {
            MAGIC => true,
            MAGIC_1 => false,
            _ => return Err(RecordError::Magic(magic)),
        };
        let node_salt = r.u64()?;
        let clock = BootClock::from_offset(i128::from_le_bytes(r.take()?));
        let n = r.u32()?;
        let mut containers = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            let (v, rest) = read_container(r.b)?;
            r.b = rest;
            let mut s = [None; ID_FIELDS];
            for (o, f) in s.iter_mut().zip(v) {
                *o = f.map(std::str::from_utf8).transpose().map_err(|_| RecordError::Utf8)?;
            }
            containers.push(s);
        }
        let n = r.u32()?;
        let mut processes = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            let (p, rest) = read_process(r.b)?;
            r.b = rest;
            processes.push(p);
        }
        let rows = r.u32()?;
        Ok(Records { node_salt, clock, containers, processes, rows, events: r.b, v2 })
    }

    pub fn rows(&self) -> usize {
        self.rows as usize
    }

    /// Distinct container identities and process lineages the message holds.
    pub fn identities(&self) -> (usize, usize) {
        (self.containers.len(), self.processes.len())
    }

    /// Calls `f` with every event and its identity, in order; stops at the first malformed one (the
    /// events before it have been handed out).
    pub fn for_each(&self, mut f: impl FnMut(&Event<'a>, &Identity<'a>)) -> Result<(), RecordError> {
        let mut r = Reader { b: self.events };
        for _ in 0..self.rows {
            let id = r.u32()?;
            let kind = Kind::from_id(id).ok_or(RecordError::Kind(id))?;
            let (flags, count) = (r.u32()?, r.u64()?);
            let aggregate = match r.u8()? {
                0 => None,
                _ => Some(Aggregate { first_ns: r.u64()?, last_ns: r.u64()? }),
            };
            let subject = Subject {
                ktime_ns: r.u64()?,
                cgroup_id: r.u64()?,
                proc_start_ns: r.u64()?,
                pid: r.u32()?,
                tgid: r.u32()?,
                ppid: r.u32()?,
                uid: r.u32()?,
                gid: r.u32()?,
                euid: r.u32()?,
                egid: r.u32()?,
                pidns: r.u32()?,
                mntns: r.u32()?,
                comm: r.take()?,
            };
            let (c, p) = (r.u32()?, r.u32()?);
            let partial = r.u8()? != 0;
            let body = read_body(&mut r, self.v2)?;
            let fields = *self.containers.get(c as usize).ok_or(RecordError::Reference("container", c))?;
            let (process_exe, ancestors) =
                *self.processes.get(p as usize).ok_or(RecordError::Reference("process", p))?;
            let mut identity = Identity { process_exe, ancestors, partial, ..Identity::default() };
            set_id_fields(&mut identity, fields);
            f(&Event { kind, subject, flags, count, aggregate, body }, &identity);
        }
        if r.b.is_empty() { Ok(()) } else { Err(RecordError::Trailing(r.b.len())) }
    }
}

/// A message and how many events it holds.
pub type Part = (Vec<u8>, usize);

/// A message cut in two halves of its events (for one over `message_max_bytes`), each with the
/// message's clock and salt; None when it holds a single event.
pub fn split(payload: &[u8]) -> Result<Option<[Part; 2]>, RecordError> {
    let msg = Records::parse(payload)?;
    let ctx = &JsonContext { node: "", clock: msg.clock, node_salt: msg.node_salt };
    if msg.rows() < 2 {
        return Ok(None);
    }
    let half = msg.rows() / 2;
    let (mut first, mut second) = (RecordWriter::default(), RecordWriter::default());
    let mut i = 0;
    msg.for_each(|ev, id| {
        let w = if i < half { &mut first } else { &mut second };
        w.append(ev, id);
        i += 1;
    })?;
    Ok(Some([(first.finish(ctx), half), (second.finish(ctx), msg.rows() - half)]))
}

/// The lake's rows of a records message, built as `tracelake run` builds them, in `rows` (kept from
/// message to message: new builders for every message cost more than the rows of a small one). A
/// damaged message leaves `rows` empty and gives no rows at all.
pub fn to_batch(
    rows: &mut Option<BatchBuilder>,
    table: Table,
    node: &str,
    payload: &[u8],
) -> Result<RecordBatch, String> {
    build(rows, table, node, payload, false).map(|(batch, _)| batch)
}

/// As `to_batch`, with the keys of the rows' keyed columns, which the lake writes them from (as
/// `tracelake run` writes its own). The keyed columns are left as placeholders (gathering them for every
/// message was most of the service's cost): hand the batch only to a `LakeSink` with its keys
/// (`push_built_keyed`), which gathers them where anything else needs the rows.
pub fn to_keyed_batch(
    rows: &mut Option<BatchBuilder>,
    table: Table,
    node: &str,
    payload: &[u8],
) -> Result<(RecordBatch, Option<BatchKeys>), String> {
    build(rows, table, node, payload, true)
}

fn build(
    rows: &mut Option<BatchBuilder>,
    table: Table,
    node: &str,
    payload: &[u8],
    keyed: bool,
) -> Result<(RecordBatch, Option<BatchKeys>), String> {
    let msg = Records::parse(payload).map_err(|e| e.to_string())?;
    let b = match rows {
        Some(b) if b.table() == table => b,
        _ => rows.insert(
            BatchBuilder::new(table)
                .ok_or_else(|| format!("records of table {}, which has no events", table.name()))?,
        ),
    };
    let ctx = JsonContext { node, clock: msg.clock, node_salt: msg.node_salt };
    let mut wrong = None;
    let read = msg.for_each(|ev, id| {
        if Table::of(ev) == table {
            b.append(&ctx, ev, id);
        } else {
            wrong = Some(ev.kind);
        }
    });
    let batch = match keyed {
        true => b.finish_unmaterialized().map(|(batch, keys)| (batch, Some(keys))),
        false => b.finish().map(|batch| (batch, None)),
    };
    let batch = batch.map_err(|e| error_chain(&e));
    read.map_err(|e| e.to_string())?;
    if let Some(kind) = wrong {
        return Err(format!("a {} event in a message of table {}", kind.name(), table.name()));
    }
    batch
}
