//! Which container a cgroup path belongs to.
//!
//! Runtimes and kubelet cgroup drivers name cgroups differently; each layout
//! below was taken from the runtime's own naming code. A path that matches
//! none is not guessed at: the caller keeps the raw path.

/// The runtime whose naming a cgroup path follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// containerd CRI plugin (`cri-containerd-<id>.scope`), or containerd
    /// without CRI (`/<namespace>/<id>`, as `ctr run` and nerdctl do).
    Containerd,
    CriO,
    Docker,
    /// A bare 64-hex id under a kubelet pod cgroup (cgroupfs driver), runtime not named.
    Unknown,
}

/// What a cgroup path says about the container it holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// Full container id (64 hex digits for every runtime above).
    pub container_id: String,
    /// Pod UID from a kubelet `pod<uid>` cgroup, with dashes restored.
    pub pod_uid: Option<String>,
    /// Kubernetes QoS class from the kubelet layout: guaranteed, burstable or besteffort.
    pub qos: Option<&'static str>,
    /// containerd namespace, for the non-CRI `/<namespace>/<id>` layout.
    pub namespace: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `kubepods-burstable-pod1234_5678.slice` or `pod1234-5678` -> uid with dashes.
fn pod_uid(component: &str) -> Option<String> {
    let c = component.strip_suffix(".slice").unwrap_or(component);
    let uid = c.rsplit_once("-pod").map(|(_, u)| u).or_else(|| c.strip_prefix("pod"))?;
    let uid = uid.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

fn qos(path: &str) -> Option<&'static str> {
    ["burstable", "besteffort"]
        .into_iter()
        .find(|q| path.contains(&format!("kubepods-{q}")) || path.contains(&format!("kubepods/{q}")))
        .or_else(|| path.contains("kubepods").then_some("guaranteed"))
}

/// Parses a cgroup v2 path (as in `/proc/<pid>/cgroup` "0::<path>", or the
/// cgroup tree relative to its root). None when no known layout matches.
pub fn parse_cgroup_path(path: &str) -> Option<ContainerRef> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let last = *components.last()?;
    let scope = last.strip_suffix(".scope").unwrap_or(last);
    let prefixed = [("cri-containerd-", Runtime::Containerd), ("crio-", Runtime::CriO), ("docker-", Runtime::Docker)];
    let (runtime, id, namespace) = if let Some((rt, id)) =
        prefixed.iter().find_map(|(p, rt)| scope.strip_prefix(p).filter(|id| is_container_id(id)).map(|id| (*rt, id)))
    {
        (rt, id, None)
    } else if is_container_id(last) {
        match components.as_slice() {
            // docker's cgroupfs driver: /docker/<id>
            [.., "docker", _] => (Runtime::Docker, last, None),
            // containerd without CRI: /<namespace>/<id>, nothing above it.
            [ns, _] if !ns.starts_with("kubepods") && !ns.starts_with("pod") => {
                (Runtime::Containerd, last, Some((*ns).to_string()))
            }
            _ => (Runtime::Unknown, last, None),
        }
    } else {
        return None;
    };
    let pod = components.iter().rev().skip(1).find_map(|c| pod_uid(c));
    let kube = path.contains("kubepods");
    Some(ContainerRef {
        runtime,
        container_id: id.to_string(),
        pod_uid: pod,
        qos: if kube { qos(path) } else { None },
        namespace,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    const ID: &str = "3f4b1a2c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";

    #[test]
    fn systemd_driver_layouts_of_each_runtime() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b6f3f4c_7a0e_4d7e_9b5a_1c2d3e4f5a6b.slice/cri-containerd-{ID}.scope"
        );
        let r = parse_cgroup_path(&p).unwrap();
        assert_eq!(r.runtime, Runtime::Containerd);
        assert_eq!(r.container_id, ID);
        assert_eq!(r.pod_uid.as_deref(), Some("0b6f3f4c-7a0e-4d7e-9b5a-1c2d3e4f5a6b"));
        assert_eq!(r.qos, Some("burstable"));

        let crio = format!("/kubepods.slice/kubepods-pod0b6f3f4c_7a0e_4d7e_9b5a_1c2d3e4f5a6b.slice/crio-{ID}.scope");
        let r = parse_cgroup_path(&crio).unwrap();
        assert_eq!((r.runtime, r.qos), (Runtime::CriO, Some("guaranteed")));

        let docker = format!("/system.slice/docker-{ID}.scope");
        let r = parse_cgroup_path(&docker).unwrap();
        assert_eq!((r.runtime, r.pod_uid, r.qos), (Runtime::Docker, None, None));
    }

    #[test]
    fn cgroupfs_driver_and_plain_containerd() {
        let p = format!("/kubepods/besteffort/pod0b6f3f4c-7a0e-4d7e-9b5a-1c2d3e4f5a6b/{ID}");
        let r = parse_cgroup_path(&p).unwrap();
        assert_eq!(r.runtime, Runtime::Unknown);
        assert_eq!(r.pod_uid.as_deref(), Some("0b6f3f4c-7a0e-4d7e-9b5a-1c2d3e4f5a6b"));
        assert_eq!(r.qos, Some("besteffort"));

        let r = parse_cgroup_path(&format!("/k8s.io/{ID}")).unwrap();
        assert_eq!((r.runtime, r.namespace.as_deref()), (Runtime::Containerd, Some("k8s.io")));
        let r = parse_cgroup_path(&format!("/docker/{ID}")).unwrap();
        assert_eq!(r.runtime, Runtime::Docker);
    }

    #[test]
    fn host_and_unknown_layouts_are_not_guessed() {
        for p in [
            "/",
            "/init.scope",
            "/system.slice/sshd.service",
            "/user.slice/user-0.slice/session-1.scope",
            "/kubepods.slice",
        ] {
            assert_eq!(parse_cgroup_path(p), None, "{p}");
        }
        // Not 64 lowercase hex digits.
        assert_eq!(parse_cgroup_path("/system.slice/docker-abc.scope"), None);
        assert_eq!(parse_cgroup_path(&format!("/ns/{}", ID.to_uppercase())), None);
        // Hostile input: newlines, huge, non-ASCII.
        assert_eq!(parse_cgroup_path(&format!("/ns/{ID}\n")), None);
        assert_eq!(parse_cgroup_path(&"/a".repeat(100_000)), None);
        assert_eq!(parse_cgroup_path("/ñ/é"), None);
    }
}
