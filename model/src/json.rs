//! JSON-lines rendering of events: the stable field set of docs/events.md.
//!
//! Written by hand into a reused buffer: no allocation per event, and byte
//! strings that are not UTF-8 are kept losslessly (see `bytes_field`).

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::session::{FdType, STDIO_NAMES};
use crate::{Body, BootClock, Event, Kind, Launch, flags};

/// What the writer needs besides the event.
#[derive(Clone, Copy, Debug)]
pub struct JsonContext<'a> {
    /// Node name written into every event.
    pub node: &'a str,
    pub clock: BootClock,
    /// Mixed into event ids so two nodes never produce the same id.
    pub node_salt: u64,
}

/// Stable 64-bit id of an event, rendered as 16 hex digits: the same record
/// always gets the same id, so replays can be deduplicated downstream.
pub fn event_id(salt: u64, ev: &Event<'_>) -> u64 {
    let mut h = salt ^ 0x9e37_79b9_7f4a_7c15;
    for v in [ev.subject.ktime_ns, u64::from(ev.subject.pid), u64::from(ev.kind.id()), ev.count] {
        h = (h ^ v).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
    }
    h
}

/// Workload identity resolved for an event by the enricher. Fields are
/// written only when known; more (pod name, workload, namespace, image)
/// join as the enricher learns them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity<'a> {
    /// cgroup v2 path of the process.
    pub cgroup: Option<&'a str>,
    /// Container id, when the cgroup path names one.
    pub container_id: Option<&'a str>,
    /// containerd, cri-o, docker, or unknown.
    pub container_runtime: Option<&'a str>,
    /// Pod UID from the kubelet cgroup layout.
    pub pod_uid: Option<&'a str>,
    /// containerd namespace (non-CRI layout).
    pub containerd_namespace: Option<&'a str>,
    /// Pod name (kubelet's label on the container).
    pub pod: Option<&'a str>,
    /// Kubernetes namespace of the pod.
    pub namespace: Option<&'a str>,
    /// Container name within the pod.
    pub container_name: Option<&'a str>,
    /// Image reference the container was created from.
    pub image: Option<&'a str>,
    /// The container's own IP (observed in its network namespace).
    pub pod_ip: Option<&'a str>,
    /// Network events: who held the remote IP at the event's time (IP history).
    pub peer_pod: Option<&'a str>,
    pub peer_namespace: Option<&'a str>,
    pub peer_workload_kind: Option<&'a str>,
    pub peer_workload: Option<&'a str>,
    pub peer_container_id: Option<&'a str>,
    /// Service name when the remote IP is a ClusterIP.
    pub peer_service: Option<&'a str>,
    /// Kind of the workload that owns the pod: Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet, Pod.
    pub workload_kind: Option<&'a str>,
    /// Name of the workload that owns the pod.
    pub workload: Option<&'a str>,
    /// How the workload was learnt: `api` (ownerReferences) or `inferred` (pod name and labels).
    pub workload_source: Option<&'a str>,
    /// Pod labels (key, value), sorted by key, when the API server told them.
    pub pod_labels: Option<&'a [(Box<str>, Box<str>)]>,
    /// Executable of the process itself (from the process table).
    pub process_exe: Option<&'a [u8]>,
    /// Parent, grandparent, ...: nearest first, unused slots None.
    pub ancestors: [Option<Ancestor<'a>>; MAX_ANCESTORS],
    /// Some identity source had no answer yet (lookup queued, or the
    /// runtime is slow or down): the event went on with what was known.
    pub partial: bool,
    /// Content digest of the image (`sha256:...`): the reference can be re-tagged, the digest cannot.
    pub image_digest: Option<&'a str>,
    /// Set by a resolver that reads the identity strings (every field above but the process's own and its
    /// lineage, `partial` and `pod_labels`) from shared immutable values: identities with equal stamps carry
    /// equal strings. Code that changes those strings after the resolver must clear it.
    pub stamp: Option<Stamp<'a>>,
}

