//! The shipped manifests parse and carry what Kubernetes and Compose require.
//! No API server or Docker engine runs here, so the fields they would check
//! are checked against the parsed documents instead. deploy/*.yaml are rendered
//! from the Helm chart (tests/chart.rs checks the chart and that they are fresh).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value;

fn docs(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| v.get(k).unwrap_or_else(|| panic!("missing {} in {v:?}", path.join("."))))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// Checks every document has apiVersion, kind, metadata.name; workloads' selectors match their template
/// labels, every container has an image, and mounts name declared volumes. Returns the workloads.
fn check_k8s(docs: &[Value]) -> Vec<&Value> {
    let mut workloads = Vec::new();
    for d in docs {
        assert!(s(d, &["apiVersion"]).as_str().is_some_and(|a| !a.is_empty()), "{d:?}");
        let kind = s(d, &["kind"]).as_str().unwrap();
        assert!(s(d, &["metadata", "name"]).as_str().is_some_and(|n| !n.is_empty()));
        if !matches!(kind, "DaemonSet" | "Deployment") {
            continue;
        }
        assert_eq!(s(d, &["apiVersion"]).as_str(), Some("apps/v1"));
        let selector = s(d, &["spec", "selector", "matchLabels"]).as_mapping().unwrap();
        let labels = s(d, &["spec", "template", "metadata", "labels"]).as_mapping().unwrap();
        assert!(!selector.is_empty());
        for (k, v) in selector {
            assert_eq!(labels.get(k), Some(v), "selector {k:?} does not match the template labels");
        }
        let pod = s(d, &["spec", "template", "spec"]);
        let volumes: Vec<&str> = pod
            .get("volumes")
            .map_or(vec![], |v| v.as_sequence().unwrap().iter().map(|v| s(v, &["name"]).as_str().unwrap()).collect());
        for c in s(pod, &["containers"]).as_sequence().unwrap() {
            assert!(s(c, &["name"]).as_str().is_some());
            assert!(s(c, &["image"]).as_str().is_some_and(|i| !i.is_empty()), "container without image");
            for m in c.get("volumeMounts").and_then(Value::as_sequence).into_iter().flatten() {
                let name = s(m, &["name"]).as_str().unwrap();
                assert!(volumes.contains(&name), "mount {name} names no volume");
                assert!(s(m, &["mountPath"]).as_str().is_some_and(|p| p.starts_with('/')));
            }
        }
        workloads.push(d);
    }
    workloads
}

fn container<'a>(w: &'a Value, name: &str) -> &'a Value {
    s(w, &["spec", "template", "spec", "containers"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap()
}

#[test]
fn agent_daemonset_has_only_the_privileges_it_needs() {
    let d = docs("deploy/daemonset.yaml");
    let w = check_k8s(&d);
    assert_eq!(w.len(), 1);
    let ds = w[0];
    assert_eq!(s(ds, &["kind"]).as_str(), Some("DaemonSet"));
    assert_eq!(s(ds, &["spec", "template", "spec", "hostPID"]).as_bool(), Some(true));
    let c = container(ds, "agent");
    assert_eq!(strs(s(c, &["args"]))[0], "agent");
    let sc = s(c, &["securityContext"]);
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strs(s(sc, &["capabilities", "drop"])), ["ALL"]);
    let mut add = strs(s(sc, &["capabilities", "add"]));
    add.sort();
    assert_eq!(add, ["BPF", "PERFMON"]);
    // What it reads is mounted read-only; only its state (IP history, Kafka spool) is written.
    for m in s(c, &["volumeMounts"]).as_sequence().unwrap() {
        let ro = m.get("readOnly").and_then(Value::as_bool).unwrap_or(false);
        assert_eq!(!ro, m["name"].as_str() == Some("state"), "{m:?}");
    }
}

/// tests/privileges.rs reads the capability list as `spec.template.spec.containers[0].securityContext.capabilities`
/// of deploy/daemonset.yaml taken as one YAML document.
#[test]
fn daemonset_file_is_one_document_with_the_capabilities_where_privileges_rs_reads_them() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/daemonset.yaml");
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = &doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"];
    assert_eq!(strs(&c["drop"]), ["ALL"]);
    assert_eq!(strs(&c["add"]), ["BPF", "PERFMON"]);
}

