//! Synthetic ring-buffer records, built from the `tracelake_bpf::abi` mirror
//! of `bpf/include/tracelake.h` so they stay in step with the kernel's layout.

use tracelake_bpf::abi;

/// Executable of the exec record.
pub const EXE: &[u8] = b"/usr/bin/python3.11";
/// A 60-byte argv, NUL separated as the kernel copies it from the process.
pub const ARGV: &[u8; 60] = b"python3\0-m\0http.server\0--bind\x00127.0.0.1\x008080\0--directory\0/s\0";
pub const CWD: &[u8] = b"/home/app";
/// A 30-byte path under a watched read prefix: the kind of open that is reported.
pub const OPEN_PATH: &[u8; 30] = b"/var/run/secrets/tokens/vault1";

/// Size of the ring buffer's own per-record header (BPF_RINGBUF_HDR_SZ).
const RINGBUF_HDR: usize = 8;

fn header(kind: u32, size: usize, seq: u32, comm: &[u8]) -> abi::Header {
    let mut c = [0u8; abi::COMM_LEN];
    c[..comm.len()].copy_from_slice(comm);
    abi::Header {
        // Distinct stamps and pids, so rendered numbers vary like real ones.
        ktime_ns: 5_123_456_789_000 + u64::from(seq) * 1_337,
        cgroup_id: 8_821,
        proc_start_ns: 5_000_000_000_000,
        kind,
        size: u32::try_from(size).expect("record size fits u32"),
        pid: 41_000 + seq % 1000,
        tgid: 41_000 + seq % 1000,
        ppid: 1_204,
        uid: 1_000,
        gid: 1_000,
        euid: 1_000,
        egid: 1_000,
        pidns: 4_026_531_836,
        mntns: 4_026_532_411,
        flags: abi::F_AGGREGATED,
        comm: c,
    }
}

/// The record's bytes: its fixed part, then the payload strings in order.
pub fn record<T: abi::Record>(fixed: &T, payload: &[&[u8]]) -> Vec<u8> {
    // SAFETY: abi records are #[repr(C)] integers and byte arrays with
    // explicit padding fields, so all size_of::<T>() bytes are initialised.
    let bytes = unsafe { std::slice::from_raw_parts((fixed as *const T).cast::<u8>(), size_of::<T>()) };
    let mut v = bytes.to_vec();
    for p in payload {
        v.extend_from_slice(p);
    }
    v
}

fn len32(b: &[u8]) -> u32 {
    u32::try_from(b.len()).expect("payload fits u32")
}

pub fn exec(seq: u32) -> Vec<u8> {
    let size = size_of::<abi::Exec>() + EXE.len() + ARGV.len() + CWD.len();
    let r = abi::Exec {
        h: abi::Header { flags: 0, ..header(abi::kind::EXEC, size, seq, b"python3") },
        exe_ino: 1_318_009,
        exe_dev: 0x0080_0001,
        exe_nlink: 1,
        path_len: len32(EXE),
        args_len: len32(ARGV),
        cwd_len: len32(CWD),
        // A container's process: no terminal, pipes from the runtime.
        tty: 0,
        sid: 1,
        session_leader: 0,
        stdio: [abi::Stdio { fd_type: abi::fd::PIPE, ..abi::Stdio::default() }; 3],
    };
    record(&r, &[EXE, ARGV, CWD])
}

pub fn file_open(seq: u32) -> Vec<u8> {
    let size = size_of::<abi::File>() + OPEN_PATH.len();
    let r = abi::File {
        h: header(abi::kind::FILE_OPEN, size, seq, b"vault-agent"),
        ret: 7,
        ino: 2_210_377,
        dev: 0x0080_0001,
        open_flags: 0o2_000_000, // O_RDONLY | O_CLOEXEC
        mode: 0,
        owner_uid: 0,
        owner_gid: 0,
        path_len: len32(OPEN_PATH),
        path2_len: 0,
        _pad0: 0,
    };
    record(&r, &[OPEN_PATH])
}

pub fn net_connect(seq: u32) -> Vec<u8> {
    let mut saddr = [0u8; 16];
    saddr[..4].copy_from_slice(&[10, 244, 1, 17]);
    let mut daddr = [0u8; 16];
    daddr[..4].copy_from_slice(&[93, 184, 216, 34]);
    let r = abi::Net {
        h: header(abi::kind::NET_CONNECT, size_of::<abi::Net>(), seq, b"curl"),
        ret: 0,
        bytes_sent: 0,
        bytes_received: 0,
        saddr,
        daddr,
        family: 2,   // AF_INET
        protocol: 6, // IPPROTO_TCP
        sport: 43_512,
        dport: 443,
        fd: 5,
        path_len: 0,
    };
    record(&r, &[])
}

/// Records back to back as the reader finds them in the ring buffer: each
/// after an 8-byte ring header, starting on an 8-byte boundary.
#[derive(Debug)]
pub struct Ring {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Ring {
    pub fn new(records: impl IntoIterator<Item = Vec<u8>>) -> Ring {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for r in records {
            buf.resize(buf.len() + RINGBUF_HDR, 0);
            spans.push((buf.len(), r.len()));
            buf.extend_from_slice(&r);
            buf.resize(buf.len().next_multiple_of(8), 0);
        }
        Ring { buf, spans }
    }

    /// `n` records of one kind.
    pub fn of(n: u32, make: fn(u32) -> Vec<u8>) -> Ring {
        Ring::new((0..n).map(make))
    }

    /// `n` records cycling exec, file open and connect.
    pub fn mixed(n: u32) -> Ring {
        let makers: [fn(u32) -> Vec<u8>; 3] = [exec, file_open, net_connect];
        Ring::new((0..n).map(|i| makers[i as usize % makers.len()](i)))
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|&(off, len)| &self.buf[off..off + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracelake_model::{Body, Kind};
    use tracelake_sensor::decode::decode;

    #[test]
    fn synthetic_records_decode_to_what_was_built() {
        let ring = Ring::mixed(6);
        let kinds: Vec<_> = ring.records().map(|r| decode(r).expect("decodes").kind).collect();
        assert_eq!(kinds, [Kind::Exec, Kind::FileOpen, Kind::NetConnect].repeat(2));

        let rec = exec(0);
        let Body::Exec { exe, args, cwd, .. } = decode(&rec).expect("exec").body else { panic!("not an exec body") };
        assert_eq!((exe, args, cwd), (EXE, &ARGV[..], CWD));
        let rec = file_open(0);
        let Body::File { path, .. } = decode(&rec).expect("open").body else { panic!("not a file body") };
        assert_eq!(path, OPEN_PATH);
        let rec = net_connect(0);
        let Body::Net { remote, .. } = decode(&rec).expect("connect").body else { panic!("not a net body") };
        assert_eq!((remote.addr[..4].to_vec(), remote.port), (vec![93, 184, 216, 34], 443));
    }
}
