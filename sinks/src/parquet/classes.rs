//! The columns of each event class, after the common ones (see `columns`).

use std::io::Write as _;

use arrow::array::{ArrayRef, Int32Builder, Int64Builder, ListBuilder, UInt32Builder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Int64Type, UInt16Type, UInt32Type, UInt64Type};
use arrow::error::ArrowError;
use tracelake_model::json::protocol_name;
use tracelake_model::session::stdio_peer;
use tracelake_model::{Body, Event, Kind, Launch};

use super::columns::finish;
use super::dict_chunk::KeyGroup;
use super::keyed::{Groups, KeyedArgs, KeyedBytes, KeyedIps, KeyedStrings};
use super::numbers::{Present, has, optional, optional_bool};
use super::schema::{Table, list_of};

/// The columns of one class, after the common ones.
#[derive(Debug)]
pub(crate) enum Extra {
    Process(Box<ProcessCols>),
    File(Box<FileCols>),
    Net(Box<NetCols>),
    Kernel(Box<KernelCols>),
}

impl Extra {
    /// Builders for an event table; None for tables written by others.
    pub(crate) fn new(table: Table) -> Option<Extra> {
        match table {
            Table::ProcessActivity => Some(Extra::Process(Box::default())),
            Table::FileActivity => Some(Extra::File(Box::default())),
            Table::NetworkActivity | Table::DnsActivity => Some(Extra::Net(Box::default())),
            Table::KernelActivity => Some(Extra::Kernel(Box::default())),
            Table::DetectionFinding | Table::IpOwnership => None,
        }
    }

    pub(crate) fn fields(table: Table, f: &mut Vec<Field>) {
        match table {
            Table::ProcessActivity => ProcessCols::fields(f),
            Table::FileActivity => FileCols::fields(f),
            Table::NetworkActivity | Table::DnsActivity => NetCols::fields(f),
            Table::KernelActivity => KernelCols::fields(f),
            Table::DetectionFinding | Table::IpOwnership => {}
        }
    }

    pub(crate) fn append(&mut self, ev: &Event<'_>) -> usize {
        match self {
            Extra::Process(c) => c.append(ev),
            Extra::File(c) => c.append(ev),
            Extra::Net(c) => c.append(ev),
            Extra::Kernel(c) => c.append(ev),
        }
    }

    /// With `keyed`, the string columns (command lines, paths, addresses, cwd) as keys into distinct values
    /// too, for the Parquet writer (`dict_chunk`).
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<ArrayRef>,
        keyed: Option<&ArrayRef>,
    ) -> Result<Vec<KeyGroup>, ArrowError> {
        let mut groups = Groups::new(keyed);
        match self {
            Extra::Process(c) => c.finish(out, &mut groups),
            Extra::File(c) => c.finish(out, &mut groups),
            Extra::Net(c) => c.finish(out, &mut groups),
            Extra::Kernel(c) => c.finish(out, &mut groups),
        }
        groups.into_result()
    }
}

#[derive(Debug, Default)]
pub(crate) struct ProcessCols {
    /// `cmdline`, `args`, `args_raw`.
    argv: KeyedArgs,
    cwd: KeyedBytes,
    /// `exe_ino` ... `core_dump`, `sid`, `session_leader`, `stdio_remote_port`.
    numbers: Vec<ProcNumbers>,
    /// `tty`, `stdin_type`, `stdout_type`, `stderr_type`, `stdio_protocol`, `stdio_remote_ip`.
    launch: LaunchCols,
}

/// The string columns of an exec's or snapshot's terminal and standard fds.
#[derive(Debug, Default)]
struct LaunchCols {
    tty: KeyedStrings,
    types: [KeyedStrings; 3],
    protocol: KeyedStrings,
    remote_ip: KeyedIps,
}