/// Everything rendered into deploy/ is well formed, in the agent's namespace, and the pieces name each other:
/// the ConfigMap both workloads mount, the metrics Services' selectors and ports.
#[test]
fn rendered_manifests_fit_together() {
    let all: Vec<Value> = ["namespace", "rbac", "configmap", "daemonset", "lake", "services"]
        .iter()
        .flat_map(|f| docs(&format!("deploy/{f}.yaml")))
        .collect();
    let workloads = check_k8s(&all);
    assert_eq!(workloads.len(), 2);
    let ns = all.iter().find(|d| d["kind"] == "Namespace").unwrap();
    let ns = s(ns, &["metadata", "name"]);
    for d in &all {
        if !matches!(d["kind"].as_str(), Some("Namespace" | "ClusterRole" | "ClusterRoleBinding")) {
            assert_eq!(s(d, &["metadata", "namespace"]), ns, "{d:?}");
        }
    }
    let cm = all.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert!(s(cm, &["data", "tracelake.toml"]).as_str().unwrap().contains("[kafka]"));
    for w in &workloads {
        let pod = s(w, &["spec", "template", "spec"]);
        let config = s(pod, &["volumes"]).as_sequence().unwrap().iter().find(|v| v["name"] == "config").unwrap();
        assert_eq!(s(config, &["configMap", "name"]), s(cm, &["metadata", "name"]));
        let c = &s(pod, &["containers"])[0];
        let port = s(c, &["ports"]).as_sequence().unwrap().iter().find(|p| p["name"] == "metrics").unwrap();
        assert_eq!(s(c, &["livenessProbe", "httpGet", "path"]).as_str(), Some("/healthz"));
        assert_eq!(s(c, &["readinessProbe", "httpGet", "path"]).as_str(), Some("/readyz"));
        assert_eq!(s(c, &["readinessProbe", "httpGet", "port"]).as_str(), Some("metrics"));
        let listen = s(c, &["env"]).as_sequence().unwrap().iter().find(|e| e["name"] == "TRACELAKE__METRICS__LISTEN");
        let want = format!("0.0.0.0:{}", s(port, &["containerPort"]).as_u64().unwrap());
        assert_eq!(s(listen.unwrap(), &["value"]).as_str(), Some(want.as_str()));
        // One metrics Service selects this workload's pods, on that port.
        let labels = s(w, &["spec", "template", "metadata", "labels"]).as_mapping().unwrap();
        let services: Vec<&Value> = all
            .iter()
            .filter(|d| d["kind"] == "Service")
            .filter(|svc| {
                s(svc, &["spec", "selector"]).as_mapping().unwrap().iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        assert_eq!(services.len(), 1, "{w:?}");
        assert_eq!(s(&s(services[0], &["spec", "ports"])[0], &["targetPort"]).as_str(), Some("metrics"));
    }
}

#[test]
fn lake_deployment_is_unprivileged_and_shares_a_volume() {
    let d = docs("deploy/lake.yaml");
    let w = check_k8s(&d);
    assert_eq!(w.len(), 1);
    let dep = w[0];
    assert_eq!(s(dep, &["kind"]).as_str(), Some("Deployment"));
    let c = container(dep, "lake");
    assert_eq!(strs(s(c, &["args"]))[0], "lake");
    let sc = s(c, &["securityContext"]);
    assert_eq!(strs(s(sc, &["capabilities", "drop"])), ["ALL"]);
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(s(dep, &["spec", "template", "spec", "securityContext", "runAsNonRoot"]).as_bool(), Some(true));
    let pvc = d.iter().find(|x| x["kind"].as_str() == Some("PersistentVolumeClaim")).unwrap();
    assert_eq!(strs(s(pvc, &["spec", "accessModes"])), ["ReadWriteMany"]);
}

#[test]
fn compose_runs_kafka_the_lake_and_the_agent() {
    let d = docs("docker-compose.yml");
    assert_eq!(d.len(), 1);
    let svc = s(&d[0], &["services"]);
    let kafka = s(svc, &["kafka"]);
    assert!(s(kafka, &["image"]).as_str().unwrap().starts_with("apache/kafka:"));
    let env = s(kafka, &["environment"]);
    assert!(s(env, &["KAFKA_PROCESS_ROLES"]).as_str().unwrap().contains("controller"), "KRaft, no ZooKeeper");
    assert!(svc.get("zookeeper").is_none());
    for (name, cmd) in [("lake", "lake"), ("agent", "agent")] {
        let s_ = s(svc, &[name]);
        let command = strs(s(s_, &["command"]));
        assert_eq!(command[0], cmd);
        let i = command.iter().position(|a| a == "--brokers").unwrap();
        assert_eq!(command[i + 1], "kafka:9092", "advertised listener of the kafka service");
        assert!(s(s_, &["depends_on"]).get("kafka").is_some());
    }
    assert_eq!(s(svc, &["agent", "pid"]).as_str(), Some("host"));
}
