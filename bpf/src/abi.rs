//! `#[repr(C)]` mirror of `bpf/include/tracelake.h`. Keep field order, types
//! and padding identical: `tests/layout.rs` compares them with the BTF.

pub const COMM_LEN: usize = 16;
pub const PATH_MAX: usize = 4096;
pub const ARGV_MAX: usize = 4096;
pub const STR_MAX: usize = 256;
pub const PREFIX_MAX: usize = 256;
pub const KIND_MAX: usize = 64;
pub const CGROUP_PATH_MAX: usize = 256;

pub const CLASS_PROCESS: u32 = 1 << 0;
pub const CLASS_FILE: u32 = 1 << 1;
pub const CLASS_NETWORK: u32 = 1 << 2;
pub const CLASS_PRIVILEGE: u32 = 1 << 3;

pub const SCOPE_ALL: u32 = 0;
pub const SCOPE_CONTAINERS: u32 = 1;
pub const SCOPE_CGROUPS: u32 = 2;

pub const FILE_IGNORE: u32 = 0;
pub const FILE_WRITES: u32 = 1;
pub const FILE_READS: u32 = 2;

pub const F_AGGREGATED: u32 = 1 << 0;
pub const F_PATH_TRUNC: u32 = 1 << 1;
pub const F_ARGS_TRUNC: u32 = 1 << 2;
pub const F_CWD_TRUNC: u32 = 1 << 3;
pub const F_EXE_MEMFD: u32 = 1 << 4;
pub const F_EXE_DELETED: u32 = 1 << 5;
pub const F_STR_TRUNC: u32 = 1 << 6;
pub const F_AGG_FULL: u32 = 1 << 7;

/// Event kind ids (`enum tl_kind`): fixed forever, never reused.
pub mod kind {
    pub const EXEC: u32 = 1;
    pub const FORK: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const CLONE_THREAD: u32 = 4;
    pub const FILE_OPEN: u32 = 10;
    pub const FILE_RENAME: u32 = 11;
    pub const FILE_UNLINK: u32 = 12;
    pub const FILE_CHMOD: u32 = 13;
    pub const FILE_CHOWN: u32 = 14;
    pub const NET_CONNECT: u32 = 20;
    pub const NET_ACCEPT: u32 = 21;
    pub const NET_LISTEN: u32 = 22;
    pub const NET_CLOSE: u32 = 23;
    pub const NET_UDP_SEND: u32 = 24;
    pub const NET_BIND: u32 = 25;
    pub const SETUID: u32 = 30;
    pub const SETGID: u32 = 31;
    pub const CAPSET: u32 = 32;
    pub const PTRACE: u32 = 33;
    pub const MOUNT: u32 = 34;
    pub const UMOUNT: u32 = 35;
    pub const UNSHARE: u32 = 36;
    pub const SETNS: u32 = 37;
    pub const MODULE_LOAD: u32 = 38;
    pub const BPF: u32 = 39;
    pub const MEMFD_CREATE: u32 = 40;
    pub const CHROOT: u32 = 41;
    pub const PIVOT_ROOT: u32 = 42;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub proc_start_ns: u64,
    pub kind: u32,
    pub size: u32,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub pidns: u32,
    pub mntns: u32,
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
}

/// `tl_stdio.fd_type` (`TL_FD_*`).
pub mod fd {
    pub const NONE: u8 = 0;
    pub const SOCKET: u8 = 1;
    pub const PIPE: u8 = 2;
    pub const CHAR: u8 = 3;
    pub const FILE: u8 = 4;
    pub const OTHER: u8 = 5;
}

