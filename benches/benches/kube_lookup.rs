//! Kubernetes lookups from the event hot path on a warm cache of 10,000
//! pods (and 1,000 services): one probe of the published index, one
//! reference-count increment.
//!
//! `cargo bench -p tracelake-benches --bench kube_lookup`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PartialObjectMeta;
use tracelake_enricher::KubeMeta;

const PODS: usize = 10_000;
/// Lookups per iteration, spread over all pods so the hash table is read like a busy node's.
const BATCH: usize = 1024;

fn uid(i: usize) -> String {
    format!("7f1c2a6e-{:04x}-4a1b-9c1d-{:012x}", i % 0xffff, i)
}

fn owner(kind: &str, name: &str, uid: &str) -> Option<Vec<OwnerReference>> {
    Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }])
}

fn meta() -> std::sync::Arc<KubeMeta> {
    let mut pods = Vec::new();
    let mut replicasets = Vec::new();
    for d in 0..PODS / 10 {
        let rs = format!("deploy-{d}-7d9f8b6c5d");
        let rs_uid = format!("rs-{d}");
        replicasets.push(PartialObjectMeta::<ReplicaSet> {
            metadata: ObjectMeta {
                name: Some(rs.clone()),
                namespace: Some(format!("ns-{}", d % 50)),
                uid: Some(rs_uid.clone()),
                owner_references: owner("Deployment", &format!("deploy-{d}"), &format!("dep-{d}")),
                ..ObjectMeta::default()
            },
            ..PartialObjectMeta::default()
        });
        for p in 0..10 {
            let i = d * 10 + p;
            let labels: BTreeMap<String, String> =
                [("app", format!("deploy-{d}")), ("pod-template-hash", "7d9f8b6c5d".into()), ("team", "shop".into())]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
            pods.push(Pod {
                metadata: ObjectMeta {
                    name: Some(format!("{rs}-x2k{p}q")),
                    namespace: Some(format!("ns-{}", d % 50)),
                    uid: Some(uid(i)),
                    labels: Some(labels),
                    owner_references: owner("ReplicaSet", &rs, &rs_uid),
                    ..ObjectMeta::default()
                },
                spec: Some(PodSpec { node_name: Some("node-a".into()), ..PodSpec::default() }),
                status: Some(PodStatus {
                    phase: Some("Running".into()),
                    pod_ip: Some(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)),
                    ..PodStatus::default()
                }),
            });
        }
    }
    let services = (0..1000u32).map(|i| Service {
        metadata: ObjectMeta {
            name: Some(format!("svc-{i}")),
            namespace: Some("shop".into()),
            uid: Some(format!("svc-uid-{i}")),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(Ipv4Addr::from(0x0a60_0000 + i).to_string()),
            ..ServiceSpec::default()
        }),
        status: None,
    });
    KubeMeta::from_objects(pods, replicasets, Vec::new(), services)
}

fn lookups(c: &mut Criterion) {
    let kube = meta();
    assert_eq!(kube.stats().pods, PODS);
    let step = PODS / BATCH + 1;
    let uids: Vec<String> = (0..BATCH).map(|i| uid(i * step % PODS)).collect();
    let names: Vec<(String, String)> = uids
        .iter()
        .map(|u| {
            let p = kube.lookup_pod(u).expect("warm cache");
            assert_eq!(p.workload.kind.as_str(), "Deployment");
            (p.namespace.to_string(), p.name.to_string())
        })
        .collect();
    let missing: Vec<String> = (0..BATCH).map(|i| uid(PODS + i)).collect();
    let ips: Vec<IpAddr> = (0..BATCH as u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i % 1000))).collect();

    let mut g = c.benchmark_group("kube_lookup");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("lookup_pod_hit", |b| {
        b.iter(|| {
            for u in &uids {
                black_box(kube.lookup_pod(black_box(u)));
            }
        })
    });
    g.bench_function("lookup_pod_miss", |b| {
        b.iter(|| {
            for u in &missing {
                black_box(kube.lookup_pod(black_box(u)));
            }
        })
    });
    g.bench_function("lookup_pod_by_name_hit", |b| {
        b.iter(|| {
            for (ns, n) in &names {
                black_box(kube.lookup_pod_by_name(black_box(ns), black_box(n)));
            }
        })
    });
    g.bench_function("lookup_service_hit", |b| {
        b.iter(|| {
            for ip in &ips {
                black_box(kube.lookup_service(black_box(*ip)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
