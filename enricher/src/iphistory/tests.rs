#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::net::IpAddr;
use std::time::Duration;

use super::persist::{self, encode};
use super::*;

const S: i64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod(name: &str, uid: &str) -> Owner {
    Owner {
        node: Some("node-1".into()),
        namespace: Some("shop".into()),
        pod: Some(name.into()),
        pod_uid: Some(uid.into()),
        container_id: Some(format!("{uid:0>64}")),
        source: Source::Node,
        ..Owner::default()
    }
}

fn who(h: &IpHistory, addr: &str, at: i64) -> Option<String> {
    h.who_had(ip(addr), at).and_then(|o| o.pod.clone().or_else(|| o.service.clone()))
}

#[test]
fn reused_ip_answers_by_time() {
    let h = IpHistory::in_memory(Duration::MAX);
    h.assign(ip("10.42.1.7"), 100 * S, pod("a", "1"));
    h.release(ip("10.42.1.7"), 200 * S);
    h.assign(ip("10.42.1.7"), 300 * S, pod("b", "2"));
    assert_eq!(who(&h, "10.42.1.7", 99 * S), None, "before anyone");
    assert_eq!(who(&h, "10.42.1.7", 100 * S).as_deref(), Some("a"), "from is inclusive");
    assert_eq!(who(&h, "10.42.1.7", 150 * S).as_deref(), Some("a"));
    assert_eq!(who(&h, "10.42.1.7", 200 * S), None, "to is exclusive");
    assert_eq!(who(&h, "10.42.1.7", 250 * S), None, "unheld gap");
    assert_eq!(who(&h, "10.42.1.7", 300 * S).as_deref(), Some("b"));
    assert_eq!(who(&h, "10.42.1.7", 10_000 * S).as_deref(), Some("b"), "open interval");
    assert_eq!(who(&h, "10.42.1.8", 150 * S), None, "other IP");
    let hist = h.history(ip("10.42.1.7"));
    assert_eq!(hist.len(), 2);
    assert_eq!((hist[0].valid_from, hist[0].valid_to), (100 * S, Some(200 * S)));
    assert_eq!((hist[1].valid_from, hist[1].valid_to), (300 * S, None));
}

#[test]
fn a_new_holder_ends_the_previous_one() {
    let h = IpHistory::in_memory(Duration::MAX);
    h.assign(ip("10.0.0.5"), 10 * S, pod("a", "1"));
    // The release was seen late (or never): the new holder's start ends it.
    h.assign(ip("10.0.0.5"), 20 * S, pod("b", "2"));
    h.release(ip("10.0.0.5"), 25 * S);
    assert_eq!(who(&h, "10.0.0.5", 19 * S).as_deref(), Some("a"));
    assert_eq!(who(&h, "10.0.0.5", 20 * S).as_deref(), Some("b"));
    assert_eq!(who(&h, "10.0.0.5", 25 * S), None);
    // A release observed after the next holder started (B gone at 40 seen at 45, C from 41).
    h.assign(ip("10.0.0.5"), 30 * S, pod("c", "3"));
    h.assign(ip("10.0.0.5"), 41 * S, pod("d", "4"));
    h.release_held(ip("10.0.0.5"), 45 * S, &pod("c", "3"));
    assert_eq!(who(&h, "10.0.0.5", 44 * S).as_deref(), Some("d"), "release of a former holder is ignored");
    let v = h.history(ip("10.0.0.5"));
    for w in v.windows(2) {
        assert!(w[0].valid_to.is_some_and(|t| t <= w[1].valid_from), "no overlap: {v:?}");
    }
    // IPv4-mapped IPv6 (dual-stack sockets) finds the IPv4 owner.
    assert_eq!(who(&h, "::ffff:10.0.0.5", 44 * S).as_deref(), Some("d"));
}