/// `struct tl_stdio`: one of fds 0, 1, 2 at exec.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stdio {
    pub addr: [u8; 16],
    pub rdev: u32,
    pub family: u16,
    pub port: u16,
    pub protocol: u16,
    pub fd_type: u8,
    pub _pad0: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Exec {
    pub h: Header,
    pub exe_ino: u64,
    pub exe_dev: u32,
    pub exe_nlink: u32,
    pub path_len: u32,
    pub args_len: u32,
    pub cwd_len: u32,
    pub tty: u32,
    pub sid: u32,
    pub session_leader: u32,
    pub stdio: [Stdio; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Fork {
    pub h: Header,
    pub child_start_ns: u64,
    pub child_pid: u32,
    pub _pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Exit {
    pub h: Header,
    pub exit_code: u32,
    pub signal: u32,
    pub core_dump: u32,
    pub _pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct File {
    pub h: Header,
    pub ret: i64,
    pub ino: u64,
    pub dev: u32,
    pub open_flags: u32,
    pub mode: u32,
    pub owner_uid: u32,
    pub owner_gid: u32,
    pub path_len: u32,
    pub path2_len: u32,
    pub _pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Net {
    pub h: Header,
    pub ret: i64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub family: u16,
    pub protocol: u16,
    pub sport: u16,
    pub dport: u16,
    pub fd: u32,
    pub path_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Syscall {
    pub h: Header,
    pub ret: i64,
    pub args: [u64; 6],
    pub nr: u32,
    pub str1_len: u32,
    pub str2_len: u32,
    pub str3_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AggKey {
    pub cgroup_id: u64,
    pub tgid: u32,
    pub kind: u32,
    pub object: [u64; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AggValue {
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub _reserved: u32,
    pub _pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    pub classes: u32,
    pub scope: u32,
    pub self_tgid: u32,
    pub host_mntns: u32,
    pub argv_max: u32,
    pub aggregate: u32,
    pub generation: u32,
    pub file_default: u32,
    pub read_watch: u32,
    pub _pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PrefixKey {
    pub prefixlen: u32,
    pub data: [u8; PREFIX_MAX],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub emitted: [u64; KIND_MAX],
    pub dropped: [u64; KIND_MAX],
    pub aggregated: [u64; KIND_MAX],
    pub agg_full: u64,
    pub filtered: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats { emitted: [0; KIND_MAX], dropped: [0; KIND_MAX], aggregated: [0; KIND_MAX], agg_full: 0, filtered: 0 }
    }
}

/// `struct tl_cgroup_path`: the value of `tl_cgroup_paths` (cgroup v2 id -> path).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupPath {
    pub created_ns: u64,
    pub len: u32,
    pub truncated: u32,
    pub path: [u8; CGROUP_PATH_MAX],
}

impl CgroupPath {
    /// The path, unless it was truncated or is not UTF-8 (then the caller
    /// must resolve the id another way: a cut path names another cgroup).
    pub fn path(&self) -> Option<&str> {
        let bytes = self.path.get(..self.len as usize)?;
        (self.truncated == 0).then(|| std::str::from_utf8(bytes).ok()).flatten()
    }
}

/// Reads a `#[repr(C)]` record from the start of `bytes`, or None when the
/// buffer is too short. Ring-buffer records are 8-byte aligned, but an
/// unaligned read keeps this correct for any slice.
#[inline]
pub fn read_record<T: Record>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length was checked above and T is a plain-old-data record
    // (the Record trait is only implemented for such types below).
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Marker for records made only of integers and byte arrays, for which every
/// bit pattern is valid.
pub trait Record: Copy {}
impl Record for Header {}
impl Record for Stdio {}
impl Record for Exec {}
impl Record for Fork {}
impl Record for Exit {}
impl Record for File {}
impl Record for Net {}
impl Record for Syscall {}
impl Record for AggKey {}
impl Record for AggValue {}
impl Record for Config {}
impl Record for PrefixKey {}
impl Record for Stats {}
impl Record for CgroupPath {}

// SAFETY: every record above is #[repr(C)], made only of integers and byte
// arrays with explicit padding fields, so any bit pattern is a valid value
// and there are no implicit padding bytes: what aya::Pod requires.
mod pod {
    use super::*;
    // SAFETY: see above.
    unsafe impl aya::Pod for AggKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for AggValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Stats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PrefixKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CgroupPath {}
}
