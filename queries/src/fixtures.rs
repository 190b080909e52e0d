//! Events for tests and benchmarks: real model events, pushed through the
//! lake's own column builders (`BatchBuilder`), so the batches rules see
//! have exactly the lake's schemas.

use std::net::IpAddr;

use arrow::array::RecordBatch;
use tracelake_model::json::{Ancestor, Identity, JsonContext};
use tracelake_model::{BootClock, Endpoint, Fd, FdType, Kind, Launch, OwnedBody, OwnedEvent, Session, Subject};
use tracelake_sinks::parquet::{BatchBuilder, LakeError, Table};

pub const CONTAINER_ID: &str = "5e1ec7ab1e5e1ec7ab1e5e1ec7ab1e5e1ec7ab1e5e1ec7ab1e5e1ec7ab1e5e1e";

/// Where a fixture event happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The `api` Deployment's container in namespace `payments`.
    Container,
    /// A process of the node itself.
    Host,
}

/// A standard fd of a fixture exec (`Fx::stdio`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Std {
    /// A TCP socket connected to ip:port.
    Tcp(&'static str, u16),
    /// A UNIX socket.
    Unix,
    Pipe,
    /// /dev/pts/N.
    Pts(u32),
    /// /dev/null.
    Null,
    File,
    Closed,
}

impl Std {
    fn fd(self) -> Fd {
        let of = |fd_type| Fd { fd_type, ..Fd::default() };
        match self {
            Std::Tcp(ip, port) => {
                let (family, remote) = endpoint(ip, port);
                Fd { fd_type: FdType::Socket, family, protocol: 6, remote, rdev: 0 }
            }
            Std::Unix => Fd { fd_type: FdType::Socket, family: 1, ..Fd::default() },
            Std::Pipe => of(FdType::Pipe),
            Std::Pts(n) => Fd { fd_type: FdType::Tty, rdev: 136 << 20 | n, ..Fd::default() },
            Std::Null => Fd { fd_type: FdType::Char, rdev: 1 << 20 | 3, ..Fd::default() },
            Std::File => of(FdType::File),
            Std::Closed => of(FdType::None),
        }
    }
}

/// Lineage of a fixture process: (exe, NUL-separated argv) of parent, grandparent, ...
pub type Lineage = &'static [(&'static str, &'static str)];

/// An event and where it happened.
#[derive(Clone, Debug)]
pub struct Fx {
    pub event: OwnedEvent,
    pub place: Place,
    pub lineage: Lineage,
    /// The process's executable (for non-exec events), as the process table knows it.
    pub exe: Option<&'static str>,
}

/// Builds a sequence of events 1 ms apart.
#[derive(Debug, Default)]
pub struct Script {
    pub events: Vec<Fx>,
    ktime: u64,
}

fn comm16(comm: &str) -> [u8; 16] {
    let mut c = [0u8; 16];
    let b = comm.as_bytes();
    c[..b.len().min(15)].copy_from_slice(&b[..b.len().min(15)]);
    c
}

fn endpoint(ip: &str, port: u16) -> (u16, Endpoint) {
    let mut e = Endpoint { addr: [0; 16], port };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            e.addr[..4].copy_from_slice(&v4.octets());
            (2, e)
        }
        Ok(IpAddr::V6(v6)) => {
            e.addr = v6.octets();
            (10, e)
        }
        Err(_) => (2, e),
    }
}

impl Script {
    pub fn new() -> Script {
        Script { events: Vec::new(), ktime: 1_000_000_000 }
    }

    fn push(&mut self, kind: Kind, pid: u32, comm: &str, body: OwnedBody, strings: [&[u8]; 3]) -> &mut Fx {
        self.ktime += 1_000_000;
        let event = OwnedEvent {
            kind,
            subject: Subject {
                ktime_ns: self.ktime,
                cgroup_id: 7777,
                proc_start_ns: u64::from(pid) * 1000,
                pid,
                tgid: pid,
                ppid: 1,
                uid: 0,
                gid: 0,
                euid: 0,
                egid: 0,
                pidns: 4026532000,
                mntns: 4026532001,
                comm: comm16(comm),
            },
            flags: 0,
            count: 1,
            aggregate: None,
            body,
            strings: strings.map(<[u8]>::to_vec),
        };
        self.events.push(Fx { event, place: Place::Container, lineage: &[], exe: None });
        let last = self.events.len() - 1;
        &mut self.events[last]
    }

    /// Moves the clock on (windowed rules).
    pub fn wait_ms(&mut self, ms: u64) -> &mut Script {
        self.ktime += ms * 1_000_000;
        self
    }

    /// exec of `exe` with argv `args`; comm is the basename of argv[0], as the kernel sets it.
    pub fn exec(&mut self, pid: u32, exe: &str, args: &[&str]) -> &mut Fx {
        let comm = args.first().map_or(exe, |a| a.rsplit('/').next().unwrap_or(a));
        let comm = comm.to_string();
        let mut argv = Vec::new();
        for a in args {
            argv.extend_from_slice(a.as_bytes());
            argv.push(0);
        }
        // Terminal, session and standard fds unknown (an older agent) until `stdio` or `terminal` set them.
        let body = OwnedBody::Exec { exe_ino: 42, exe_dev: 8, exe_nlink: 1, launch: None };
        self.push(Kind::Exec, pid, &comm, body, [exe.as_bytes(), &argv, b"/"])
    }