/// What an identity's strings were read from (`Identity::stamp`).
pub trait Source: Sync {
    /// The addresses of the shared values the strings came from (0 for none). Equal parts mean equal strings
    /// for as long as a value `keep` returned is held: while it is, no other value can take those addresses.
    fn parts(&self) -> [usize; 6];
    /// Holds the shared values alive (clones of their `Arc`s).
    fn keep(&self) -> Box<dyn std::any::Any + Send>;
}

/// An identity's source; equal when its parts are.
#[derive(Clone, Copy)]
pub struct Stamp<'a>(pub &'a dyn Source);

impl PartialEq for Stamp<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.parts() == other.0.parts()
    }
}

impl Eq for Stamp<'_> {}

impl std::fmt::Debug for Stamp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Stamp").field(&self.0.parts()).finish()
    }
}

/// Longest lineage written into an event.
pub const MAX_ANCESTORS: usize = 8;

/// One ancestor of the process, as the process table knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ancestor<'a> {
    pub pid: u32,
    pub exe: &'a [u8],
    /// NUL-separated argv.
    pub args: &'a [u8],
}

/// Appends one event as a JSON object and a newline to `out`.
pub fn write_event(out: &mut Vec<u8>, ctx: &JsonContext<'_>, ev: &Event<'_>) {
    write_event_with(out, ctx, ev, &Identity::default());
}

/// `write_event` plus the identity fields the enricher resolved.
pub fn write_event_with(out: &mut Vec<u8>, ctx: &JsonContext<'_>, ev: &Event<'_>, id: &Identity<'_>) {
    let s = &ev.subject;
    let wall = ctx.clock.wall_ns(s.ktime_ns);
    out.extend_from_slice(b"{\"time\":\"");
    write_time(out, wall);
    out.push(b'"');
    num(out, "ts_ns", wall);
    out.extend_from_slice(b",\"event_id\":\"");
    hex16(out, event_id(ctx.node_salt, ev));
    out.extend_from_slice(b"\",\"node\":");
    str_value(out, ctx.node.as_bytes());
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(ev.kind.name().as_bytes());
    out.extend_from_slice(b"\",\"class\":\"");
    out.extend_from_slice(ev.kind.class().name().as_bytes());
    out.push(b'"');
    num(out, "count", ev.count);
    if let Some(a) = ev.aggregate {
        out.extend_from_slice(b",\"summary\":true,\"first_time\":\"");
        write_time(out, ctx.clock.wall_ns(a.first_ns));
        out.extend_from_slice(b"\",\"last_time\":\"");
        write_time(out, ctx.clock.wall_ns(a.last_ns));
        out.push(b'"');
    }
    if ev.flags != 0 {
        out.extend_from_slice(b",\"flags\":[");
        let mut first = true;
        for (bit, name) in flags::NAMES {
            if ev.flags & bit != 0 {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.push(b'"');
                out.extend_from_slice(name.as_bytes());
                out.push(b'"');
            }
        }
        out.push(b']');
    }
    // The common fields go through itoa: core::fmt dominated the profile.
    num(out, "pid", s.tgid);
    num(out, "tid", s.pid);
    num(out, "ppid", s.ppid);
    num(out, "uid", s.uid);
    num(out, "gid", s.gid);
    num(out, "euid", s.euid);
    num(out, "egid", s.egid);
    num(out, "proc_start_ns", s.proc_start_ns);
    num(out, "cgroup_id", s.cgroup_id);
    num(out, "pidns", s.pidns);
    num(out, "mntns", s.mntns);
    out.extend_from_slice(b",\"comm\":");
    str_value(out, s.comm());
    out.extend_from_slice(if id.container_id.is_some() { b",\"container\":true" } else { b",\"container\":false" });
    for (name, value) in [
        ("cgroup", id.cgroup),
        ("container_id", id.container_id),
        ("container_runtime", id.container_runtime),
        ("pod_uid", id.pod_uid),
        ("containerd_namespace", id.containerd_namespace),
        ("namespace", id.namespace),
        ("pod", id.pod),
        ("container_name", id.container_name),
        ("image", id.image),
        ("image_digest", id.image_digest),
        ("pod_ip", id.pod_ip),
        ("peer_namespace", id.peer_namespace),
        ("peer_pod", id.peer_pod),
        ("peer_workload_kind", id.peer_workload_kind),
        ("peer_workload", id.peer_workload),
        ("peer_container_id", id.peer_container_id),
        ("peer_service", id.peer_service),
        ("workload_kind", id.workload_kind),
        ("workload", id.workload),
        ("workload_source", id.workload_source),
    ] {
        if let Some(v) = value {
            let _ = write!(out, ",\"{name}\":");
            str_value(out, v.as_bytes());
        }
    }
    if let Some(labels) = id.pod_labels {
        out.extend_from_slice(b",\"pod_labels\":{");
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            str_value(out, k.as_bytes());
            out.push(b':');
            str_value(out, v.as_bytes());
        }
        out.push(b'}');
    }
    if id.partial {
        out.extend_from_slice(b",\"enrichment\":\"partial\"");
    }
    if let Some(exe) = id.process_exe {
        bytes_field(out, "process_exe", exe);
    }
    if id.ancestors[0].is_some() {
        out.extend_from_slice(b",\"ancestors\":[");
        for (i, a) in id.ancestors.iter().map_while(|a| a.as_ref()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"pid\":");
            out.extend_from_slice(itoa::Buffer::new().format(a.pid).as_bytes());
            out.extend_from_slice(b",\"exe\":");
            str_value(out, a.exe);
            out.extend_from_slice(b",\"args\":[");
            let raw = a.args.strip_suffix(&[0]).unwrap_or(a.args);
            for (j, arg) in raw.split(|&b| b == 0).filter(|_| !raw.is_empty()).enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                str_value(out, arg);
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b']');
    }
    body(out, ev);
    out.extend_from_slice(b"}\n");
}

