//! A private containerd with its CRI plugin on, driven through the CRI API
//! (`runtime.v1`) the way kubelet drives it: `RunPodSandbox` with kubelet's
//! labels, annotations and cgroupfs-driver cgroup parent, then
//! `CreateContainer` and `StartContainer`.
//!
//! Like [`crate::lab::Lab`], every [`CriLab`] owns its containerd process,
//! socket and root/state/runc dirs under a fresh temp dir; its pods live
//! under a top-level cgroup of its own (`/tracelake-cri-<pid>-<n>/kubepods/
//! besteffort/pod<uid>`), so labs in parallel tests share nothing. Pods use
//! the node's network, so no CNI plugin is involved. There is no registry:
//! the sandbox ("pause") and container image is a busybox image built here
//! and imported with `ctr`, with a tag and a repo digest as a pulled image has.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest, ImageSpec, ImageStatusRequest,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
    StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::lab::image::{add_blob, oci_arch, tar_cmd, write_blob};
use crate::lab::{
    BUSYBOX_CANDIDATES, CLEANUP_TIMEOUT, CONTAINER_PATH, CTR_TIMEOUT, LabError, START_TIMEOUT, checked, io_err,
    lab_available, poll, run_with_timeout, search_path, unified_cgroup, unified_root, wait_for_exec,
};

/// The image pods and containers of a [`CriLab`] run: the sandbox image and
/// the default container image.
pub const CRI_IMAGE: &str = "docker.io/tracelake/cri-lab:1";
/// Each CRI call; RunPodSandbox includes a runc start.
const CRI_TIMEOUT: Duration = Duration::from_secs(60);
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// The CRI plugin as a kubelet node with the cgroupfs driver has it, minus
/// what a private instance must not share with the host: the stream server
/// gets a random port (the default 10010 would clash between labs), runc a
/// root of its own, CNI empty dirs (host-network pods need no CNI). The
/// legacy runtime.v1.linux plugin must stay: the 1.6 tasks service refuses
/// to load without it. `restrict_oom_score_adj`: the sandbox's default -998
/// needs CAP_SYS_RESOURCE, which test hosts (and rootless nodes) may lack;
/// with it CRI keeps scores at or above containerd's own.
const CONTAINERD_CONFIG: &str = r#"version = 2
root = "@DIR@/root"
state = "@DIR@/state"
disabled_plugins = ["io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "@SOCK@"
[ttrpc]
  address = "@SOCK@.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "@IMAGE@"
  disable_cgroup = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "@DIR@/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "@DIR@/cni/bin"
    conf_dir = "@DIR@/cni/conf"
"#;

/// The one cleanup path, as in the lab (see its CLEANUP): runs when its
/// stdin reaches EOF, i.e. when the [`CriLab`] is dropped or the test process
/// dies. CRI keeps everything in containerd's `k8s.io` namespace; the pods'
/// cgroups are all under the lab's own top-level cgroup `$top`, created by
/// runc and never removed by it (kubelet removes pod cgroups).
const CLEANUP: &str = r#"
bb="$1"; ctr="$2"; addr="$3"; cpid="$4"; dir="$5"; cg="$6"; top="$7"
while read -r _; do :; done
c() { "$ctr" --connect-timeout 5s --address "$addr" --namespace k8s.io "$@" 2>/dev/null; }
for id in $(c containers ls -q); do (c tasks rm --force "$id"; c containers rm "$id") >/dev/null & done
wait
retry() { i=0; until "$@"; do [ $((i += 1)) -gt 100 ] && return 1; "$bb" sleep 0.05; done; }
gone() { [ ! -e "/proc/$1" ] || "$bb" grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
kill -TERM "$cpid" 2>/dev/null && ! retry gone "$cpid" && kill -KILL "$cpid"
for p in /proc/[0-9]*; do
  case "$("$bb" tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
    *containerd-shim*" -address $addr "*) kill -KILL "${p#/proc/}" ;;
  esac
done
for a in "$dir/state/io.containerd.runtime.v2.task/k8s.io"/*/address; do
  [ -f "$a" ] && s="$("$bb" cat "$a")" && "$bb" rm -f "${s#unix://}"
done
[ -e "$cg/$top/cgroup.kill" ] && echo 1 > "$cg/$top/cgroup.kill"
rmcg() { for d in $("$bb" find /sys/fs/cgroup/*/"$top" "$cg/$top" -depth -type d 2>/dev/null); do
  [ ! -d "$d" ] || "$bb" rmdir "$d" 2>/dev/null || return 1; done; }
