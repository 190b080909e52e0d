#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::os::unix::fs::MetadataExt;

use super::*;
use crate::unresolved::Reason;
use crate::{Runtime, parse_cgroup_path};
use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available, unified_cgroup};

fn root() -> PathBuf {
    crate::EnricherConfig::default().cgroup_root()
}

#[test]
fn own_cgroup_and_root_resolve() {
    let idx = CgroupIndex::open(&root(), 1000, Duration::from_secs(60)).unwrap();
    let (dir, id) = unified_cgroup(std::process::id()).unwrap();
    let expected = format!("/{}", dir.strip_prefix(root()).unwrap().display());
    let expected = if expected == "/" { expected } else { expected.trim_end_matches('/').to_string() };
    assert_eq!(idx.path(id).as_deref(), Some(expected.as_str()));
    let root_id = std::fs::metadata(root()).unwrap().ino();
    assert_eq!(idx.path(root_id).as_deref(), Some("/"));
    assert_eq!(idx.path(0xdead_beef_dead), None, "unknown ids resolve to nothing");
    assert_eq!(idx.path(0xdead_beef_dead), None, "and are cached as such");
    let before = idx.counters().read();
    assert!(before.misses >= 3, "own or root, and twice the unknown id: {before:?}");
    assert_eq!(idx.path(id).as_deref(), Some(expected.as_str()));
    let after = idx.counters().read();
    assert_eq!((after.hits, after.misses), (before.hits + 1, before.misses), "a repeat is a hit");
}

/// A real containerd container: its cgroup id (what the sensor reports)
/// resolves to its path, which names the container; after the container is
/// gone the cached identity remains.
#[test]
fn a_real_container_is_identified_from_its_cgroup_id() {
    lab_available().expect("container lab prerequisites (scripts/setup.sh)");
    let lab = Lab::start().unwrap();
    let id = format!("{:064x}", 0x7ac0_u128 << 64 | u128::from(std::process::id()));
    let c = lab.run(&ContainerSpec::new(id.clone(), ["sleep", "30"])).unwrap();
    let idx = CgroupIndex::open(&root(), 1000, Duration::from_secs(60)).unwrap();
    let path = idx.path(c.cgroup_id()).expect("container cgroup resolves");
    let r = parse_cgroup_path(&path).expect("layout recognised");
    assert_eq!(r.container_id, id);
    assert_eq!(r.runtime, Runtime::Containerd);
    assert_eq!(r.namespace.as_deref(), Some(lab.namespace()));
    let cg = c.cgroup_id();
    c.stop().unwrap();
    assert_eq!(idx.path(cg), Some(path), "identity outlives the container while cached");
    let fresh = CgroupIndex::open(&root(), 1000, Duration::from_secs(60)).unwrap();
    assert_eq!(fresh.path(cg), None, "a removed cgroup no longer resolves without the cache");
}

/// The sensor's record answers before open_by_handle_at: a recorded id resolves even when no cgroup has it.
#[test]
fn recorded_paths_answer_first() {
    #[derive(Debug)]
    struct Fixed;
    impl CgroupPaths for Fixed {
        fn path(&self, id: u64) -> Option<String> {
            (id == 0xfeed_0001).then(|| "/kubepods/besteffort/podabc/0123".to_string())
        }
    }
    let idx = CgroupIndex::open(&root(), 1000, Duration::from_secs(60)).unwrap().with_recorded(Arc::new(Fixed));
    assert_eq!(idx.path(0xfeed_0001).as_deref(), Some("/kubepods/besteffort/podabc/0123"));
    assert_eq!(idx.path_or_reason(0xfeed_0002), Err(Reason::CgroupGone));
}

/// Drops CAP_DAC_READ_SEARCH from this thread's effective set (capabilities are per thread, so other tests
/// are untouched), as the agent runs without it.
fn drop_dac_read_search() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header { version: 0x2008_0522, pid: 0 };
    let mut d = [Data::default(); 2];
    // SAFETY: valid header and two data structs, as capget/capset (v3) expect.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()), 0);
        // CAP_DAC_READ_SEARCH is capability 2 (linux/capability.h).
        d[0].effective &= !(1 << 2);
        assert_eq!(libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()), 0);
    }
}

/// Without CAP_DAC_READ_SEARCH, open_by_handle_at is refused: cgroups that existed before (here, this test's
/// own) are found by walking the tree, and an unknown id says why it is unknown.
#[test]
fn without_dac_read_search_the_tree_walk_names_existing_cgroups() {
    drop_dac_read_search();
    let idx = CgroupIndex::open(&root(), 1000, Duration::from_secs(60)).unwrap();
    let (dir, id) = unified_cgroup(std::process::id()).unwrap();
    let expected = format!("/{}", dir.strip_prefix(root()).unwrap().display());
    let expected = if expected == "/" { expected } else { expected.trim_end_matches('/').to_string() };
    assert_eq!(idx.path(id).as_deref(), Some(expected.as_str()));
    assert!(idx.handles_denied(), "open_by_handle_at was refused, so the walk answered");
    assert_eq!(idx.path_or_reason(0xdead_beef_dead), Err(Reason::PermissionDenied));
}