impl LaunchCols {
    fn append(&mut self, launch: Option<&Launch>, n: &mut ProcNumbers) {
        let Some(l) = launch else {
            self.tty.append_option(None);
            for t in &mut self.types {
                t.append_option(None);
            }
            self.protocol.append_option(None);
            self.remote_ip.append_null();
            return;
        };
        n.sid = l.session.sid;
        n.bits |= ProcNumbers::SESSION | if l.session.leader { ProcNumbers::LEADER } else { 0 };
        match l.session.tty() {
            Some(tty) => {
                // "pts/1048575" is the longest name Tty writes.
                let mut buf = [0u8; 24];
                let mut w = &mut buf[..];
                let _ = write!(w, "{tty}");
                let len = 24 - w.len();
                self.tty.append(std::str::from_utf8(&buf[..len]).unwrap_or_default());
            }
            None => self.tty.append_option(None),
        }
        for (col, fd) in self.types.iter_mut().zip(&l.stdio) {
            col.append_static(fd.fd_type.name());
        }
        match stdio_peer(&l.stdio) {
            Some(fd) => {
                match protocol_name(fd.protocol) {
                    "" => self.protocol.append_option(None),
                    p => self.protocol.append_static(p),
                }
                self.remote_ip.append(fd.family, &fd.remote.addr);
                n.stdio_port = fd.remote.port;
                n.bits |= ProcNumbers::STDIO_PEER;
            }
            None => {
                self.protocol.append_option(None);
                self.remote_ip.append_null();
            }
        }
    }
}

/// A process row's numbers; `bits` says which it has.
#[derive(Clone, Copy, Debug, Default)]
struct ProcNumbers {
    exe_ino: u64,
    child_start_ns: u64,
    exe_dev: u32,
    exe_nlink: u32,
    child_pid: u32,
    exit_code: u32,
    signal: u32,
    sid: u32,
    stdio_port: u16,
    bits: u8,
}

impl ProcNumbers {
    const EXE: u8 = 1;
    const FORK: u8 = 2;
    const EXIT: u8 = 4;
    const FILELESS: u8 = 8;
    const CORE_DUMP: u8 = 16;
    /// `sid`, `session_leader`.
    const SESSION: u8 = 32;
    const LEADER: u8 = 64;
    /// `stdio_remote_port`.
    const STDIO_PEER: u8 = 128;
}

impl Present for ProcNumbers {
    fn bits(&self) -> u8 {
        self.bits
    }
}

impl ProcessCols {
    fn fields(f: &mut Vec<Field>) {
        use DataType::{Binary, Boolean, UInt32, UInt64, Utf8};
        f.push(Field::new("cmdline", Utf8, true));
        f.push(Field::new("args", list_of(Utf8), true));
        f.push(Field::new("args_raw", Binary, true));
        KeyedBytes::fields("cwd", f);
        f.push(Field::new("exe_ino", UInt64, true));
        f.push(Field::new("exe_dev", UInt32, true));
        f.push(Field::new("exe_nlink", UInt32, true));
        f.push(Field::new("fileless", Boolean, true));
        f.push(Field::new("child_pid", UInt32, true));
        f.push(Field::new("child_start_ns", UInt64, true));
        f.push(Field::new("exit_code", UInt32, true));
        f.push(Field::new("signal", UInt32, true));
        f.push(Field::new("core_dump", Boolean, true));
        f.push(Field::new("tty", Utf8, true));
        f.push(Field::new("sid", UInt32, true));
        f.push(Field::new("session_leader", Boolean, true));
        for name in ["stdin_type", "stdout_type", "stderr_type", "stdio_protocol", "stdio_remote_ip"] {
            f.push(Field::new(name, Utf8, true));
        }
        f.push(Field::new("stdio_remote_port", DataType::UInt16, true));
    }