fn body(out: &mut Vec<u8>, ev: &Event<'_>) {
    match ev.body {
        Body::Exec { exe, args, cwd, exe_ino, exe_dev, exe_nlink, launch } => {
            bytes_field(out, "exe", exe);
            args_field(out, ev, args);
            bytes_field(out, "cwd", cwd);
            let _ = write!(
                out,
                ",\"exe_ino\":{exe_ino},\"exe_dev\":{exe_dev},\"exe_nlink\":{exe_nlink},\"fileless\":{}",
                ev.fileless()
            );
            if let Some(l) = &launch {
                launch_fields(out, l);
            }
        }
        Body::Snapshot { exe, args, cwd, launch } => {
            bytes_field(out, "exe", exe);
            args_field(out, ev, args);
            bytes_field(out, "cwd", cwd);
            if let Some(l) = &launch {
                launch_fields(out, l);
            }
        }
        Body::Fork { child_pid, child_start_ns } => {
            let _ = write!(out, ",\"child_pid\":{child_pid},\"child_start_ns\":{child_start_ns}");
        }
        Body::Exit { exit_code, signal, core_dump } => {
            let _ = write!(out, ",\"exit_code\":{exit_code},\"signal\":{signal},\"core_dump\":{core_dump}");
        }
        Body::Threads => {}
        Body::File { ret, path, path2, ino, dev, open_flags, mode, owner_uid, owner_gid } => {
            let _ = write!(out, ",\"ret\":{ret}");
            bytes_field(out, "path", path);
            match ev.kind {
                Kind::FileOpen => {
                    let _ = write!(out, ",\"ino\":{ino},\"dev\":{dev},\"open_flags\":{open_flags},\"mode\":{mode}");
                }
                Kind::FileRename => {
                    bytes_field(out, "path2", path2);
                    let _ = write!(out, ",\"rename_flags\":{open_flags}");
                }
                Kind::FileUnlink => {
                    let _ = write!(out, ",\"unlink_flags\":{open_flags}");
                }
                Kind::FileChmod => {
                    let _ = write!(out, ",\"mode\":{mode}");
                }
                Kind::FileChown => {
                    let _ = write!(out, ",\"owner_uid\":{},\"owner_gid\":{}", owner_uid as i32, owner_gid as i32);
                }
                Kind::Exec
                | Kind::Fork
                | Kind::Exit
                | Kind::CloneThread
                | Kind::NetConnect
                | Kind::NetAccept
                | Kind::NetListen
                | Kind::NetClose
                | Kind::NetUdpSend
                | Kind::NetBind
                | Kind::Setuid
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
                | Kind::PivotRoot
                | Kind::ProcessSnapshot => {}
            }
        }
        Body::Net { ret, family, protocol, local, remote, unix_path, bytes_sent, bytes_received } => {
            let (fam, proto) = (family_name(family), protocol_name(protocol));
            let _ = write!(out, ",\"ret\":{ret},\"family\":\"{fam}\",\"protocol\":\"{proto}\"");
            if family == 1 {
                bytes_field(out, "unix_path", unix_path);
            } else {
                out.extend_from_slice(b",\"local_ip\":\"");
                write_ip(out, family, &local.addr);
                let _ = write!(out, "\",\"local_port\":{},\"remote_ip\":\"", local.port);
                write_ip(out, family, &remote.addr);
                let _ = write!(out, "\",\"remote_port\":{}", remote.port);
            }
            if ev.kind == Kind::NetClose {
                let _ = write!(out, ",\"bytes_sent\":{bytes_sent},\"bytes_received\":{bytes_received}");
            }
        }
        Body::Syscall { nr, ret, args, str1, str2, str3 } => {
            let _ = write!(
                out,
                ",\"syscall_nr\":{nr},\"ret\":{ret},\"args\":[{},{},{},{},{},{}]",
                args[0], args[1], args[2], args[3], args[4], args[5]
            );
            syscall_fields(out, ev.kind, &args, str1, str2, str3);
        }
    }
}