#[test]
fn same_holder_from_two_sources_merges() {
    let h = IpHistory::in_memory(Duration::MAX);
    let node = Owner { pod: None, namespace: None, ..pod("x", "u1") };
    h.assign(ip("10.1.0.2"), 5 * S, node);
    let kube = Owner {
        pod: Some("api-7d".into()),
        namespace: Some("pay".into()),
        pod_uid: Some("u1".into()),
        workload_kind: Some("Deployment".into()),
        workload: Some("api".into()),
        container_id: None,
        node: None,
        service: None,
        source: Source::Kube,
    };
    h.assign(ip("10.1.0.2"), 9 * S, kube);
    let hist = h.history(ip("10.1.0.2"));
    assert_eq!(hist.len(), 1, "{hist:?}");
    let o = &hist[0].owner;
    assert_eq!(hist[0].valid_from, 5 * S, "the earlier start stays");
    assert_eq!(o.workload.as_deref(), Some("api"));
    assert_eq!(o.container_id.as_deref(), Some(format!("{:0>64}", "u1").as_str()), "node's field kept");
    assert_eq!(o.node.as_deref(), Some("node-1"));
    assert_eq!(o.source, Source::Kube);
}

#[test]
fn release_owner_services_and_changes() {
    let h = IpHistory::in_memory(Duration::MAX);
    let a = pod("a", "1");
    h.assign(ip("10.2.0.1"), S, a.clone());
    h.assign(ip("fd00::1"), S, a.clone());
    h.assign(ip("10.2.0.9"), S, pod("b", "2"));
    h.assign_service(ip("10.96.0.10"), S, "kube-system", "kube-dns");
    let mark = h.changes_since(0).next_seq;
    h.release_owner(&a, 7 * S);
    assert_eq!(who(&h, "10.2.0.1", 7 * S), None);
    assert_eq!(who(&h, "fd00::1", 7 * S), None);
    assert_eq!(who(&h, "10.2.0.9", 7 * S).as_deref(), Some("b"), "other owners untouched");
    let svc = h.who_had(ip("10.96.0.10"), 8 * S).unwrap();
    assert_eq!((svc.service.as_deref(), svc.namespace.as_deref()), (Some("kube-dns"), Some("kube-system")));
    let changes = h.changes_since(mark);
    let ips: Vec<String> = changes.rows.iter().map(|r| r.ip.to_string()).collect();
    assert_eq!(ips, ["10.2.0.1", "fd00::1"], "only the two closed rows");
    assert!(changes.rows.iter().all(|r| r.valid_to == Some(7 * S)));
    assert!(h.changes_since(changes.next_seq).rows.is_empty());
    assert_eq!(h.rows().len(), 4);
}

#[test]
fn retention_prunes_ended_intervals_only() {
    let h = IpHistory::in_memory(Duration::from_secs(100));
    h.assign(ip("10.3.0.1"), S, pod("old", "1"));
    h.release(ip("10.3.0.1"), 2 * S);
    h.assign(ip("10.3.0.1"), 3 * S, pod("new", "2"));
    h.assign(ip("10.3.0.2"), S, pod("long", "3"));
    assert_eq!(h.prune(50 * S), 0);
    assert_eq!(h.prune(1_000 * S), 1);
    assert_eq!(h.history(ip("10.3.0.1")).len(), 1);
    assert_eq!(who(&h, "10.3.0.2", 999 * S).as_deref(), Some("long"), "open intervals stay");
}

#[test]
fn restart_restores_the_table_and_continues_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_000 * S;
    let seq = {
        let h = IpHistory::open(dir.path(), Duration::MAX, now).unwrap();
        h.assign(ip("10.4.0.1"), 10 * S, pod("a", "1"));
        h.release(ip("10.4.0.1"), 20 * S);
        h.assign(ip("10.4.0.1"), 30 * S, pod("b", "2"));
        h.assign_service(ip("10.96.0.1"), 5 * S, "default", "kubernetes");
        // A second writer on the same dir is refused while the first lives.
        let second = IpHistory::open(dir.path(), Duration::MAX, now);
        assert!(matches!(second, Err(PersistError::Locked { .. })), "{second:?}");
        h.maintain(now, u64::MAX);
        h.changes_since(0).next_seq
    };
    let h = IpHistory::open(dir.path(), Duration::MAX, now).unwrap();
    assert_eq!(who(&h, "10.4.0.1", 15 * S).as_deref(), Some("a"));
    assert_eq!(who(&h, "10.4.0.1", 25 * S), None);
    assert_eq!(who(&h, "10.4.0.1", 35 * S).as_deref(), Some("b"));
    assert_eq!(who(&h, "10.96.0.1", 35 * S).as_deref(), Some("kubernetes"));
    assert_eq!(h.changes_since(0).next_seq, seq, "sequence numbers continue");

    // Compaction: snapshot plus empty journal, same table, journal keeps working.
    h.compact().unwrap();
    assert_eq!(fs::metadata(dir.path().join("journal")).unwrap().len(), 0);
    h.release(ip("10.4.0.1"), 40 * S);
    drop(h);
    let h = IpHistory::read_only(dir.path()).unwrap();
    assert_eq!(who(&h, "10.4.0.1", 35 * S).as_deref(), Some("b"));
    assert_eq!(who(&h, "10.4.0.1", 41 * S), None, "journal after the snapshot applies");
}