retry rmcg
"$bb" awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | "$bb" sort -r |
  while read -r m; do "$bb" umount -l "$m"; done
"$bb" rm -rf "$dir"
"#;

/// Why a CRI lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CriLabError {
    /// Starting containerd, running `ctr` or reading /proc failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// containerd's CRI plugin answered with an error.
    #[error("CRI {rpc} failed: {code:?}: {message}")]
    Cri { rpc: &'static str, code: tonic::Code, message: String },
    /// The call did not return in time.
    #[error("CRI {rpc} did not answer within {timeout:?}")]
    Timeout { rpc: &'static str, timeout: Duration },
    /// The answer lacked something the lab needs.
    #[error("CRI {rpc}: {what}")]
    Unexpected { rpc: &'static str, what: String },
}

/// The lab's image as imported: a tag and a repo digest naming one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriImage {
    /// The tag, [`CRI_IMAGE`].
    pub reference: String,
    /// `<repository>@<manifest digest>`, what CRI reports as a container's image ref.
    pub repo_digest: String,
    /// The manifest's digest (`sha256:...`).
    pub digest: String,
    /// The image config's digest: the image id.
    pub config_digest: String,
}

/// A pod as kubelet describes it to `RunPodSandbox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// The pod's name.
    pub name: String,
    /// The pod's Kubernetes namespace.
    pub namespace: String,
    /// The pod's UID (36 characters, dashed); [`fresh_uid`] makes one.
    pub uid: String,
    /// Kubelet counts sandbox re-creations of one pod here.
    pub attempt: u32,
    /// The pod's own labels; kubelet's `io.kubernetes.pod.*` ones are added.
    pub labels: Vec<(String, String)>,
}

impl PodSpec {
    /// A pod with no labels of its own, attempt 0.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, uid: impl Into<String>) -> PodSpec {
        PodSpec { name: name.into(), namespace: namespace.into(), uid: uid.into(), attempt: 0, labels: Vec::new() }
    }

    /// Adds a pod label (e.g. `pod-template-hash`).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> PodSpec {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// The labels kubelet puts on the sandbox: the pod's plus its identity.
    fn sandbox_labels(&self) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = self.labels.iter().cloned().collect();
        labels.extend(self.identity());
        labels
    }

    fn identity(&self) -> [(String, String); 3] {
        [
            ("io.kubernetes.pod.name".into(), self.name.clone()),
            ("io.kubernetes.pod.namespace".into(), self.namespace.clone()),
            ("io.kubernetes.pod.uid".into(), self.uid.clone()),
        ]
    }
}

/// A UUID-shaped pod UID unique to this process and call.
pub fn fresh_uid() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let (pid, seq) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    format!("{pid:08x}-{:04x}-4{:03x}-8{:03x}-{nanos:08x}{seq:04x}", seq & 0xffff, nanos >> 20 & 0xfff, seq & 0xfff)
}

/// A running pod sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The id `RunPodSandbox` returned.
    pub sandbox_id: String,
    /// What the pod was started from.
    pub spec: PodSpec,
    /// kubelet's cgroupfs-driver pod cgroup, under the lab's top-level cgroup.
    pub cgroup_parent: String,
}

/// A started container of a [`Pod`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContainer {
    /// The id `CreateContainer` returned (64 hex digits).
    pub id: String,
    /// The name in its `ContainerMetadata`.
    pub name: String,
    /// The pod sandbox it runs in.
    pub sandbox_id: String,
    /// Its pod's UID.
    pub pod_uid: String,
    /// Host pid of its init process.
    pub pid: u32,
    /// Its cgroup v2 path as `/proc/<pid>/cgroup` shows it (the `0::` line).
    pub cgroup: String,
    /// Its directory in the unified hierarchy.
    pub cgroup_dir: PathBuf,
    /// cgroup v2 id, as `bpf_get_current_cgroup_id()` reports it inside.
    pub cgroup_id: u64,
}