    fn append(&mut self, ev: &Event<'_>) -> usize {
        let mut n = ProcNumbers::default();
        let (args, cwd) = match ev.body {
            Body::Exec { args, cwd, exe_ino, exe_dev, exe_nlink, .. } => {
                (n.exe_ino, n.exe_dev, n.exe_nlink) = (exe_ino, exe_dev, exe_nlink);
                n.bits = ProcNumbers::EXE | if ev.fileless() { ProcNumbers::FILELESS } else { 0 };
                (Some(args), Some(cwd))
            }
            Body::Snapshot { args, cwd, .. } => (Some(args), Some(cwd)),
            Body::Fork { child_pid, child_start_ns } => {
                (n.child_pid, n.child_start_ns, n.bits) = (child_pid, child_start_ns, ProcNumbers::FORK);
                (None, None)
            }
            Body::Exit { exit_code, signal, core_dump } => {
                (n.exit_code, n.signal) = (exit_code, signal);
                n.bits = ProcNumbers::EXIT | if core_dump { ProcNumbers::CORE_DUMP } else { 0 };
                (None, None)
            }
            Body::Threads | Body::File { .. } | Body::Net { .. } | Body::Syscall { .. } => (None, None),
        };
        self.launch.append(ev.launch(), &mut n);
        self.numbers.push(n);
        self.argv.append(args) + self.cwd.append(cwd) + if ev.launch().is_some() { 24 } else { 0 }
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>, groups: &mut Groups<'_>) {
        groups.finish(&mut self.argv, out);
        groups.finish(&mut self.cwd, out);
        let r = &self.numbers;
        let (exe, fork, exit) = (has(ProcNumbers::EXE), has(ProcNumbers::FORK), has(ProcNumbers::EXIT));
        out.push(optional::<UInt64Type, _>(r, &exe, |n| n.exe_ino));
        out.push(optional::<UInt32Type, _>(r, &exe, |n| n.exe_dev));
        out.push(optional::<UInt32Type, _>(r, &exe, |n| n.exe_nlink));
        out.push(optional_bool(r, &exe, has(ProcNumbers::FILELESS)));
        out.push(optional::<UInt32Type, _>(r, &fork, |n| n.child_pid));
        out.push(optional::<UInt64Type, _>(r, &fork, |n| n.child_start_ns));
        out.push(optional::<UInt32Type, _>(r, &exit, |n| n.exit_code));
        out.push(optional::<UInt32Type, _>(r, &exit, |n| n.signal));
        out.push(optional_bool(r, &exit, has(ProcNumbers::CORE_DUMP)));
        let l = &mut self.launch;
        groups.finish(&mut l.tty, out);
        out.push(optional::<UInt32Type, _>(r, has(ProcNumbers::SESSION), |n| n.sid));
        out.push(optional_bool(r, has(ProcNumbers::SESSION), has(ProcNumbers::LEADER)));
        for t in &mut l.types {
            groups.finish(t, out);
        }
        groups.finish(&mut l.protocol, out);
        groups.finish(&mut l.remote_ip, out);
        out.push(optional::<UInt16Type, _>(r, has(ProcNumbers::STDIO_PEER), |n| n.stdio_port));
        self.numbers.clear();
    }
}

#[derive(Debug, Default)]
pub(crate) struct FileCols {
    path: KeyedBytes,
    path2: KeyedBytes,
    /// `ret`, `ino` ... `owner_gid`.
    numbers: Vec<FileNumbers>,
}

/// A file row's numbers; `bits` says which it has. `flags` is the open, rename or unlink flags.
#[derive(Clone, Copy, Debug, Default)]
struct FileNumbers {
    ret: i64,
    ino: u64,
    owner_uid: i64,
    owner_gid: i64,
    dev: u32,
    flags: u32,
    mode: u32,
    bits: u8,
}

impl FileNumbers {
    const RET: u8 = 1;
    const INODE: u8 = 2;
    const OPEN_FLAGS: u8 = 4;
    const RENAME_FLAGS: u8 = 8;
    const UNLINK_FLAGS: u8 = 16;
    const MODE: u8 = 32;
    const OWNER: u8 = 64;
}