#[test]
fn retention_applies_on_load() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = IpHistory::open(dir.path(), Duration::from_secs(100), 0).unwrap();
        h.assign(ip("10.5.0.1"), S, pod("a", "1"));
        h.release(ip("10.5.0.1"), 2 * S);
        h.assign(ip("10.5.0.2"), S, pod("b", "2"));
    }
    let h = IpHistory::open(dir.path(), Duration::from_secs(100), 1_000 * S).unwrap();
    assert!(h.history(ip("10.5.0.1")).is_empty());
    assert_eq!(h.history(ip("10.5.0.2")).len(), 1);
}

/// The journal as a crash can leave it: every record before the damage loads,
/// nothing after it does, and the writer cuts the file back to the good prefix.
#[test]
fn corrupt_or_torn_tail_is_dropped_and_the_rest_loads() {
    for damage in ["flip", "torn", "garbage", "huge_len"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let h = IpHistory::open(dir.path(), Duration::MAX, 0).unwrap();
            for i in 0..10u8 {
                h.assign(ip(&format!("10.6.0.{i}")), S, pod(&format!("p{i}"), &i.to_string()));
            }
        }
        let path = dir.path().join("journal");
        let mut data = fs::read(&path).unwrap();
        let good_len = {
            // Length of the first 9 records, computed independently of the loader.
            let mut at = 0;
            for _ in 0..9 {
                at += 8 + u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            }
            at
        };
        match damage {
            "flip" => {
                let last = data.len() - 3;
                data[last] ^= 0x40;
            }
            "torn" => data.truncate(data.len() - 5),
            "garbage" => data.extend_from_slice(b"\x10\x00\x00\x00garbage-after-a-crash"),
            "huge_len" => data[good_len..good_len + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
            _ => unreachable!(),
        }
        fs::write(&path, &data).unwrap();
        let ro = IpHistory::read_only(dir.path()).unwrap();
        let expect = if damage == "garbage" { 10 } else { 9 };
        assert_eq!(ro.rows().len(), expect, "{damage}: read-only load");
        assert_eq!(fs::read(&path).unwrap(), data, "{damage}: a reader never repairs");
        let h = IpHistory::open(dir.path(), Duration::MAX, 0).unwrap();
        assert_eq!(h.rows().len(), expect, "{damage}");
        assert_eq!(who(&h, "10.6.0.0", 2 * S).as_deref(), Some("p0"), "{damage}");
        let cut = fs::metadata(&path).unwrap().len() as usize;
        assert!(cut < data.len(), "{damage}: bad tail cut off");
        // New records land after the good prefix and load on the next start.
        h.assign(ip("10.6.1.1"), S, pod("after", "99"));
        drop(h);
        let h = IpHistory::open(dir.path(), Duration::MAX, 0).unwrap();
        assert_eq!(who(&h, "10.6.1.1", 2 * S).as_deref(), Some("after"), "{damage}");
        assert_eq!(h.rows().len(), expect + 1, "{damage}");
    }
}