/// `tty` (when there is one), `sid`, `session_leader`, and `stdin`/`stdout`/`stderr` as objects: `type`, and
/// for a socket `family`, `protocol` and its peer, for a terminal its name.
fn launch_fields(out: &mut Vec<u8>, l: &Launch) {
    if let Some(tty) = l.session.tty() {
        let _ = write!(out, ",\"tty\":\"{tty}\"");
    }
    let _ = write!(out, ",\"sid\":{},\"session_leader\":{}", l.session.sid, l.session.leader);
    for (name, fd) in STDIO_NAMES.iter().zip(&l.stdio) {
        let _ = write!(out, ",\"{name}\":{{\"type\":\"{}\"", fd.fd_type.name());
        match fd.fd_type {
            FdType::Socket => {
                // The /proc walk sees that an fd is a socket, not what kind.
                if fd.family != 0 {
                    let _ = write!(out, ",\"family\":\"{}\"", family_name(fd.family));
                }
                let proto = protocol_name(fd.protocol);
                if !proto.is_empty() {
                    let _ = write!(out, ",\"protocol\":\"{proto}\"");
                }
                if fd.has_peer() {
                    out.extend_from_slice(b",\"remote_ip\":\"");
                    write_ip(out, fd.family, &fd.remote.addr);
                    let _ = write!(out, "\",\"remote_port\":{}", fd.remote.port);
                }
            }
            FdType::Tty => {
                let _ = write!(out, ",\"tty\":\"{}\"", crate::Tty(fd.rdev));
            }
            FdType::None | FdType::Pipe | FdType::Char | FdType::File | FdType::Other => {}
        }
        out.push(b'}');
    }
}

/// The JSON and lake name of an address family.
pub fn family_name(family: u16) -> &'static str {
    match family {
        2 => "inet",
        10 => "inet6",
        1 => "unix",
        _ => "other",
    }
}

/// The JSON and lake name of an IP protocol ("" for none).
pub fn protocol_name(protocol: u16) -> &'static str {
    match protocol {
        6 => "tcp",
        17 => "udp",
        0 => "",
        _ => "other",
    }
}

