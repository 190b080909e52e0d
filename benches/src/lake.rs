//! The lake benchmarks' input, shared by `benches/lake.rs` (criterion) and `src/bin/lake_steady.rs` (a fixed
//! number of files, for instruction counts under callgrind, which criterion's timed loop does not give).

use std::sync::Arc;
use std::time::Duration;

use tracelake_enricher::kube::{Workload, WorkloadKind, WorkloadSource};
use tracelake_enricher::{CgroupIdentity, ContainerMeta, ContainerRef, Resolved, Runtime};
use tracelake_model::json::{Ancestor, Identity, JsonContext};
use tracelake_model::{BootClock, Endpoint, Kind, OwnedBody, OwnedEvent, Subject};
use tracelake_sinks::parquet::LakeConfig;

pub const EVENTS: u64 = 100_000;

fn subject(i: u64) -> Subject {
    let pid = 2000 + (i % 700) as u32;
    Subject {
        ktime_ns: 1_000_000_000 + i * 10_000,
        cgroup_id: 9000 + i % 40,
        proc_start_ns: 77_000 + u64::from(pid),
        pid,
        tgid: pid,
        ppid: 1900 + (i % 50) as u32,
        uid: 1000,
        gid: 1000,
        comm: *b"python3\0\0\0\0\0\0\0\0\0",
        ..Subject::default()
    }
}

/// Realistic shapes: exec with a 5-argument command line, a file open
/// under a pod volume, a TCP connect to a service IP; one of each in turn.
pub fn events() -> Vec<OwnedEvent> {
    (0..EVENTS)
        .map(|i| {
            let (kind, body, strings): (Kind, OwnedBody, [Vec<u8>; 3]) = match i % 3 {
                0 => (
                    Kind::Exec,
                    OwnedBody::Exec { exe_ino: 1234 + i % 100, exe_dev: 2049, exe_nlink: 1, launch: None },
                    [
                        b"/usr/local/bin/python3.11".to_vec(),
                        format!("python3\0-m\0app.worker\0--queue\0jobs-{}\0", i % 17).into_bytes(),
                        b"/srv/app".to_vec(),
                    ],
                ),
                1 => (
                    Kind::FileOpen,
                    OwnedBody::File {
                        ret: 5,
                        ino: 5000 + i,
                        dev: 2049,
                        open_flags: 0o1101,
                        mode: 0o644,
                        owner_uid: 0,
                        owner_gid: 0,
                    },
                    [format!("/var/lib/app/data/cache-{}.db", i % 300).into_bytes(), Vec::new(), Vec::new()],
                ),
                _ => {
                    let remote = Endpoint {
                        addr: [10, 96, (i % 4) as u8, (i % 200) as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        port: 5432,
                    };
                    let local = Endpoint {
                        addr: [10, 244, 1, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        port: 40000 + (i % 20000) as u16,
                    };
                    (
                        Kind::NetConnect,
                        OwnedBody::Net {
                            ret: 0,
                            family: 2,
                            protocol: 6,
                            local,
                            remote,
                            bytes_sent: 0,
                            bytes_received: 0,
                        },
                        [Vec::new(), Vec::new(), Vec::new()],
                    )
                }
            };
            OwnedEvent { kind, subject: subject(i), flags: 0, count: 1, aggregate: None, body, strings }
        })
        .collect()
}

const CONTAINERS: [&str; 4] = [
    "3f9a1c0e5b7d2a4c6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
    "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
    "1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef",
];

/// The enricher's answer for container `i`, as the pipeline has it: identities come from `Resolved`, stamped
/// with the shared values their strings were read from (the lake interns them by that stamp).
pub fn resolved(i: usize) -> Resolved {
    let pod_uid = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
    let container = ContainerRef {
        runtime: Runtime::Containerd,
        container_id: CONTAINERS[i % 4].into(),
        pod_uid: Some(pod_uid.into()),
        qos: Some("burstable"),
        namespace: None,
    };
    let path =
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c.slice/cri-containerd-3f9a.scope";
    let meta = ContainerMeta {
        id: CONTAINERS[i % 4].into(),
        image: "registry.example.com/payments/worker:2.14.1".into(),
        container_name: Some("worker".into()),
        pod_name: Some("worker-6c9f7d8b5-x2k4q".into()),
        pod_namespace: Some("payments".into()),
        pod_uid: Some(pod_uid.into()),
        workload: Some(Workload::new(WorkloadKind::Deployment, "worker", WorkloadSource::Api)),
        ..ContainerMeta::default()
    };
    Resolved {
        cgroup: Some(Arc::new(CgroupIdentity { path: Arc::from(path), container: Some(container) })),
        meta: Some(Arc::new(meta)),
        ..Resolved::default()
    }
}

pub fn identity(r: &Resolved) -> Identity<'_> {
    let mut id = r.identity();
    id.process_exe = Some(b"/usr/local/bin/python3.11");
    id.ancestors[0] = Some(Ancestor { pid: 1900, exe: b"/bin/sh", args: b"sh\0-c\0python3 -m app.worker\0" });
    id.ancestors[1] = Some(Ancestor { pid: 1800, exe: b"/usr/bin/containerd-shim-runc-v2", args: b"shim\0" });
    id
}

pub fn ctx() -> JsonContext<'static> {
    JsonContext { node: "worker-node-07", clock: BootClock::from_offset(1_764_000_000_000_000_000), node_salt: 42 }
}

pub fn cfg(dir: &std::path::Path) -> LakeConfig {
    LakeConfig {
        dir: dir.to_path_buf(),
        // One file per iteration: the rotation threshold stays out of the way.
        rotate_bytes: 1 << 30,
        rotate_age: Duration::from_secs(3600),
        retention: Duration::ZERO,
        compact_min_files: usize::MAX,
        ..LakeConfig::default()
    }
}

/// CPU time of this thread: the figure is per core, whatever else the
/// shared machine runs meanwhile (files go to /dev/shm, so no I/O wait is hidden).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