impl Present for FileNumbers {
    fn bits(&self) -> u8 {
        self.bits
    }
}

impl FileCols {
    fn fields(f: &mut Vec<Field>) {
        use DataType::{Int64, UInt32, UInt64};
        f.push(Field::new("ret", Int64, true));
        KeyedBytes::fields("path", f);
        KeyedBytes::fields("path2", f);
        f.push(Field::new("ino", UInt64, true));
        f.push(Field::new("dev", UInt32, true));
        for name in ["open_flags", "rename_flags", "unlink_flags", "mode"] {
            f.push(Field::new(name, UInt32, true));
        }
        f.push(Field::new("owner_uid", Int64, true));
        f.push(Field::new("owner_gid", Int64, true));
    }

    fn append(&mut self, ev: &Event<'_>) -> usize {
        let mut n = FileNumbers::default();
        let (mut path, mut path2) = (None, None);
        if let Body::File { ret, path: p, path2: p2, ino, dev, open_flags, mode, owner_uid, owner_gid } = ev.body {
            (n.ret, n.ino, n.dev, n.flags, n.mode) = (ret, ino, dev, open_flags, mode);
            // -1 (unchanged) stays -1, as in the JSON.
            (n.owner_uid, n.owner_gid) = (i64::from(owner_uid as i32), i64::from(owner_gid as i32));
            path = Some(p);
            n.bits = FileNumbers::RET
                | match ev.kind {
                    Kind::FileOpen => FileNumbers::INODE | FileNumbers::OPEN_FLAGS | FileNumbers::MODE,
                    Kind::FileRename => {
                        path2 = Some(p2);
                        FileNumbers::RENAME_FLAGS
                    }
                    Kind::FileUnlink => FileNumbers::UNLINK_FLAGS,
                    Kind::FileChmod => FileNumbers::MODE,
                    Kind::FileChown => FileNumbers::OWNER,
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
                    | Kind::ProcessSnapshot => 0,
                };
        }
        self.numbers.push(n);
        self.path.append(path) + self.path2.append(path2)
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>, groups: &mut Groups<'_>) {
        let r = &self.numbers;
        out.push(optional::<Int64Type, _>(r, has(FileNumbers::RET), |n| n.ret));
        groups.finish(&mut self.path, out);
        groups.finish(&mut self.path2, out);
        out.push(optional::<UInt64Type, _>(r, has(FileNumbers::INODE), |n| n.ino));
        out.push(optional::<UInt32Type, _>(r, has(FileNumbers::INODE), |n| n.dev));
        for bit in [FileNumbers::OPEN_FLAGS, FileNumbers::RENAME_FLAGS, FileNumbers::UNLINK_FLAGS] {
            out.push(optional::<UInt32Type, _>(r, has(bit), |n| n.flags));
        }
        out.push(optional::<UInt32Type, _>(r, has(FileNumbers::MODE), |n| n.mode));
        out.push(optional::<Int64Type, _>(r, has(FileNumbers::OWNER), |n| n.owner_uid));
        out.push(optional::<Int64Type, _>(r, has(FileNumbers::OWNER), |n| n.owner_gid));
        self.numbers.clear();
    }
}

#[derive(Debug, Default)]
pub(crate) struct NetCols {
    family: KeyedStrings,
    protocol: KeyedStrings,
    local_ip: KeyedIps,
    remote_ip: KeyedIps,
    unix_path: KeyedBytes,
    /// `ret`, the ports, the byte counts.
    numbers: Vec<NetNumbers>,
}

/// A connection row's numbers; `bits` says which it has.
#[derive(Clone, Copy, Debug, Default)]
struct NetNumbers {
    ret: i64,
    bytes_sent: u64,
    bytes_received: u64,
    local_port: u16,
    remote_port: u16,
    bits: u8,
}

impl NetNumbers {
    const RET: u8 = 1;
    const PORTS: u8 = 2;
    const BYTES: u8 = 4;
}