#[test]
fn frames_round_trip_and_reject_bit_flips() {
    let row = Row {
        ip: ip("10.7.0.1"),
        valid_from: -5,
        valid_to: Some(i64::MAX),
        owner: Owner { pod: Some("n\u{e9}\n\"x".into()), ..Owner::default() },
        seq: 3,
    };
    let mut buf = Vec::new();
    encode(&mut buf, &row);
    let path = std::path::Path::new("test");
    assert_eq!(persist::decode(&buf, path), (vec![row.clone()], buf.len()));
    for i in 0..buf.len() {
        let mut bad = buf.clone();
        bad[i] ^= 1;
        assert!(persist::decode(&bad, path).0.is_empty(), "flip at byte {i} detected");
    }
}

/// Our own network namespace, read through /proc, against iproute2's view of it.
#[test]
fn local_addresses_match_iproute2() {
    let ours = local_addresses(std::process::id());
    let out = std::process::Command::new("ip").args(["-o", "addr", "show", "scope", "global"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut theirs: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet" && *w != "inet6").nth(1))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    theirs.sort();
    let mut ours_sorted = ours.clone();
    ours_sorted.sort();
    assert!(!theirs.is_empty(), "the host has a global address: {text}");
    assert_eq!(ours_sorted, theirs);
}

fn kube_pod(name: &str, uid: &str, addr: &str, start_s: u64) -> std::sync::Arc<crate::kube::PodInfo> {
    use crate::kube::{PodInfo, Workload, WorkloadKind, WorkloadSource};
    std::sync::Arc::new(PodInfo {
        uid: uid.into(),
        name: name.into(),
        namespace: "shop".into(),
        labels: Box::new([]),
        node: Some("node-1".into()),
        ips: vec![ip(addr)].into_boxed_slice(),
        host_network: false,
        phase: Some("Running".into()),
        start_time: Some(std::time::UNIX_EPOCH + Duration::from_secs(start_s)),
        deletion_time: None,
        deleted: false,
        workload: Workload { kind: WorkloadKind::Deployment, name: "web".into(), source: WorkloadSource::Api },
        controller: None,
    })
}

/// Pods the API watch reports hold their IPs from their start, with their
/// workload; a deleted pod releases them, and the next pod on the IP is
/// answered for later times only.
#[test]
fn pods_from_the_kubernetes_watch_feed_the_history() {
    use crate::kube::PodChange;
    let h = IpHistory::in_memory(Duration::from_secs(3600 * 24));
    let a = kube_pod("web-7d9f8b6c5d-aaaaa", "uid-a", "10.42.1.7", 1_000);
    kube_feed::apply(&h, &PodChange::Applied(a.clone()));
    let at_a = 1_500 * 1_000_000_000;
    let owner = h.who_had(ip("10.42.1.7"), at_a).expect("pod a holds the IP");
    assert_eq!(owner.pod.as_deref(), Some("web-7d9f8b6c5d-aaaaa"));
    assert_eq!(owner.workload_kind.as_deref(), Some("Deployment"));
    assert_eq!(owner.workload.as_deref(), Some("web"));
    assert_eq!(owner.source, Source::Kube);
    assert!(h.who_had(ip("10.42.1.7"), 999 * 1_000_000_000).is_none(), "not before the pod started");
    kube_feed::apply(&h, &PodChange::Deleted(a));
    // A host-network pod reports the node's address: it must not take it over.
    let mut host = (*kube_pod("node-exporter-x", "uid-h", "10.42.1.7", 2_000)).clone();
    host.host_network = true;
    kube_feed::apply(&h, &PodChange::Applied(std::sync::Arc::new(host)));
    let now = now_ns();
    let b = kube_pod("web-7d9f8b6c5d-bbbbb", "uid-b", "10.42.1.7", u64::try_from(now / 1_000_000_000).unwrap() + 10);
    kube_feed::apply(&h, &PodChange::Applied(b));
    assert_eq!(who(&h, "10.42.1.7", at_a).as_deref(), Some("web-7d9f8b6c5d-aaaaa"));
    assert_eq!(who(&h, "10.42.1.7", now + 20 * 1_000_000_000).as_deref(), Some("web-7d9f8b6c5d-bbbbb"));
    assert_eq!(h.history(ip("10.42.1.7")).len(), 2, "a and b, nothing of the host-network pod");
}
