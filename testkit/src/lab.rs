//! A private containerd ("lab") that runs real busybox containers for
//! end-to-end tests.
//!
//! Every [`Lab`] owns its own containerd process, socket, root/state dirs,
//! runc root and containerd namespace under a fresh temp dir, so labs in
//! parallel test processes share no daemon state, cgroups or shim sockets.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use std::{fs, thread};

pub(crate) mod image;
mod net;
mod rootfs;
pub use image::{IMAGE_REF, LabImage};
use net::{Attachment, LabNet};
use rootfs::{build_rootfs, find_busybox};

pub(crate) const CTR_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(15);
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Prepended to PATH so `containerd`, the shim and `runc` (in /usr/sbin) are
/// found even when tests run with a non-login PATH.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `ctr run --rootfs` has no image config, so without this the container has
/// no environment at all and runc cannot even resolve `sleep`.
pub(crate) const CONTAINER_PATH: &str = "PATH=/bin:/sbin:/usr/bin:/usr/sbin";
pub(crate) const BUSYBOX_CANDIDATES: [&str; 3] = ["/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"];
const TOOLS: [&str; 4] = ["containerd", "ctr", "containerd-shim-runc-v2", "runc"];

/// CRI would go looking for CNI and kubelet config, "opt" creates
/// /opt/containerd, and the exotic snapshotters only log noise; none are
/// needed for `ctr run --rootfs`. The legacy runtime.v1.linux plugin must
/// stay: the 1.6 tasks service refuses to load without it.
const CONTAINERD_CONFIG: &str = r#"version = 2
root = "@DIR@/root"
state = "@DIR@/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "@SOCK@"
[ttrpc]
  address = "@SOCK@.ttrpc"
"#;

/// `ctr task exec` relays output through FIFOs it closes as soon as the
/// process exits, so short execs under load lose output now and then (~1%
/// here). With `--log-uri binary://` the shim hands stdout and stderr to this
/// script on fds 3 and 4 (closing fd 5 = ready) and waits for it to exit. Its
/// SIGTERM comes right after it closes the pipes: the copies get up to a
/// second to drain, as a background child may still hold the output open.
const EXEC_LOGGER: &str = r#"#!@BB@ sh
exec 5>&-
"@BB@" cat <&3 >"$2.out" & o=$!
"@BB@" cat <&4 >"$2.err" & e=$!
copying() { "@BB@" grep -qs '^[0-9]* ([^)]*) [^Z]' "/proc/$o/stat" "/proc/$e/stat"; }
trap 'i=0; while copying && [ $((i += 1)) -lt 100 ]; do "@BB@" sleep 0.01; done; kill $o $e 2>/dev/null' TERM
wait
"#;

/// The one cleanup path, run by `busybox sh` beside containerd. It starts
/// when its stdin reaches EOF: when [`Lab`] is dropped, and equally when the
/// test process dies without dropping it (SIGKILL, `process::exit`, a leaked
/// static), since the kernel closes the write end either way.
const CLEANUP: &str = r#"
bb="$1"; ctr="$2"; addr="$3"; ns="$4"; cpid="$5"; dir="$6"; cg="$7"; br="$8"; netns="$9"
while read -r _; do :; done
c() { "$ctr" --connect-timeout 5s --address "$addr" --namespace "$ns" "$@" 2>/dev/null; }
for id in $(c containers ls -q); do (c tasks rm --force "$id"; c containers rm "$id") >/dev/null & done
wait
retry() { i=0; until "$@"; do [ $((i += 1)) -gt 100 ] && return 1; "$bb" sleep 0.05; done; }
# containerd is our owner's child: once dead it stays a zombie until reaped.
gone() { [ ! -e "/proc/$1" ] || "$bb" grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
kill -TERM "$cpid" 2>/dev/null && ! retry gone "$cpid" && kill -KILL "$cpid"
# Shims outlive containerd and never exit by themselves; they only remain
# here if a removal above failed. Their sockets sit in the hard-coded
# /run/containerd/s, named in each bundle's address file.
for p in /proc/[0-9]*; do
  case "$("$bb" tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
    *containerd-shim*" -address $addr "*) kill -KILL "${p#/proc/}" ;;
  esac