impl Present for NetNumbers {
    fn bits(&self) -> u8 {
        self.bits
    }
}

impl NetCols {
    fn fields(f: &mut Vec<Field>) {
        use DataType::{Int64, UInt16, UInt64, Utf8};
        f.push(Field::new("ret", Int64, true));
        f.push(Field::new("family", Utf8, true));
        f.push(Field::new("protocol", Utf8, true));
        f.push(Field::new("local_ip", Utf8, true));
        f.push(Field::new("local_port", UInt16, true));
        f.push(Field::new("remote_ip", Utf8, true));
        f.push(Field::new("remote_port", UInt16, true));
        KeyedBytes::fields("unix_path", f);
        f.push(Field::new("bytes_sent", UInt64, true));
        f.push(Field::new("bytes_received", UInt64, true));
    }

    fn append(&mut self, ev: &Event<'_>) -> usize {
        let Body::Net { ret, family, protocol, local, remote, unix_path, bytes_sent, bytes_received } = ev.body else {
            self.family.append_option(None);
            self.protocol.append_option(None);
            self.local_ip.append_null();
            self.remote_ip.append_null();
            self.unix_path.append(None);
            self.numbers.push(NetNumbers::default());
            return 0;
        };
        let closed = ev.kind == Kind::NetClose;
        let mut n = NetNumbers { ret, bytes_sent, bytes_received, bits: NetNumbers::RET, ..NetNumbers::default() };
        if closed {
            n.bits |= NetNumbers::BYTES;
        }
        self.family.append_static(match family {
            2 => "inet",
            10 => "inet6",
            1 => "unix",
            _ => "other",
        });
        match protocol {
            0 => self.protocol.append_option(None),
            6 => self.protocol.append_static("tcp"),
            17 => self.protocol.append_static("udp"),
            _ => self.protocol.append_static("other"),
        }
        let mut size = 0;
        if family == 1 {
            self.local_ip.append_null();
            self.remote_ip.append_null();
            size += self.unix_path.append(Some(unix_path));
        } else {
            self.local_ip.append(family, &local.addr);
            self.remote_ip.append(family, &remote.addr);
            (n.local_port, n.remote_port) = (local.port, remote.port);
            n.bits |= NetNumbers::PORTS;
            self.unix_path.append(None);
            size += 48;
        }
        self.numbers.push(n);
        size
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>, groups: &mut Groups<'_>) {
        let r = &self.numbers;
        out.push(optional::<Int64Type, _>(r, has(NetNumbers::RET), |n| n.ret));
        groups.finish(&mut self.family, out);
        groups.finish(&mut self.protocol, out);
        groups.finish(&mut self.local_ip, out);
        out.push(optional::<UInt16Type, _>(r, has(NetNumbers::PORTS), |n| n.local_port));
        groups.finish(&mut self.remote_ip, out);
        out.push(optional::<UInt16Type, _>(r, has(NetNumbers::PORTS), |n| n.remote_port));
        groups.finish(&mut self.unix_path, out);
        out.push(optional::<UInt64Type, _>(r, has(NetNumbers::BYTES), |n| n.bytes_sent));
        out.push(optional::<UInt64Type, _>(r, has(NetNumbers::BYTES), |n| n.bytes_received));
        self.numbers.clear();
    }
}

/// Names of the kernel table's string columns, in schema order.
const KERNEL_STRINGS: [&str; 8] = ["source", "target", "fstype", "path", "name", "new_root", "put_old", "params"];
/// Decoded integer arguments of the kernel table, in schema order.
const KERNEL_U64: [&str; 8] = [
    "mount_flags",
    "cap_effective",
    "cap_permitted",
    "cap_inheritable",
    "ns_type",
    "ns_inode",
    "unshare_flags",
    "bpf_cmd",
];

