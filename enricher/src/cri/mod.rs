//! Container and pod metadata from the Kubernetes CRI API (`runtime.v1`
//! RuntimeService), the one interface every kubelet runtime serves: CRI-O,
//! containerd's CRI plugin, k3s's embedded containerd. Reading it instead of
//! a runtime's own API makes the answer the same on every node.
//!
//! One container costs three calls: `ListContainers` filtered by id (the
//! only portable place the container's sandbox id appears), `ContainerStatus`
//! (containerd resolves the image there to its tag and repo digest, where
//! the list only has the image id), and `PodSandboxStatus` (the pod's
//! metadata, labels and IP). Timeouts are the caller's: wrap the calls in
//! `tokio::time::timeout`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerFilter, ContainerStatusRequest, ListContainersRequest, PodSandboxStatusRequest, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::containerd::ContainerMeta;
use crate::kube::infer;

#[cfg(test)]
mod tests;

/// Where kubelet runtimes put their CRI socket, most common first: containerd,
/// CRI-O (and its /var/run spelling), k3s's embedded containerd, containerd's
/// /var/run spelling, cri-dockerd.
pub const KNOWN_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/cri-dockerd.sock",
];

/// The CRI socket to use: the configured one if any (even when it does not
/// exist yet, so the error names what the operator asked for), else the first
/// of [`KNOWN_SOCKETS`] that is a socket on this node.
pub fn find_socket(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(path) => Some(path.to_path_buf()),
        None => first_socket(KNOWN_SOCKETS.iter().map(PathBuf::from)),
    }
}

/// A leftover regular file or directory at a socket path is not a runtime.
fn first_socket(candidates: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    candidates.into_iter().find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
}

/// Why a CRI call failed; every variant names the socket, since a node may
/// have several runtimes.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// No connection could be made (no socket, permission, nothing listening).
    #[error("connecting to the CRI socket {}: {}", .socket.display(), causes(.source))]
    Connect {
        /// The socket connected to.
        socket: PathBuf,
        /// tonic's error; the OS error is among its sources.
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime answered a call with an error status (`Unimplemented` from
    /// `Version`: the socket is not a CRI runtime, e.g. containerd with its
    /// CRI plugin disabled).
    #[error("CRI {rpc} on {}: {code:?}: {message}", .socket.display())]
    Rpc {
        /// The socket the call went to.
        socket: PathBuf,
        /// The RuntimeService method, e.g. `ContainerStatus`.
        rpc: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
}

/// tonic's transport error says only "transport error"; the cause (e.g.
/// "No such file or directory") is further down the chain.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let _ = write!(text, ": {e}");
        next = e.source();
    }
    text
}

/// A connection to one runtime's CRI socket. Cloning is cheap and shares it.
#[derive(Debug, Clone)]
pub struct CriClient {
    socket: PathBuf,
    client: RuntimeServiceClient<Channel>,
    runtime: (String, String),
}

/// A container as CRI describes it, with what only its pod sandbox knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriContainer {
    /// Container and pod identity in the same shape containerd lookups give.
    /// Pod name, namespace and uid come from the sandbox's CRI metadata and
    /// the container name from the container's, so they are right even for
    /// containers created without kubelet's `io.kubernetes.*` labels; the
    /// workload is inferred from the pod's labels, which kubelet puts on the
    /// sandbox, not on its containers.
    pub meta: ContainerMeta,
    /// The container's annotations (kubelet's restart count, container hash, ...).
    pub annotations: BTreeMap<String, String>,
    /// The pod sandbox the container runs in.
    pub sandbox_id: String,
    /// The pod's labels, as kubelet passed them to `RunPodSandbox`.
    pub pod_labels: BTreeMap<String, String>,
    /// The pod's primary IP; None for host-network pods (the runtime reports
    /// none) and pods whose network is not set up.
    pub pod_ip: Option<String>,
}

/// Connects to the CRI runtime at `socket` (a unix socket) and checks that it
/// serves `runtime.v1` with a `Version` call.
pub async fn connect(socket: &Path) -> Result<CriClient, CriError> {
    let path = socket.to_path_buf();
    // A unix socket has no URI; tonic wants one anyway and the connector ignores it.
    let endpoint = Endpoint::from_static("http://[::]");
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|source| CriError::Connect { socket: socket.to_path_buf(), source })?;
    let mut client = RuntimeServiceClient::new(channel);
    let version = client.version(VersionRequest { version: String::new() }).await;
    let version = version.map_err(|s| rpc_error(socket, "Version", &s))?.into_inner();
    Ok(CriClient { socket: socket.to_path_buf(), client, runtime: (version.runtime_name, version.runtime_version) })
}