    /// A file event (`flags`: open flags, or rename/unlink flags).
    pub fn file(&mut self, kind: Kind, pid: u32, comm: &str, path: &str, flags: u32) -> &mut Fx {
        let body =
            OwnedBody::File { ret: 3, ino: 9, dev: 8, open_flags: flags, mode: 0o644, owner_uid: 0, owner_gid: 0 };
        self.push(kind, pid, comm, body, [path.as_bytes(), b"", b""])
    }

    /// A TCP connect to ip:port.
    pub fn connect(&mut self, pid: u32, comm: &str, ip: &str, port: u16) -> &mut Fx {
        let (family, remote) = endpoint(ip, port);
        let (_, local) = endpoint(if family == 10 { "fd00::9" } else { "10.244.1.9" }, 40000);
        let body = OwnedBody::Net { ret: 0, family, protocol: 6, local, remote, bytes_sent: 0, bytes_received: 0 };
        self.push(Kind::NetConnect, pid, comm, body, [b"", b"", b""])
    }

    /// A connect on a unix socket.
    pub fn connect_unix(&mut self, pid: u32, comm: &str, path: &str) -> &mut Fx {
        let body = OwnedBody::Net {
            ret: 0,
            family: 1,
            protocol: 0,
            local: Endpoint::default(),
            remote: Endpoint::default(),
            bytes_sent: 0,
            bytes_received: 0,
        };
        self.push(Kind::NetConnect, pid, comm, body, [path.as_bytes(), b"", b""])
    }

    /// A privilege/escape syscall event (kernel_activity) with its raw arguments and strings.
    pub fn syscall(&mut self, kind: Kind, pid: u32, comm: &str, args: [u64; 6], strs: [&str; 3]) -> &mut Fx {
        let body = OwnedBody::Syscall { nr: 0, ret: 0, args };
        self.push(kind, pid, comm, body, strs.map(str::as_bytes))
    }
}

impl Fx {
    pub fn on_host(&mut self) -> &mut Fx {
        self.place = Place::Host;
        self
    }

    pub fn lineage(&mut self, l: Lineage) -> &mut Fx {
        self.lineage = l;
        self
    }

    pub fn ppid(&mut self, ppid: u32) -> &mut Fx {
        self.event.subject.ppid = ppid;
        self
    }

    pub fn flags(&mut self, flags: u32) -> &mut Fx {
        self.event.flags = flags;
        self
    }

    pub fn count(&mut self, n: u64) -> &mut Fx {
        self.event.count = n;
        self
    }

    pub fn exe(&mut self, exe: &'static str) -> &mut Fx {
        self.exe = Some(exe);
        self
    }

    /// The launch of an exec, made known (no terminal, in its parent's session) when it was not.
    fn launch(&mut self) -> &mut Launch {
        let sid = self.event.subject.ppid;
        let OwnedBody::Exec { launch, .. } = &mut self.event.body else { panic!("not an exec fixture") };
        launch.get_or_insert(Launch { session: Session { tty: 0, sid, leader: false }, ..Launch::default() })
    }

    /// The exec's stdin, stdout and stderr.
    pub fn stdio(&mut self, fds: [Std; 3]) -> &mut Fx {
        self.launch().stdio = fds.map(Std::fd);
        self
    }

    /// The exec has /dev/pts/N as its controlling terminal and leads its session (a terminal's shell).
    pub fn terminal(&mut self, pts: u32) -> &mut Fx {
        let pid = self.event.subject.tgid;
        self.launch().session = Session { tty: 136 << 20 | pts, sid: pid, leader: true };
        self
    }

    /// The identity the enricher would have resolved.
    pub fn identity(&self) -> Identity<'static> {
        let mut id = match self.place {
            Place::Container => Identity {
                cgroup: Some("/kubepods/burstable/pod0f1e/5e1e"),
                container_id: Some(CONTAINER_ID),
                container_runtime: Some("containerd"),
                pod_uid: Some("0f1e2d3c-aaaa-bbbb-cccc-000000000001"),
                pod: Some("api-7d9f-x2"),
                namespace: Some("payments"),
                container_name: Some("api"),
                image: Some("registry.example/api:1.2"),
                workload_kind: Some("Deployment"),
                workload: Some("api"),
                ..Identity::default()
            },
            Place::Host => Identity { cgroup: Some("/system.slice/kubelet.service"), ..Identity::default() },
        };
        id.process_exe = self.exe.map(str::as_bytes);
        for (slot, (exe, args)) in id.ancestors.iter_mut().zip(self.lineage) {
            *slot = Some(Ancestor { pid: 1, exe: exe.as_bytes(), args: args.as_bytes() });
        }
        id
    }
}

/// Wall clock of the fixtures: ktime 0 is `base_ns` since the epoch.
pub fn context(base_ns: i128) -> JsonContext<'static> {
    JsonContext { node: "node-1", clock: BootClock::from_offset(base_ns), node_salt: 1 }
}

/// One batch per table the events touch, built by the lake's column builders.
pub fn batches(ctx: &JsonContext<'_>, events: &[Fx]) -> Result<Vec<(Table, RecordBatch)>, LakeError> {
    let mut builders: Vec<BatchBuilder> = Table::EVENT_TABLES.into_iter().filter_map(BatchBuilder::new).collect();
    for fx in events {
        let ev = fx.event.as_event();
        let t = Table::of(&ev);
        if let Some(b) = builders.iter_mut().find(|b| b.table() == t) {
            b.append(ctx, &ev, &fx.identity());
        }
    }
    let mut out = Vec::new();
    for b in &mut builders {
        if !b.is_empty() {
            out.push((b.table(), b.finish()?));
        }
    }
    Ok(out)
}
