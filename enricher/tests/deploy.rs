//! deploy/ manifests grant what the Kubernetes watches read, and nothing more.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml::Value;
use tracelake_enricher::kube::watched_resources;

fn docs(file: &str) -> Vec<Value> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_sequence().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn cluster_role_grants_exactly_the_watched_resources() {
    let rbac = docs("rbac.yaml");
    let role = of_kind(&rbac, "ClusterRole");
    assert_eq!(role.len(), 1);
    let mut granted = BTreeSet::new();
    for rule in role[0]["rules"].as_sequence().unwrap() {
        assert_eq!(strings(&rule["verbs"]), ["get", "list", "watch"].map(String::from).into(), "read-only: {rule:?}");
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                assert!(granted.insert((group.clone(), resource)), "granted twice");
            }
        }
    }
    let watched: BTreeSet<(String, String)> =
        watched_resources().iter().map(|(g, r)| (g.to_string(), r.to_string())).collect();
    assert_eq!(granted, watched);

    // The binding gives that role to the account the DaemonSet runs as, in its namespace.
    let binding = of_kind(&rbac, "ClusterRoleBinding");
    assert_eq!(binding[0]["roleRef"]["name"], role[0]["metadata"]["name"]);
    let account = of_kind(&rbac, "ServiceAccount")[0];
    let subject = &binding[0]["subjects"][0];
    assert_eq!((&subject["kind"], &subject["name"]), (&"ServiceAccount".into(), &account["metadata"]["name"]));
    assert_eq!(subject["namespace"], account["metadata"]["namespace"]);

    let ds = docs("daemonset.yaml");
    let ds = of_kind(&ds, "DaemonSet")[0];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(ds["metadata"]["namespace"], account["metadata"]["namespace"]);
    let env = pod["containers"][0]["env"].as_sequence().unwrap();
    let node = env.iter().find(|e| e["name"] == "NODE_NAME").expect("NODE_NAME env");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
}
