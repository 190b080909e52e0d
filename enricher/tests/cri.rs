//! Container and pod metadata through the CRI API, from containerd 1.6's own
//! CRI plugin (the test kit's CRI lab), with the pod and container created
//! through CRI as kubelet creates them.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::time::Duration;

use tracelake_enricher::cri::{self, CriError};
use tracelake_enricher::kube::WorkloadKind;
use tracelake_enricher::{Runtime, parse_cgroup_path};
use tracelake_testkit::cri_lab::{CriLab, PodSpec};
use tracelake_testkit::lab::lab_available;

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_metadata_of_a_kubelet_style_pod() {
    if let Err(why) = lab_available() {
        println!("skipped: containers cannot run here: {why}");
        return;
    }
    let lab = CriLab::start().unwrap();
    let uid = "5d0e4c1a-9b7f-4e2d-8a6c-3f1b2e4d6a8c";
    let spec =
        PodSpec::new("web-7d4b9c8f6d-x2x9z", "shop", uid).label("app", "web").label("pod-template-hash", "7d4b9c8f6d");
    let pod = lab.run_pod(&spec).unwrap();
    let ct = lab.start_container(&pod, "nginx", &["sleep", "3600"]).unwrap();

    let mut client = tokio::time::timeout(TIMEOUT, cri::connect(lab.address())).await.unwrap().unwrap();
    assert_eq!(client.runtime().0, "containerd");
    let found = tokio::time::timeout(TIMEOUT, client.container(&ct.id)).await.unwrap().unwrap().expect("known");
    let meta = &found.meta;
    assert_eq!(meta.id, ct.id);
    assert_eq!(meta.container_name.as_deref(), Some("nginx"));
    assert_eq!(meta.pod_name.as_deref(), Some("web-7d4b9c8f6d-x2x9z"));
    assert_eq!(meta.pod_namespace.as_deref(), Some("shop"));
    assert_eq!(meta.pod_uid.as_deref(), Some(uid));
    // Created from the image id, as kubelet does; CRI names it by tag and repo digest.
    assert_eq!(meta.image, lab.image().reference);
    assert_eq!(meta.image_digest.as_deref(), Some(lab.image().digest.as_str()));
    assert_eq!(meta.labels.get("io.kubernetes.container.name").map(String::as_str), Some("nginx"));
    let workload = meta.workload.as_ref().expect("inferred from the pod's labels");
    assert_eq!((&workload.kind, &*workload.name), (&WorkloadKind::Deployment, "web"));
    assert_eq!(found.sandbox_id, pod.sandbox_id);
    assert_eq!(found.pod_labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(found.annotations.get("io.kubernetes.container.restartCount").map(String::as_str), Some("0"));
    assert_eq!(found.pod_ip, None, "a host-network pod has no IP of its own");

    // The container's real cgroup, in kubelet's cgroupfs layout, names the same container and pod.
    assert_eq!(ct.cgroup, format!("{}/{}", pod.cgroup_parent, ct.id));
    let parsed = parse_cgroup_path(&ct.cgroup).expect("kubelet cgroupfs layout");
    assert_eq!(parsed.container_id, ct.id);
    assert_eq!(parsed.pod_uid.as_deref(), Some(uid));
    assert_eq!((parsed.runtime, parsed.qos), (Runtime::Unknown, Some("besteffort")));

    // Unknown ids, also a prefix of a real one, are not found.
    assert!(client.container(&"f".repeat(64)).await.unwrap().is_none());
    assert!(client.container(&ct.id[..12]).await.unwrap().is_none(), "a prefix is not the container");
    lab.remove_container(&ct.id).unwrap();
    assert!(client.container(&ct.id).await.unwrap().is_none(), "removed");
    lab.remove_pod(&pod).unwrap();
}

#[tokio::test]
async fn a_missing_socket_is_a_clear_error() {
    let socket = std::path::Path::new("/nonexistent/tracelake/crio.sock");
    let err = tokio::time::timeout(TIMEOUT, cri::connect(socket)).await.unwrap().unwrap_err();
    assert!(matches!(&err, CriError::Connect { socket: s, .. } if s == socket), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/tracelake/crio.sock") && text.contains("No such file or directory"), "{text}");
}
