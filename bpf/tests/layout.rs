//! The alignchecker: every `#[repr(C)]` mirror must match, field by field,
//! the struct the C compiler laid out, as recorded in the object's BTF.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::process::Command;

use serde_json::Value;
use tracelake_bpf::abi::*;

/// struct name -> (size, field name -> byte offset), read with bpftool: an
/// independent BTF parser, not our own code.
fn btf_structs() -> HashMap<String, (u64, HashMap<String, u64>)> {
    let out = Command::new("bpftool")
        .args(["-j", "btf", "dump", "file", tracelake_bpf::SENSOR_OBJECT_PATH])
        .output()
        .expect("run bpftool (installed by the test setup)");
    assert!(out.status.success(), "bpftool failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    let mut structs = HashMap::new();
    for t in v["types"].as_array().expect("types") {
        if t["kind"] != "STRUCT" {
            continue;
        }
        let name = t["name"].as_str().unwrap_or_default().to_string();
        let mut fields = HashMap::new();
        for m in t["members"].as_array().expect("members") {
            fields.insert(m["name"].as_str().unwrap().to_string(), m["bits_offset"].as_u64().unwrap() / 8);
        }
        structs.insert(name, (t["size"].as_u64().unwrap(), fields));
    }
    structs
}

macro_rules! check {
    ($btf:expr, $cname:literal, $ty:ty, [$($field:ident),* $(,)?]) => {{
        let (size, fields) = $btf.get($cname).unwrap_or_else(|| panic!("struct {} not in BTF", $cname));
        assert_eq!(*size as usize, size_of::<$ty>(), "size of struct {}", $cname);
        let mut seen = 0;
        $(
            let c = fields.get(stringify!($field)).unwrap_or_else(|| panic!("{}.{} not in BTF", $cname, stringify!($field)));
            assert_eq!(*c as usize, offset_of!($ty, $field), "offset of {}.{}", $cname, stringify!($field));
            seen += 1;
        )*
        assert_eq!(seen, fields.len(), "struct {} has fields the Rust mirror lacks: {:?}", $cname, fields.keys());
    }};
}

#[test]
fn records_match_btf() {
    let btf = btf_structs();
    check!(
        btf,
        "tl_header",
        Header,
        [
            ktime_ns,
            cgroup_id,
            proc_start_ns,
            kind,
            size,
            pid,
            tgid,
            ppid,
            uid,
            gid,
            euid,
            egid,
            pidns,
            mntns,
            flags,
            comm
        ]
    );
    check!(
        btf,
        "tl_exec",
        Exec,
        [h, exe_ino, exe_dev, exe_nlink, path_len, args_len, cwd_len, tty, sid, session_leader, stdio]
    );
    check!(btf, "tl_stdio", Stdio, [addr, rdev, family, port, protocol, fd_type, _pad0]);
    check!(btf, "tl_fork", Fork, [h, child_start_ns, child_pid, _pad0]);
    check!(btf, "tl_exit", Exit, [h, exit_code, signal, core_dump, _pad0]);
    check!(
        btf,
        "tl_file",
        File,
        [h, ret, ino, dev, open_flags, mode, owner_uid, owner_gid, path_len, path2_len, _pad0]
    );
    check!(
        btf,
        "tl_net",
        Net,
        [h, ret, bytes_sent, bytes_received, saddr, daddr, family, protocol, sport, dport, fd, path_len]
    );
    check!(btf, "tl_syscall", Syscall, [h, ret, args, nr, str1_len, str2_len, str3_len]);
    check!(btf, "tl_agg_key", AggKey, [cgroup_id, tgid, kind, object]);
    check!(btf, "tl_agg_value", AggValue, [count, first_ns, last_ns, _reserved, _pad0]);
    check!(
        btf,
        "tl_config",
        Config,
        [classes, scope, self_tgid, host_mntns, argv_max, aggregate, generation, file_default, read_watch, _pad0]
    );
    check!(btf, "tl_prefix_key", PrefixKey, [prefixlen, data]);
    check!(btf, "tl_stats", Stats, [emitted, dropped, aggregated, agg_full, filtered]);
    check!(btf, "tl_cgroup_path", CgroupPath, [created_ns, len, truncated, path]);
}

/// The standard-fd types in the header are the ones the Rust side decodes.
#[test]
fn fd_types_match_header() {
    let header = include_str!("../include/tracelake.h");
    let pairs = [
        ("TL_FD_NONE", fd::NONE),
        ("TL_FD_SOCKET", fd::SOCKET),
        ("TL_FD_PIPE", fd::PIPE),
        ("TL_FD_CHAR", fd::CHAR),
        ("TL_FD_FILE", fd::FILE),
        ("TL_FD_OTHER", fd::OTHER),
    ];
    for (name, id) in pairs {
        let line = header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing"));
        let value: u8 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(value, id, "{name}");
    }
}

/// The kind ids in the header are the ones the Rust side decodes.
#[test]
fn kind_ids_match_header() {
    let header = include_str!("../include/tracelake.h");
    let pairs = [
        ("TL_KIND_EXEC", kind::EXEC),
        ("TL_KIND_FORK", kind::FORK),
        ("TL_KIND_EXIT", kind::EXIT),
        ("TL_KIND_CLONE_THREAD", kind::CLONE_THREAD),
        ("TL_KIND_FILE_OPEN", kind::FILE_OPEN),
        ("TL_KIND_FILE_RENAME", kind::FILE_RENAME),
        ("TL_KIND_FILE_UNLINK", kind::FILE_UNLINK),
        ("TL_KIND_FILE_CHMOD", kind::FILE_CHMOD),
        ("TL_KIND_FILE_CHOWN", kind::FILE_CHOWN),
        ("TL_KIND_NET_CONNECT", kind::NET_CONNECT),
        ("TL_KIND_NET_ACCEPT", kind::NET_ACCEPT),
        ("TL_KIND_NET_LISTEN", kind::NET_LISTEN),
        ("TL_KIND_NET_CLOSE", kind::NET_CLOSE),
        ("TL_KIND_NET_UDP_SEND", kind::NET_UDP_SEND),
        ("TL_KIND_NET_BIND", kind::NET_BIND),
        ("TL_KIND_SETUID", kind::SETUID),
        ("TL_KIND_SETGID", kind::SETGID),
        ("TL_KIND_CAPSET", kind::CAPSET),
        ("TL_KIND_PTRACE", kind::PTRACE),
        ("TL_KIND_MOUNT", kind::MOUNT),
        ("TL_KIND_UMOUNT", kind::UMOUNT),
        ("TL_KIND_UNSHARE", kind::UNSHARE),
        ("TL_KIND_SETNS", kind::SETNS),
        ("TL_KIND_MODULE_LOAD", kind::MODULE_LOAD),
        ("TL_KIND_BPF", kind::BPF),
        ("TL_KIND_MEMFD_CREATE", kind::MEMFD_CREATE),
        ("TL_KIND_CHROOT", kind::CHROOT),
        ("TL_KIND_PIVOT_ROOT", kind::PIVOT_ROOT),
    ];
    for (name, id) in pairs {
        let line = header
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} =")))
            .unwrap_or_else(|| panic!("{name} missing"));
        let value: u32 = line.split('=').nth(1).unwrap().split(',').next().unwrap().trim().parse().unwrap();
        assert_eq!(value, id, "{name}");
    }
}