fn rpc_error(socket: &Path, rpc: &'static str, status: &tonic::Status) -> CriError {
    CriError::Rpc { socket: socket.to_path_buf(), rpc, code: status.code(), message: status.message().to_string() }
}

impl CriClient {
    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runtime name and version as the runtime reported them at connect
    /// time, e.g. `("containerd", "1.6.20~ds1")` or `("cri-o", "1.30.0")`.
    pub fn runtime(&self) -> (&str, &str) {
        (&self.runtime.0, &self.runtime.1)
    }

    /// What the runtime knows of container `id` (the full id) and its pod.
    /// Ok(None) when the runtime has no such container (any more).
    pub async fn container(&mut self, id: &str) -> Result<Option<CriContainer>, CriError> {
        // The filter also matches unique id prefixes on containerd: only the exact id counts.
        let filter = ContainerFilter { id: id.to_string(), ..ContainerFilter::default() };
        let listed = self.client.list_containers(ListContainersRequest { filter: Some(filter) }).await;
        let listed = listed.map_err(|s| rpc_error(&self.socket, "ListContainers", &s))?.into_inner();
        let Some(listed) = listed.containers.into_iter().find(|c| c.id == id) else { return Ok(None) };

        let request = ContainerStatusRequest { container_id: id.to_string(), verbose: false };
        let status = match self.client.container_status(request).await {
            Ok(resp) => resp.into_inner().status,
            // Removed between the two calls.
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(rpc_error(&self.socket, "ContainerStatus", &s)),
        };
        let Some(status) = status else { return Ok(None) };

        let request = PodSandboxStatusRequest { pod_sandbox_id: listed.pod_sandbox_id.clone(), verbose: false };
        // A container outlives its sandbox only briefly; its own metadata still counts then.
        let sandbox = match self.client.pod_sandbox_status(request).await {
            Ok(resp) => resp.into_inner().status,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(rpc_error(&self.socket, "PodSandboxStatus", &s)),
        };

        let image = status.image.map(|i| i.image).filter(|i| !i.is_empty());
        let image = image.or(listed.image.map(|i| i.image)).unwrap_or_default();
        let image_ref = if status.image_ref.is_empty() { listed.image_ref } else { status.image_ref };
        let mut meta = ContainerMeta::from_labels(id, image, sorted(status.labels));
        meta.image_digest = digest_of(&image_ref);
        if let Some(name) = status.metadata.map(|m| m.name).filter(|n| !n.is_empty()) {
            meta.container_name = Some(name);
        }
        let (mut pod_labels, mut pod_ip) = (BTreeMap::new(), None);
        if let Some(sandbox) = sandbox {
            if let Some(pod) = sandbox.metadata {
                let set = |field: &mut Option<String>, value: String| {
                    if !value.is_empty() {
                        *field = Some(value);
                    }
                };
                set(&mut meta.pod_name, pod.name);
                set(&mut meta.pod_namespace, pod.namespace);
                set(&mut meta.pod_uid, pod.uid);
            }
            pod_labels = sorted(sandbox.labels);
            pod_ip = sandbox.network.map(|n| n.ip).filter(|ip| !ip.is_empty());
        }
        if let Some(pod) = &meta.pod_name {
            // Kubelet's controller labels (pod-template-hash, ...) are on the pod, not the container.
            meta.workload = infer(pod, &pod_labels).or(meta.workload.take());
        }
        Ok(Some(CriContainer {
            meta,
            annotations: sorted(status.annotations),
            sandbox_id: listed.pod_sandbox_id,
            pod_labels,
            pod_ip,
        }))
    }
}

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

/// The content digest in a CRI image ref: `repo@sha256:<hex>` (a repo digest,
/// the manifest's) or a bare `sha256:<hex>` (an image id; on containerd that
/// is the config's digest). Tags and anything malformed give None.
pub fn digest_of(image_ref: &str) -> Option<String> {
    let digest = image_ref.rsplit_once('@').map_or(image_ref, |(_, d)| d);
    let hex = digest.strip_prefix("sha256:")?;
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (hex.len() == 64 && hex.bytes().all(lower_hex)).then(|| digest.to_string())
}