/// A private containerd with CRI. Dropping it removes every pod and
/// container, stops containerd and removes the lab's cgroups and mounts.
#[derive(Debug)]
pub struct CriLab {
    dir: PathBuf,
    address: PathBuf,
    /// Top-level cgroup (no slashes) every pod of this lab lives under.
    cgroup_top: String,
    /// Runs the gRPC client; calls are made from any thread, async or not.
    rt: Option<tokio::runtime::Runtime>,
    runtime: RuntimeServiceClient<Channel>,
    image: CriImage,
    containerd: Option<Child>,
    /// The cleanup script and the write end of its stdin.
    cleanup: Option<(Child, ChildStdin)>,
    /// Removes the lab dir on drop if the cleanup script could not.
    _tempdir: tempfile::TempDir,
}

impl CriLab {
    /// Starts containerd with CRI, imports the lab's image and waits until
    /// CRI knows it.
    pub fn start() -> Result<CriLab, CriLabError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        lab_available().map_err(LabError::Unavailable)?;
        let bb = BUSYBOX_CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file());
        let bb = bb.ok_or_else(|| LabError::Unavailable("no busybox".into()))?;
        let tempdir = tempfile::Builder::new().prefix("tracelake-cri-").tempdir().map_err(io_err("mkdtemp"))?;
        let dir = tempdir.path().to_path_buf();
        let address = dir.join("containerd.sock");
        // sun_path holds 108 bytes and containerd adds ".ttrpc" for its second socket.
        if address.as_os_str().len() > 100 {
            let why = format!("socket path {} too long; shorten TMPDIR", address.display());
            return Err(LabError::Unavailable(why).into());
        }
        let cgroup_top = format!("tracelake-cri-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        for d in ["cni/bin", "cni/conf", "pods"] {
            fs::create_dir_all(dir.join(d)).map_err(io_err(format!("creating {d}")))?;
        }
        let (archive, image) = build_image(&dir, &bb)?;
        let config = dir.join("config.toml");
        let text = CONTAINERD_CONFIG
            .replace("@SOCK@", &address.to_string_lossy())
            .replace("@DIR@", &dir.to_string_lossy())
            .replace("@IMAGE@", CRI_IMAGE);
        fs::write(&config, text).map_err(io_err("writing containerd config"))?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
        let rt = rt.map_err(io_err("starting a tokio runtime"))?;
        let runtime = {
            // The channel's worker task runs on the lab's own runtime.
            let _entered = rt.enter();
            RuntimeServiceClient::new(unix_channel(&address))
        };

        let log = fs::File::create(dir.join("containerd.log")).map_err(io_err("creating containerd.log"))?;
        let log2 = log.try_clone().map_err(io_err("duplicating log fd"))?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config).env("PATH", search_path()).stdin(Stdio::null()).stdout(log).stderr(log2);
        // Own process group: a terminal Ctrl-C must not kill containerd
        // before the cleanup script has removed its containers.
        let child = cmd.process_group(0).spawn().map_err(io_err("starting containerd"))?;
        let cpid = child.id();
        let mut lab = CriLab {
            dir,
            address,
            cgroup_top,
            rt: Some(rt),
            runtime,
            image,
            containerd: Some(child),
            cleanup: None,
            _tempdir: tempdir,
        };
        lab.spawn_cleanup(&bb, cpid)?;
        lab.wait_ready()?;
        lab.import(&archive)?;
        Ok(lab)
    }

    fn spawn_cleanup(&mut self, bb: &Path, cpid: u32) -> Result<(), LabError> {
        let cg = unified_root().unwrap_or_default();
        let mut cmd = Command::new(bb);
        cmd.args(["sh", "-c", CLEANUP, "tracelake-cri-cleanup"]).arg(bb).arg("ctr").arg(&self.address);
        cmd.arg(cpid.to_string()).arg(&self.dir).arg(cg).arg(&self.cgroup_top);
        cmd.env("PATH", search_path()).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.process_group(0).spawn().map_err(io_err("starting the cleanup script"))?;
        self.cleanup = child.stdin.take().map(|stdin| (child, stdin));
        Ok(())
    }

    /// Until CRI answers `Version` (the CRI plugin loads after containerd's socket is up).
    fn wait_ready(&mut self) -> Result<(), CriLabError> {
        let (mut exited, mut last) = (None, String::new());
        let answered = poll(START_TIMEOUT, || {
            exited = self.containerd.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || !self.address.exists() {
                return exited.is_some();
            }
            let mut c = self.runtime.clone();
            let version =
                self.call("Version", Duration::from_secs(5), async move { c.version(VersionRequest::default()).await });
            version.map_err(|e| last = e.to_string()).is_ok()
        });
        let reason = match exited {
            None if answered => return Ok(()),
            Some(status) => format!("containerd exited with {status}"),
            None => format!("no CRI answer on {} after {START_TIMEOUT:?}: {last}", self.address.display()),
        };
        let log = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        Err(LabError::Startup { reason, log_tail: lines[lines.len().saturating_sub(20)..].join("\n") }.into())
    }

    /// Imports the image archive into CRI's namespace and waits until CRI has
    /// seen it: CRI's image store follows containerd's image events.
    fn import(&self, archive: &Path) -> Result<(), CriLabError> {
        let mut cmd = self.ctr();
        cmd.args(["images", "import"]).arg(archive);
        checked(run_with_timeout(cmd, IMPORT_TIMEOUT)?, &format!("ctr images import {}", archive.display()))?;
        let _ = fs::remove_file(archive);
        let images = {
            let rt = self.rt.as_ref().ok_or_else(|| shut_down("ImageStatus"))?;
            let _entered = rt.enter();
            ImageServiceClient::new(unix_channel(&self.address))
        };
        let mut last = None;
        let seen = poll(CTR_TIMEOUT, || {
            let mut c = images.clone();
            let spec = ImageSpec { image: CRI_IMAGE.into(), ..ImageSpec::default() };
            let status = self.call("ImageStatus", CRI_TIMEOUT, async move {
                c.image_status(ImageStatusRequest { image: Some(spec), verbose: false }).await
            });
            match status {
                Ok(s) => s.image.is_some(),
                Err(e) => {
                    last = Some(e);
                    false
                }
            }
        });
        match (seen, last) {
            (true, _) => Ok(()),
            (false, Some(e)) => Err(e),
            (false, None) => {
                Err(CriLabError::Unexpected { rpc: "ImageStatus", what: format!("{CRI_IMAGE} not found") })
            }
        }
    }

    /// Runs a pod sandbox as kubelet does: kubelet's labels, host network,
    /// the pod cgroup `<lab cgroup>/kubepods/besteffort/pod<uid>`.
    pub fn run_pod(&self, spec: &PodSpec) -> Result<Pod, CriLabError> {
        for (what, value) in [("name", &spec.name), ("namespace", &spec.namespace), ("uid", &spec.uid)] {
            // They become path components (cgroup, log directory).
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
                return Err(LabError::InvalidSpec(format!("pod {what} {value:?}")).into());
            }
        }
        let cgroup_parent = format!("{}/kubepods/besteffort/pod{}", self.cgroup_root(), spec.uid);
        let config = self.sandbox_config(spec, &cgroup_parent)?;
        let mut c = self.runtime.clone();
        let request = RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        let resp = self.call("RunPodSandbox", CRI_TIMEOUT, async move { c.run_pod_sandbox(request).await })?;
        Ok(Pod { sandbox_id: resp.pod_sandbox_id, spec: spec.clone(), cgroup_parent })
    }

    /// What kubelet sends as a pod's sandbox config; it sends it again with
    /// every `CreateContainer` (containerd takes the cgroup parent from there).
    fn sandbox_config(&self, spec: &PodSpec, cgroup_parent: &str) -> Result<PodSandboxConfig, LabError> {
        let log_dir = self.dir.join("pods").join(format!("{}_{}_{}", spec.namespace, spec.name, spec.uid));
        fs::create_dir_all(&log_dir).map_err(io_err(format!("creating {}", log_dir.display())))?;
        let annotations = HashMap::from([("kubernetes.io/config.source".to_string(), "api".to_string())]);
        Ok(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.clone(),
                uid: spec.uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: spec.attempt,
            }),
            // Kubelet sets none for host-network pods: they share the node's UTS
            // namespace, where runc refuses to set one.
            hostname: String::new(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: spec.sandbox_labels(),
            annotations,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.to_string(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        })
    }

    /// Creates and starts container `name` in `pod` running `command`, with
    /// kubelet's labels and annotations, and returns once its init process
    /// has exec'd. The image is named by its id, as kubelet does after a pull.
    pub fn start_container(&self, pod: &Pod, name: &str, command: &[&str]) -> Result<PodContainer, CriLabError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(LabError::InvalidSpec(format!("container name {name:?}")).into());
        }
        let sandbox_config = self.sandbox_config(&pod.spec, &pod.cgroup_parent)?;
        let log_dir = Path::new(&sandbox_config.log_directory).join(name);
        fs::create_dir_all(&log_dir).map_err(io_err(format!("creating {}", log_dir.display())))?;
        let mut labels: HashMap<String, String> = pod.spec.identity().into_iter().collect();
        labels.insert("io.kubernetes.container.name".into(), name.into());
        let annotations = [
            ("io.kubernetes.container.restartCount", "0"),
            ("io.kubernetes.container.terminationMessagePath", "/dev/termination-log"),
            ("io.kubernetes.container.terminationMessagePolicy", "File"),
            ("io.kubernetes.pod.terminationGracePeriod", "30"),
        ];
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(ImageSpec {
                image: self.image.config_digest.clone(),
                user_specified_image: CRI_IMAGE.into(),
                ..ImageSpec::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            envs: vec![KeyValue { key: "PATH".into(), value: "/bin:/sbin:/usr/bin:/usr/sbin".into() }],
            labels,
            annotations: annotations.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            log_path: format!("{name}/0.log"),
            linux: Some(LinuxContainerConfig {
                // What kubelet gives a besteffort container.
                resources: Some(LinuxContainerResources {
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..LinuxContainerResources::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..LinuxContainerSecurityContext::default()
                }),
            }),
            ..ContainerConfig::default()
        };
        let request = CreateContainerRequest {
            pod_sandbox_id: pod.sandbox_id.clone(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let mut c = self.runtime.clone();
        let id = self.call("CreateContainer", CRI_TIMEOUT, async move { c.create_container(request).await })?;
        let id = id.container_id;
        let mut c = self.runtime.clone();
        let request = StartContainerRequest { container_id: id.clone() };
        self.call("StartContainer", CRI_TIMEOUT, async move { c.start_container(request).await })?;
        let pid = self.init_pid(&id)?;
        wait_for_exec(pid);
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(io_err(format!("/proc/{pid}/cgroup")))?;
        let cgroup = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_default().to_string();
        let (cgroup_dir, cgroup_id) = unified_cgroup(pid)?;
        Ok(PodContainer {
            id,
            name: name.into(),
            sandbox_id: pod.sandbox_id.clone(),
            pod_uid: pod.spec.uid.clone(),
            pid,
            cgroup,
            cgroup_dir,
            cgroup_id,
        })
    }

    /// containerd's verbose container status carries the init pid in its `info` JSON.
    fn init_pid(&self, id: &str) -> Result<u32, CriLabError> {
        let mut c = self.runtime.clone();
        let request = ContainerStatusRequest { container_id: id.into(), verbose: true };
        let status = self.call("ContainerStatus", CRI_TIMEOUT, async move { c.container_status(request).await })?;
        let info = status.info.get("info").map(|i| serde_json::from_str::<serde_json::Value>(i));
        let pid = info.and_then(Result::ok).and_then(|v| v.get("pid").and_then(serde_json::Value::as_u64));
        let unexpected = || CriLabError::Unexpected { rpc: "ContainerStatus", what: format!("no pid for {id}") };
        pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0).ok_or_else(unexpected)
    }

    /// Stops (SIGKILL at once) and removes a container, as kubelet does
    /// when a pod is deleted with a zero grace period.
    pub fn remove_container(&self, id: &str) -> Result<(), CriLabError> {
        let mut c = self.runtime.clone();
        let request = StopContainerRequest { container_id: id.into(), timeout: 0 };
        self.call("StopContainer", CRI_TIMEOUT, async move { c.stop_container(request).await })?;
        let mut c = self.runtime.clone();
        let request = RemoveContainerRequest { container_id: id.into() };
        self.call("RemoveContainer", CRI_TIMEOUT, async move { c.remove_container(request).await })?;
        Ok(())
    }

    /// Stops and removes a pod sandbox and every container in it.
    pub fn remove_pod(&self, pod: &Pod) -> Result<(), CriLabError> {
        let mut c = self.runtime.clone();
        let request = StopPodSandboxRequest { pod_sandbox_id: pod.sandbox_id.clone() };
        self.call("StopPodSandbox", CRI_TIMEOUT, async move { c.stop_pod_sandbox(request).await })?;
        let mut c = self.runtime.clone();
        let request = RemovePodSandboxRequest { pod_sandbox_id: pod.sandbox_id.clone() };
        self.call("RemovePodSandbox", CRI_TIMEOUT, async move { c.remove_pod_sandbox(request).await })?;
        Ok(())
    }

    /// containerd's socket, which serves CRI (`runtime.v1`) too.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The image every pod and container of the lab runs.
    pub fn image(&self) -> &CriImage {
        &self.image
    }

    /// The lab's top-level cgroup (e.g. `/tracelake-cri-123-0`); kubelet's
    /// `/kubepods` tree is below it.
    pub fn cgroup_root(&self) -> String {
        format!("/{}", self.cgroup_top)
    }

    /// A `ctr` command pointed at this lab's socket and CRI's `k8s.io` namespace.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        // Without a dial timeout, ctr waits 10s when the socket is missing.
        cmd.env("PATH", search_path()).stdin(Stdio::null()).args(["--connect-timeout", "5s", "--namespace", "k8s.io"]);
        cmd.arg("--address").arg(&self.address);
        cmd
    }

    /// Runs one gRPC call on the lab's runtime and waits for it, so callers
    /// need no runtime of their own and may be inside one.
    fn call<T, F>(&self, rpc: &'static str, timeout: Duration, call: F) -> Result<T, CriLabError>
    where
        T: Send + 'static,
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
    {
        let rt = self.rt.as_ref().ok_or_else(|| shut_down(rpc))?;
        let (tx, rx) = mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(tokio::time::timeout(timeout, call).await);
        });
        match rx.recv_timeout(timeout + Duration::from_secs(5)) {
            Ok(Ok(Ok(resp))) => Ok(resp.into_inner()),
            Ok(Ok(Err(status))) => {
                Err(CriLabError::Cri { rpc, code: status.code(), message: status.message().to_string() })
            }
            Ok(Err(_)) | Err(_) => Err(CriLabError::Timeout { rpc, timeout }),
        }
    }
}