/// Names the strings and decoded arguments of privilege events.
fn syscall_fields(out: &mut Vec<u8>, kind: Kind, args: &[u64; 6], str1: &[u8], str2: &[u8], str3: &[u8]) {
    match kind {
        Kind::Mount => {
            bytes_field(out, "source", str1);
            bytes_field(out, "target", str2);
            bytes_field(out, "fstype", str3);
            let _ = write!(out, ",\"mount_flags\":{}", args[3]);
        }
        Kind::Umount => bytes_field(out, "target", str1),
        Kind::Chroot => bytes_field(out, "path", str1),
        Kind::MemfdCreate => bytes_field(out, "name", str1),
        Kind::PivotRoot => {
            bytes_field(out, "new_root", str1);
            bytes_field(out, "put_old", str2);
        }
        Kind::ModuleLoad => bytes_field(out, "params", str1),
        Kind::Capset => {
            let _ = write!(
                out,
                ",\"cap_effective\":{},\"cap_permitted\":{},\"cap_inheritable\":{}",
                args[2], args[3], args[4]
            );
        }
        Kind::Setns => {
            let _ = write!(out, ",\"ns_fd\":{},\"ns_type\":{},\"ns_inode\":{}", args[0] as i32, args[1], args[5]);
        }
        Kind::Unshare => {
            let _ = write!(out, ",\"unshare_flags\":{}", args[0]);
        }
        Kind::Ptrace => {
            let _ = write!(out, ",\"ptrace_request\":{},\"target_pid\":{}", args[0] as i64, args[1] as i32);
        }
        Kind::Bpf => {
            let _ = write!(out, ",\"bpf_cmd\":{}", args[0]);
        }
        Kind::Setuid | Kind::Setgid => {}
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
        | Kind::NetAccept
        | Kind::NetListen
        | Kind::NetClose
        | Kind::NetUdpSend
        | Kind::NetBind
        | Kind::ProcessSnapshot => {}
    }
}

/// `,"key":value` for an integer.
fn num(out: &mut Vec<u8>, key: &str, v: impl itoa::Integer) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((v >> (shift * 4)) & 15) as usize]);
    }
}

fn digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut buf = [b'0'; 9];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// RFC 3339 UTC with nanoseconds (what humantime's format_rfc3339_nanos
/// prints), without core::fmt. Dates from Howard Hinnant's days_from_civil
/// inverse; times before the epoch clamp to it.
fn write_time(out: &mut Vec<u8>, wall_ns: i128) {
    let ns = u64::try_from(wall_ns.max(0)).unwrap_or(u64::MAX);
    let (secs, nanos) = (ns / 1_000_000_000, ns % 1_000_000_000);
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    digits(out, y.max(0) as u64, 4);
    out.push(b'-');
    digits(out, m as u64, 2);
    out.push(b'-');
    digits(out, d as u64, 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, sod / 60 % 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, nanos, 9);
    out.push(b'Z');
}

fn write_ip(out: &mut Vec<u8>, family: u16, addr: &[u8; 16]) {
    let _ = if family == 10 {
        write!(out, "{}", Ipv6Addr::from(*addr))
    } else {
        write!(out, "{}", Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
}

fn args_field(out: &mut Vec<u8>, ev: &Event<'_>, raw: &[u8]) {
    out.extend_from_slice(b",\"args\":[");
    let mut lossless = true;
    for (i, a) in ev.args().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        lossless &= std::str::from_utf8(a).is_ok();
        str_value(out, a);
    }
    out.push(b']');
    if !lossless {
        hex_field(out, "args_hex", raw);
    }
}

/// A byte-string field. Valid UTF-8 is written as a JSON string; anything
/// else is written lossily (U+FFFD) and again, exactly, as `<name>_hex`.
pub fn bytes_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    let _ = write!(out, ",\"{name}\":");
    str_value(out, value);
    if std::str::from_utf8(value).is_err() {
        hex_field(out, &format!("{name}_hex"), value);
    }
}

fn hex_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let _ = write!(out, ",\"{name}\":\"");
    for &b in value {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out.push(b'"');
}

/// A JSON string: control characters (newlines, NUL) escaped, invalid UTF-8
/// replaced by U+FFFD.
pub fn str_value(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for chunk in value.utf8_chunks() {
        escape_str(out, chunk.valid());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

/// Appends `s` escaped for a JSON string, without the quotes: quotes, backslashes and every control
/// character (the one JSON escaper of the workspace; the SIEM documents use it too).
pub fn escape_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{:04x}", b);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests;