done
for a in "$dir/state/io.containerd.runtime.v2.task/$ns"/*/address; do
  [ -f "$a" ] && s="$("$bb" cat "$a")" && "$bb" rm -f "${s#unix://}"
done
[ -e "$cg/$ns/cgroup.kill" ] && echo 1 > "$cg/$ns/cgroup.kill"
rmcg() { for d in /sys/fs/cgroup/*/"$ns"/* /sys/fs/cgroup/*/"$ns" "$cg/$ns"/* "$cg/$ns"; do
  [ ! -d "$d" ] || "$bb" rmdir "$d" 2>/dev/null || return 1; done; }
retry rmcg
# Network namespaces and the bridge of networked containers (lab/net.rs).
if [ -n "$br" ]; then
  # What `ip netns delete` does; busybox sh would run its own `ip`, which lacks netns.
  for n in /var/run/netns/"$netns"*; do [ -e "$n" ] && "$bb" umount -l "$n" && "$bb" rm -f "$n"; done
  "$bb" ip link delete "$br" 2>/dev/null
fi
"$bb" awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | "$bb" sort -r |
  while read -r m; do "$bb" umount -l "$m"; done
"$bb" rm -rf "$dir"
"#;

/// Why a lab operation failed. Command failures carry the command line and
/// its stderr so a failing end-to-end test explains itself.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("container lab unavailable: {0}")]
    Unavailable(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed { command: String, status: ExitStatus, stderr: String },
    #[error("`{command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("containerd did not come up: {reason}; its log ends with:\n{log_tail}")]
    Startup { reason: String, log_tail: String },
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// Says what this machine lacks to run a [`Lab`], all problems at once.
pub fn lab_available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut missing: Vec<String> =
        (euid != 0).then(|| format!("must run as root (euid is {euid})")).into_iter().collect();
    let path = search_path();
    let is_exe = |p: PathBuf| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
    for tool in TOOLS.iter().filter(|t| !std::env::split_paths(&path).any(|d| is_exe(d.join(t)))) {
        missing.push(format!("`{tool}` not found on PATH ({})", path.to_string_lossy()));
    }
    missing.extend(find_busybox().err());
    missing.extend(unified_root().is_none().then(|| "no cgroup2 at /sys/fs/cgroup/unified or /sys/fs/cgroup".into()));
    if missing.is_empty() { Ok(()) } else { Err(missing.join("; ")) }
}

/// The unified (cgroup v2) directory of `pid` and its id. The id is the
/// directory's inode number, which on 64-bit kernels equals the kernfs id
/// that `bpf_get_current_cgroup_id()` reports.
pub fn unified_cgroup(pid: u32) -> Result<(PathBuf, u64), LabError> {
    let root = unified_root().ok_or_else(|| LabError::Unavailable("no cgroup2 hierarchy mounted".into()))?;
    let file = format!("/proc/{pid}/cgroup");
    let text = fs::read_to_string(&file).map_err(io_err(format!("reading {file}")))?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"));
    let rel = rel.ok_or_else(|| io_err(file.clone())(io::Error::other("no \"0::\" (cgroup2) line")))?;
    let dir = root.join(rel.trim_start_matches('/'));
    let ino = fs::metadata(&dir).map_err(io_err(format!("stat {}", dir.display())))?.ino();
    Ok((dir, ino))
}

/// What to run in a container. Only `args` is required; the rest defaults to
/// nothing (PATH is supplied unless `env` sets it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub id: String,
    pub args: Vec<String>,
    pub labels: Vec<(String, String)>,
    /// The whole environment as `KEY=value`; a PATH is added unless one is set.
    pub env: Vec<String>,
    /// Share the host network namespace instead of a private loopback-only one.
    pub net_host: bool,
    /// A network namespace of its own on the lab's bridge, with an address (CNI).
    pub network: bool,
    /// Pins the address (implies `network`); must be in the lab's subnet.
    pub ip: Option<String>,
    /// Created from the lab's image ([`Lab::image`]) on a snapshot, not from a rootfs dir.
    pub image: bool,
}

impl ContainerSpec {
    pub fn new(id: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { id: id.into(), args: args.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    pub fn env(mut self, entry: impl Into<String>) -> Self {
        self.env.push(entry.into());
        self
    }

    /// Real pod networking: own namespace, eth0 on the lab's bridge, an IP from its range.
    pub fn network(mut self) -> Self {
        self.network = true;
        self
    }

    /// Like [`ContainerSpec::network`] with this address (e.g. one a stopped container had).
    pub fn network_ip(mut self, ip: impl Into<String>) -> Self {
        self.network = true;
        self.ip = Some(ip.into());
        self
    }

    /// From the lab's busybox image, so containerd knows its image name and digest.
    pub fn image(mut self) -> Self {
        self.image = true;
        self
    }

    fn validate(&self) -> Result<(), String> {
        // containerd's identifier grammar; it also keeps `id` safe as a path component.
        let id = &self.id;
        let part_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric());
        if id.len() > 76 || !id.split(['.', '_', '-']).all(part_ok) {
            return Err(format!("id {id:?} must match [A-Za-z0-9]+([._-][A-Za-z0-9]+)*"));
        }
        if self.args.is_empty() {
            return Err(format!("container {id:?} has no command"));
        }
        if self.network && self.net_host {
            return Err(format!("container {id:?} cannot have both a network and the host's"));
        }
        match self.labels.iter().find(|(k, _)| k.is_empty() || k.contains('=')) {
            Some((k, _)) => Err(format!("label key {k:?} is empty or contains '='")),
            None => Ok(()),
        }
    }
}

/// State shared between a lab and its containers; `closed` tells containers
/// dropped after their lab that containerd is gone and there is nothing to do.
#[derive(Debug)]
struct Shared {
    address: PathBuf,
    namespace: String,
    dir: PathBuf,
    busybox: PathBuf,
    applets: Vec<String>,
    closed: AtomicBool,
    /// The lab's bridge, subnet and namespaces, or why there are none.
    net: Result<LabNet, String>,
    /// The imported image, once a container needed it.
    image: Mutex<Option<Arc<LabImage>>>,
}

impl Shared {
    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        // Without a dial timeout, ctr waits 10s when the socket is missing.
        cmd.env("PATH", search_path()).stdin(Stdio::null()).args(["--connect-timeout", "5s", "--namespace"]);
        cmd.arg(&self.namespace).arg("--address").arg(&self.address);
        cmd
    }
}

/// A private containerd with its own socket, dirs and namespace. Dropping it
/// removes every container it started and stops containerd.
#[derive(Debug)]
pub struct Lab {
    shared: Arc<Shared>,
    containerd: Option<Child>,
    /// The cleanup script and the write end of its stdin.
    cleanup: Option<(Child, ChildStdin)>,
    /// Removes the lab dir on drop if the cleanup script could not.
    _tempdir: tempfile::TempDir,
}

impl Lab {
    /// Starts containerd and waits until it answers `ctr version`.
    pub fn start() -> Result<Lab, LabError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        lab_available().map_err(LabError::Unavailable)?;
        let bb = find_busybox().map_err(LabError::Unavailable)?;
        let tempdir = tempfile::Builder::new().prefix("tracelake-lab-").tempdir().map_err(io_err("mkdtemp"))?;
        let dir = tempdir.path().to_path_buf();
        let address = dir.join("containerd.sock");
        // sun_path holds 108 bytes and containerd adds ".ttrpc" for its second socket.
        if address.as_os_str().len() > 100 {
            return Err(LabError::Unavailable(format!("socket path {} too long; shorten TMPDIR", address.display())));
        }
        let namespace = format!("tracelake-lab-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        fs::create_dir(dir.join("containers")).map_err(io_err("creating containers dir"))?;
        let config = dir.join("config.toml");
        let text =
            CONTAINERD_CONFIG.replace("@SOCK@", &address.to_string_lossy()).replace("@DIR@", &dir.to_string_lossy());
        fs::write(&config, text).map_err(io_err("writing containerd config"))?;

        // Copied once and hard-linked into each rootfs (one inode, like one
        // image) so no rootfs binary is ever open for writing: a child another
        // thread just forked may hold such an fd, and exec then fails with
        // ETXTBSY. That is also why the original lists the applets.
        let busybox = dir.join("busybox");
        fs::copy(&bb, &busybox).map_err(io_err(format!("copying {}", bb.display())))?;
        let logger = fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(dir.join("exec-logger"));
        let script = EXEC_LOGGER.replace("@BB@", &bb.to_string_lossy());
        logger.and_then(|mut f| f.write_all(script.as_bytes())).map_err(io_err("writing the exec logger"))?;
        let list = Command::new(&bb).arg("--list").output().map_err(io_err("running busybox --list"))?;
        let list = checked(list, "busybox --list")?;
        let applets = String::from_utf8_lossy(&list.stdout).split_whitespace().map(str::to_owned).collect();

        let log = fs::File::create(dir.join("containerd.log")).map_err(io_err("creating containerd.log"))?;
        let log2 = log.try_clone().map_err(io_err("duplicating log fd"))?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config).env("PATH", search_path()).stdin(Stdio::null()).stdout(log).stderr(log2);
        // Own process group: a terminal Ctrl-C must not kill containerd
        // before the cleanup script has removed its containers.
        let child = cmd.process_group(0).spawn().map_err(io_err("starting containerd"))?;

        let (cpid, closed) = (child.id(), AtomicBool::new(false));
        let net = LabNet::allocate(&dir).map_err(|e| e.to_string());
        let image = Mutex::new(None);
        let shared = Arc::new(Shared { address, namespace, dir, busybox, applets, closed, net, image });
        let mut lab = Lab { shared, containerd: Some(child), cleanup: None, _tempdir: tempdir };
        lab.spawn_cleanup(&bb, cpid)?;
        lab.wait_ready()?;
        Ok(lab)
    }

    fn spawn_cleanup(&mut self, bb: &Path, cpid: u32) -> Result<(), LabError> {
        let s = &self.shared;
        let (cg, cpid) = (unified_root().unwrap_or_default(), OsString::from(cpid.to_string()));
        let mut cmd = Command::new(bb);
        cmd.args(["sh", "-c", CLEANUP, "tracelake-lab-cleanup"]).arg(bb).arg("ctr");
        cmd.args([s.address.as_os_str(), s.namespace.as_ref(), cpid.as_os_str(), s.dir.as_os_str(), cg.as_os_str()]);
        cmd.env("PATH", search_path()).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Ok(net) = &s.net {
            cmd.args([net.bridge(), net.netns_prefix()]);
            // The script inherits the network index's lock: no other lab takes
            // the index before the script has removed this one's leftovers.
            let fd = net.lock_fd();
            // SAFETY: fcntl is async-signal-safe and only touches the child's fd table.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
                })
            };
        }
        let mut child = cmd.process_group(0).spawn().map_err(io_err("starting the cleanup script"))?;
        self.cleanup = child.stdin.take().map(|stdin| (child, stdin));
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), LabError> {
        let (shared, mut exited) = (Arc::clone(&self.shared), None);
        let answered = poll(START_TIMEOUT, || {
            exited = self.containerd.as_mut().and_then(|c| c.try_wait().ok().flatten());
            let mut version = shared.ctr();
            version.arg("version");
            exited.is_some()
                || shared.address.exists()
                    && run_with_timeout(version, Duration::from_secs(5)).is_ok_and(|o| o.status.success())
        });
        let reason = match exited {
            None if answered => return Ok(()),
            Some(status) => format!("containerd exited with {status}"),
            None => format!("no answer on {} after {START_TIMEOUT:?}", shared.address.display()),
        };
        let log = fs::read_to_string(shared.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        Err(LabError::Startup { reason, log_tail: lines[lines.len().saturating_sub(20)..].join("\n") })
    }

    /// Runs a detached container on a fresh copy of the busybox rootfs (or a
    /// snapshot of the lab's image, see [`ContainerSpec::image`]) and returns
    /// once its init process has exec'd the requested command.
    pub fn run(&self, spec: &ContainerSpec) -> Result<Container, LabError> {
        spec.validate().map_err(LabError::InvalidSpec)?;
        let s = &self.shared;
        let bundle = s.dir.join("containers").join(&spec.id);
        fs::create_dir(&bundle).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => LabError::InvalidSpec(format!("id {:?} already used in this lab", spec.id)),
            _ => io_err(format!("creating {}", bundle.display()))(e),
        })?;
        // From here on, dropping `container` deletes whatever ctr created.
        let mut container = Container {
            shared: Arc::clone(s),
            id: spec.id.clone(),
            pid: 0,
            cgroup: Default::default(),
            rootfs: bundle.join("rootfs"),
            bundle: bundle.clone(),
            removed: false,
            net: None,
        };
        // An image's container runs on the snapshot the shim mounts in its task dir.
        let source: OsString = if spec.image {
            let task = s.dir.join("state/io.containerd.runtime.v2.task").join(&s.namespace).join(&spec.id);
            container.rootfs = task.join("rootfs");
            image::lab_image(s)?.reference.clone().into()
        } else {
            build_rootfs(s, &container.rootfs, &spec.id)?;
            container.rootfs.clone().into()
        };
        if spec.network {
            let net = s.net.as_ref().map_err(|e| LabError::Unavailable(format!("lab networking: {e}")))?;
            container.net = Some(net.attach(&spec.id, spec.ip.as_deref())?);
        }
        let (pid_file, log_uri) = (bundle.join("init.pid"), format!("file://{}", container.log_path().display()));
        let mut cmd = s.ctr();
        cmd.args(["run", "--detach"]).args((!spec.image).then_some("--rootfs")).args(["--log-uri", &log_uri]);
        cmd.args(spec.net_host.then_some("--net-host"));
        if let Some(att) = &container.net {
            cmd.arg("--with-ns").arg(format!("network:{}", att.netns.display()));
        }
        cmd.args([OsStr::new("--pid-file"), pid_file.as_os_str(), "--runc-root".as_ref()]).arg(s.dir.join("runc"));
        let default_path = (!spec.env.iter().any(|e| e.starts_with("PATH="))).then(|| CONTAINER_PATH.to_owned());
        cmd.args(default_path.iter().chain(&spec.env).flat_map(|e| ["--env", e]));
        cmd.args(spec.labels.iter().flat_map(|(k, v)| ["--label".to_owned(), format!("{k}={v}")]));
        cmd.arg(source).arg(&spec.id).args(&spec.args);
        checked(run_with_timeout(cmd, CTR_TIMEOUT)?, &format!("ctr run {} {}", spec.id, spec.args.join(" ")))?;

        let pid = fs::read_to_string(&pid_file).map_err(io_err(format!("reading {}", pid_file.display())))?;
        container.pid =
            pid.trim().parse().map_err(|e| io_err(format!("pid file says {pid:?}"))(io::Error::other(e)))?;
        wait_for_exec(container.pid);
        // An init that already exited has no /proc entry, but its cgroup
        // stays until the task is deleted, at the path ctr always chooses.
        let found = unified_cgroup(container.pid).or_else(|e| {
            let dir = unified_root().unwrap_or_default().join(&s.namespace).join(&spec.id);
            fs::metadata(&dir).map(|m| (dir, m.ino())).map_err(|_| e)
        });
        container.cgroup = found?;
        Ok(container)
    }

    /// containerd's gRPC socket.
    pub fn address(&self) -> &Path {
        &self.shared.address
    }

    /// The containerd namespace every container of this lab lives in.
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// A `ctr` command already pointed at this lab's socket and namespace.
    pub fn ctr(&self) -> Command {
        self.shared.ctr()
    }

    /// The subnet networked containers get addresses from (e.g. `10.213.4.0/24`), and the bridge's name.
    pub fn network(&self) -> Result<(String, String), LabError> {
        let net = self.shared.net.as_ref().map_err(|e| LabError::Unavailable(format!("lab networking: {e}")))?;
        Ok((net.subnet(), net.bridge()))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
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

/// A running container. Dropping it kills and deletes it (best effort);
/// [`Container::stop`] does the same but reports failures.
#[derive(Debug)]
pub struct Container {
    shared: Arc<Shared>,
    id: String,
    pid: u32,
    /// Unified cgroup directory and id.
    cgroup: (PathBuf, u64),
    bundle: PathBuf,
    rootfs: PathBuf,
    removed: bool,
    net: Option<Attachment>,
}

impl Container {
    /// The container's address on the lab's bridge, if it was started with a network.
    pub fn ip(&self) -> Option<&str> {
        self.net.as_ref().map(|a| a.ip.as_str())
    }

    /// Path of its network namespace (under /var/run/netns), if it has a network.
    pub fn netns(&self) -> Option<&Path> {
        self.net.as_ref().map(|a| a.netns.as_path())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the container's init process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// cgroup v2 id, as `bpf_get_current_cgroup_id()` reports it inside the container.
    pub fn cgroup_id(&self) -> u64 {
        self.cgroup.1
    }

    /// The container's directory in the unified cgroup hierarchy.
    pub fn cgroup_path(&self) -> &Path {
        &self.cgroup.0
    }

    /// Host path of the container's writable root filesystem. Everything in
    /// it is private to the container except `/bin/busybox`, a hard link
    /// shared by all containers of the lab. In image mode it is the overlay
    /// mount of the container's snapshot, there while its task exists.
    pub fn rootfs(&self) -> PathBuf {
        self.rootfs.clone()
    }

    /// File receiving the init process's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.bundle.join("output.log")
    }

    /// Runs `args` inside the container and waits for it. A non-zero exit of
    /// the process is not an error: check `status` (ctr itself also exits 1
    /// with `ctr: ...` on stderr when the exec cannot start).
    pub fn exec(&self, exec_id: &str, args: &[&str]) -> Result<Output, LabError> {
        self.exec_with_timeout(exec_id, args, EXEC_TIMEOUT)
    }

    /// Like [`Container::exec`]; on timeout `ctr` is killed but the process may live on.
    pub fn exec_with_timeout(&self, exec_id: &str, args: &[&str], timeout: Duration) -> Result<Output, LabError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = &self.shared.dir;
        let out = dir.join(format!("exec-{}", SEQ.fetch_add(1, Ordering::Relaxed)));
        let uri = format!("binary://{}?out={}", dir.join("exec-logger").display(), out.display());
        let mut cmd = self.shared.ctr();
        cmd.args(["tasks", "exec", "--exec-id", exec_id, "--log-uri", &uri, &self.id]).args(args);
        let result = run_with_timeout(cmd, timeout);
        let take = |ext| {
            let bytes = fs::read(out.with_extension(ext)).unwrap_or_default();
            let _ = fs::remove_file(out.with_extension(ext));
            bytes
        };
        let (stdout, mut stderr) = (take("out"), take("err"));
        let ctr = result?;
        // ctr's own complaints, e.g. about an unknown command, follow the process's.
        stderr.extend(ctr.stderr);
        Ok(Output { status: ctr.status, stdout, stderr })
    }

    /// Kills the task, deletes task and container, and waits until the init
    /// pid has disappeared.
    pub fn stop(mut self) -> Result<(), LabError> {
        self.remove()
    }

    fn remove(&mut self) -> Result<(), LabError> {
        if std::mem::replace(&mut self.removed, true) || self.shared.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        // "Not found" is fine: the task or container is already gone.
        for args in [&["tasks", "rm", "--force"][..], &["containers", "rm"][..]] {
            let mut cmd = self.shared.ctr();
            cmd.args(args).arg(&self.id);
            let out = run_with_timeout(cmd, CTR_TIMEOUT)?;
            if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("not found") {
                checked(out, &format!("ctr {} {}", args.join(" "), self.id))?;
            }
        }
        poll(Duration::from_secs(5), || self.pid == 0 || !Path::new(&format!("/proc/{}", self.pid)).exists());
        let _ = fs::remove_dir_all(&self.bundle);
        match (self.net.take(), &self.shared.net) {
            (Some(att), Ok(net)) => net.detach(&att),
            (Some(_), Err(_)) | (None, _) => Ok(()),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// `ctr run` returns once runc told the init to proceed, which can be
/// before its execve finished (seen as comm `runc:[2:INIT]`); tests watching
/// exec events or comm want it done. execve switches `exe` before `comm`.
pub(crate) fn wait_for_exec(pid: u32) {
    poll(Duration::from_secs(5), || {
        let (exe, comm) = (fs::read_link(format!("/proc/{pid}/exe")), fs::read_to_string(format!("/proc/{pid}/comm")));
        let (Ok(exe), Ok(comm)) = (exe, comm) else { return true }; // exited already
        !exe.to_string_lossy().contains("runc") && !comm.starts_with("runc:")
    });
}

/// Calls `done` until it returns true or `timeout` passes; says which.
pub(crate) fn poll(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

pub(crate) fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, LabError> {
    let words: Vec<_> = std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(OsStr::to_string_lossy).collect();
    let command = words.join(" ");
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let child = child.map_err(io_err(format!("starting `{command}`")))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(timeout) {
        Ok(out) => out.map_err(io_err(format!("waiting for `{command}`"))),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; the waiter
            // thread has not reaped the child yet, so the pid is still ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(5));
            Err(LabError::Timeout { command, timeout })
        }
    }
}

pub(crate) fn checked(out: Output, command: &str) -> Result<Output, LabError> {
    let (status, stderr) = (out.status, String::from_utf8_lossy(&out.stderr).trim().to_owned());
    if status.success() { Ok(out) } else { Err(LabError::CommandFailed { command: command.into(), status, stderr }) }
}

pub(crate) fn search_path() -> OsString {
    let mut path = OsString::from(SYSTEM_PATH);
    path.extend(std::env::var_os("PATH").map(|p| [":".into(), p]).into_iter().flatten());
    path
}

/// Hybrid hosts mount cgroup2 at /sys/fs/cgroup/unified, pure v2 hosts at
/// /sys/fs/cgroup; only a cgroup2 root has `cgroup.controllers`.
pub fn unified_root() -> Option<PathBuf> {
    let roots = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].map(PathBuf::from);
    roots.into_iter().find(|p| p.join("cgroup.controllers").exists())
}