impl Drop for CriLab {
    fn drop(&mut self) {
        // Safe inside another runtime, unlike dropping this one.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        let mut children: Vec<Child> = self.containerd.take().into_iter().collect();
        if let Some((mut script, stdin)) = self.cleanup.take() {
            drop(stdin);
            poll(CLEANUP_TIMEOUT, || !matches!(script.try_wait(), Ok(None)));
            children.push(script);
        }
        // Normally this only reaps what the script already stopped.
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn shut_down(rpc: &'static str) -> CriLabError {
    CriLabError::Unexpected { rpc, what: "the lab's runtime is shut down".into() }
}

/// Kubelet's namespaces for a host-network pod: the node's network, a pid
/// namespace per container, IPC shared in the pod.
fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..NamespaceOption::default()
    }
}

/// A channel to a unix socket, connected on first use (and again after a
/// failure); must be made inside a runtime.
fn unix_channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    // A unix socket has no URI; tonic wants one anyway and the connector ignores it.
    Endpoint::from_static("http://[::]").connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move { Ok::<_, io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
    }))
}

/// An OCI archive of a busybox image whose default command sleeps forever,
/// so it serves as the pods' pause image too. The index names one manifest
/// twice, by tag and by repo digest, as a pulled image is named.
fn build_image(dir: &Path, bb: &Path) -> Result<(PathBuf, CriImage), LabError> {
    let work = dir.join("image");
    let (rootfs, layout) = (work.join("rootfs"), work.join("layout"));
    let blobs = layout.join("blobs/sha256");
    let err = |what: &str| io_err(format!("building the CRI lab image: {what}"));
    fs::create_dir_all(&blobs).map_err(err("blobs"))?;
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "usr", "var/tmp"] {
        fs::create_dir_all(rootfs.join(d)).map_err(err(d))?;
    }
    fs::copy(bb, rootfs.join("bin/busybox")).map_err(err("bin/busybox"))?;
    let list = Command::new(bb).arg("--list").output().map_err(err("busybox --list"))?;
    let list = checked(list, "busybox --list")?;
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace().filter(|a| *a != "busybox") {
        symlink("busybox", rootfs.join("bin").join(applet)).map_err(err(applet))?;
    }
    for (link, target) in [("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin")] {
        symlink(target, rootfs.join(link)).map_err(err(link))?;
    }
    let files = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ];
    for (name, body) in files {
        fs::write(rootfs.join(name), body).map_err(err(name))?;
    }

    let layer = work.join("layer.tar");
    let mut tar = tar_cmd(&rootfs, &layer);
    let mut entries: Vec<_> =
        fs::read_dir(&rootfs).and_then(|d| d.map(|e| e.map(|e| e.file_name())).collect()).map_err(err("listing"))?;
    entries.sort();
    tar.args(&entries);
    checked(run_with_timeout(tar, IMPORT_TIMEOUT)?, "tar (image layer)")?;
    let layer = add_blob(&blobs, &layer)?;
    let arch = oci_arch();
    // A pause container must not exit: CRI refuses containers in a sandbox whose init is gone.
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["{CONTAINER_PATH}"],"Cmd":["sleep","inf"],"WorkingDir":"/"}},"rootfs":{{"type":"layers","diff_ids":["{}"]}},"history":[{{"created_by":"tracelake testkit CRI lab"}}]}}"#,
        layer.0
    );
    let config = write_blob(&blobs, &work.join("config.json"), &config)?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        config.0, config.1, layer.0, layer.1
    );
    let manifest = write_blob(&blobs, &work.join("manifest.json"), &manifest)?;
    let repository = CRI_IMAGE.rsplit_once(':').map_or(CRI_IMAGE, |(r, _)| r);
    let repo_digest = format!("{repository}@{}", manifest.0);
    let entry = |name: &str| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}},"annotations":{{"io.containerd.image.name":"{name}"}}}}"#,
            manifest.0, manifest.1
        )
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
        entry(CRI_IMAGE),
        entry(&repo_digest)
    );
    fs::write(layout.join("index.json"), index).map_err(err("index.json"))?;
    fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(err("oci-layout"))?;
    let archive = work.join("image.tar");
    let mut tar = tar_cmd(&layout, &archive);
    tar.args(["oci-layout", "index.json", "blobs"]);
    checked(run_with_timeout(tar, IMPORT_TIMEOUT)?, "tar (image archive)")?;
    let _ = fs::remove_dir_all(&rootfs);
    let _ = fs::remove_dir_all(&layout);
    let image = CriImage { reference: CRI_IMAGE.into(), repo_digest, digest: manifest.0, config_digest: config.0 };
    Ok((archive, image))
}