#[derive(Debug, Default)]
pub(crate) struct KernelCols {
    syscall_nr: UInt32Builder,
    ret: Int64Builder,
    syscall_args: ListBuilder<UInt64Builder>,
    strings: [KeyedBytes; 8],
    numbers: [UInt64Builder; 8],
    ns_fd: Int32Builder,
    ptrace_request: Int64Builder,
    target_pid: Int32Builder,
}

impl KernelCols {
    fn fields(f: &mut Vec<Field>) {
        use DataType::{Int32, Int64, UInt32, UInt64};
        f.push(Field::new("syscall_nr", UInt32, true));
        f.push(Field::new("ret", Int64, true));
        f.push(Field::new("syscall_args", list_of(UInt64), true));
        for name in KERNEL_STRINGS {
            KeyedBytes::fields(name, f);
        }
        for name in KERNEL_U64 {
            f.push(Field::new(name, UInt64, true));
        }
        f.push(Field::new("ns_fd", Int32, true));
        f.push(Field::new("ptrace_request", Int64, true));
        f.push(Field::new("target_pid", Int32, true));
    }

    fn append(&mut self, ev: &Event<'_>) -> usize {
        let mut strings: [Option<&[u8]>; 8] = [None; 8];
        let mut numbers: [Option<u64>; 8] = [None; 8];
        let (mut ns_fd, mut ptrace_request, mut target_pid) = (None, None, None);
        let Body::Syscall { nr, ret, args, str1, str2, str3 } = ev.body else {
            self.syscall_nr.append_null();
            self.ret.append_null();
            self.syscall_args.append(false);
            for b in &mut self.strings {
                b.append(None);
            }
            for b in &mut self.numbers {
                b.append_null();
            }
            self.ns_fd.append_null();
            self.ptrace_request.append_null();
            self.target_pid.append_null();
            return 0;
        };
        // Slots follow KERNEL_STRINGS / KERNEL_U64; the meanings follow docs/events.md.
        match ev.kind {
            Kind::Mount => {
                (strings[0], strings[1], strings[2]) = (Some(str1), Some(str2), Some(str3));
                numbers[0] = Some(args[3]);
            }
            Kind::Umount => strings[1] = Some(str1),
            Kind::Chroot => strings[3] = Some(str1),
            Kind::MemfdCreate => strings[4] = Some(str1),
            Kind::PivotRoot => (strings[5], strings[6]) = (Some(str1), Some(str2)),
            Kind::ModuleLoad => strings[7] = Some(str1),
            Kind::Capset => (numbers[1], numbers[2], numbers[3]) = (Some(args[2]), Some(args[3]), Some(args[4])),
            Kind::Setns => {
                ns_fd = Some(args[0] as i32);
                (numbers[4], numbers[5]) = (Some(args[1]), Some(args[5]));
            }
            Kind::Unshare => numbers[6] = Some(args[0]),
            Kind::Ptrace => (ptrace_request, target_pid) = (Some(args[0] as i64), Some(args[1] as i32)),
            Kind::Bpf => numbers[7] = Some(args[0]),
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
        self.syscall_nr.append_value(nr);
        self.ret.append_value(ret);
        self.syscall_args.values().append_slice(&args);
        self.syscall_args.append(true);
        let mut size = 48;
        for (b, v) in self.strings.iter_mut().zip(strings) {
            size += b.append(v);
        }
        for (b, v) in self.numbers.iter_mut().zip(numbers) {
            b.append_option(v);
        }
        self.ns_fd.append_option(ns_fd);
        self.ptrace_request.append_option(ptrace_request);
        self.target_pid.append_option(target_pid);
        size
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>, groups: &mut Groups<'_>) {
        finish(&mut self.syscall_nr, out);
        finish(&mut self.ret, out);
        finish(&mut self.syscall_args, out);
        for b in &mut self.strings {
            groups.finish(b, out);
        }
        for b in &mut self.numbers {
            finish(b, out);
        }
        finish(&mut self.ns_fd, out);
        finish(&mut self.ptrace_request, out);
        finish(&mut self.target_pid, out);
    }
}
