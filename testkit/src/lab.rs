//! A private containerd ("lab") that runs real busybox containers for
//! end-to-end tests.
//!
//! Every [`Lab`] owns its own containerd process, socket, root/state dirs and
//! containerd namespace under a fresh temp dir, so parallel test processes
//! never share daemon state, runc state, cgroups or shim sockets.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use std::{fs, thread};

const CTR_TIMEOUT: Duration = Duration::from_secs(30);
const START_TIMEOUT: Duration = Duration::from_secs(15);
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Prepended to PATH so `containerd`, the shim and `runc` (in /usr/sbin) are
/// found even when tests run with a non-login PATH.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `ctr run --rootfs` has no image config, so without this the container has
/// no environment at all and runc cannot even resolve `sleep`.
const CONTAINER_PATH: &str = "PATH=/bin:/sbin:/usr/bin:/usr/sbin";
const BUSYBOX_CANDIDATES: [&str; 3] = ["/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"];
const TOOLS: [&str; 4] = ["containerd", "ctr", "containerd-shim-runc-v2", "runc"];
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Runs if the test process dies without dropping its [`Lab`] (SIGKILL,
/// `process::exit`, a leaked static): stdin reaches EOF once every copy of
/// the write end is gone, which the kernel guarantees even for SIGKILL.
const WATCHDOG: &str = r#"
while read -r _; do :; done
ctr="$1"; addr="$2"; ns="$3"; cpid="$4"; dir="$5"; cg="$6"
x() { "$ctr" --address "$addr" --namespace "$ns" "$@" >/dev/null 2>&1; }
for id in $("$ctr" --address "$addr" --namespace "$ns" containers ls -q 2>/dev/null); do
  x tasks rm --force "$id"; x containers rm "$id"
done
kill -TERM "$cpid" 2>/dev/null
i=0; while kill -0 "$cpid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$cpid" 2>/dev/null
[ -e "$cg/$ns/cgroup.kill" ] && echo 1 > "$cg/$ns/cgroup.kill"
sleep 0.2
for d in /sys/fs/cgroup/*/"$ns"/* /sys/fs/cgroup/*/"$ns" "$cg/$ns"/* "$cg/$ns"; do
  [ -d "$d" ] && rmdir "$d" 2>/dev/null
done
rm -rf --one-file-system "$dir"
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
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("`{command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("containerd did not come up: {reason}; its log ends with:\n{log_tail}")]
    Startup { reason: String, log_tail: String },
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// Says what this machine lacks to run a [`Lab`], all problems at once.
pub fn lab_available() -> Result<(), String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        missing.push(format!("must run as root (euid is {euid})"));
    }
    let path = search_path();
    for tool in TOOLS {
        if find_in_path(tool, &path).is_none() {
            missing.push(format!("`{tool}` not found on PATH ({})", path.to_string_lossy()));
        }
    }
    if let Err(e) = find_busybox() {
        missing.push(e);
    }
    if unified_root().is_none() {
        missing.push("no cgroup2 mounted at /sys/fs/cgroup/unified or /sys/fs/cgroup".into());
    }
    if !Path::new("/bin/sh").exists() {
        missing.push("/bin/sh (needed by the cleanup watchdog) is missing".into());
    }
    if missing.is_empty() { Ok(()) } else { Err(missing.join("; ")) }
}

/// The unified (cgroup v2) directory of `pid` and its id. The id is the
/// directory's inode number, which on 64-bit kernels equals the kernfs id
/// that `bpf_get_current_cgroup_id()` reports.
pub fn unified_cgroup(pid: u32) -> Result<(PathBuf, u64), LabError> {
    let root = unified_root()
        .ok_or_else(|| LabError::Unavailable("no cgroup2 hierarchy mounted".into()))?;
    let file = format!("/proc/{pid}/cgroup");
    let text = fs::read_to_string(&file).map_err(io_err(format!("reading {file}")))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| LabError::Io {
            what: format!("{file} has no \"0::\" line"),
            source: io::ErrorKind::NotFound.into(),
        })?;
    let dir = root.join(rel.trim_start_matches('/'));
    let ino = fs::metadata(&dir).map_err(io_err(format!("stat {}", dir.display())))?.ino();
    Ok((dir, ino))
}

/// What to run in a container. Only `args` is required; the rest defaults to
/// nothing (PATH is supplied unless `env` sets it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub id: String,
    pub args: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub env: Vec<String>,
    /// Share the host network namespace instead of a private loopback-only one.
    pub net_host: bool,
}

impl ContainerSpec {
    pub fn new(id: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            id: id.into(),
            args: args.into_iter().map(Into::into).collect(),
            labels: Vec::new(),
            env: Vec::new(),
            net_host: false,
        }
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Adds one `KEY=value` environment entry.
    pub fn env(mut self, entry: impl Into<String>) -> Self {
        self.env.push(entry.into());
        self
    }

    pub fn net_host(mut self, on: bool) -> Self {
        self.net_host = on;
        self
    }

    fn validate(&self) -> Result<(), LabError> {
        let bad = |m: String| Err(LabError::InvalidSpec(m));
        // containerd's identifier grammar; it also keeps `id` safe as a path component.
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 76
            && self.id.split(['.', '_', '-']).all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !id_ok {
            return bad(format!("id {:?} must match [A-Za-z0-9]+([._-][A-Za-z0-9]+)*", self.id));
        }
        if self.args.is_empty() {
            return bad(format!("container {:?} has no command", self.id));
        }
        if let Some((k, _)) = self.labels.iter().find(|(k, _)| k.is_empty() || k.contains('=')) {
            return bad(format!("label key {k:?} is empty or contains '='"));
        }
        if let Some(e) = self.env.iter().find(|e| !e.contains('=')) {
            return bad(format!("env entry {e:?} is not KEY=value"));
        }
        Ok(())
    }
}

/// State shared between a lab and its containers; `closed` tells containers
/// dropped after their lab that containerd is gone and there is nothing to do.
#[derive(Debug)]
struct Shared {
    address: PathBuf,
    namespace: String,
    dir: PathBuf,
    path_env: OsString,
    busybox: PathBuf,
    applets: Vec<String>,
    closed: AtomicBool,
}

impl Shared {
    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.env("PATH", &self.path_env)
            .arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(&self.namespace)
            .stdin(Stdio::null());
        cmd
    }

    fn ctr_ok(&self, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = self.ctr();
        cmd.args(args);
        checked(run_with_timeout(cmd, CTR_TIMEOUT)?, &describe_args(args))
    }

    /// Kills and deletes task and container, treating "already gone" as success.
    fn remove_container(&self, id: &str) -> Result<(), LabError> {
        for args in [&["tasks", "rm", "--force"][..], &["containers", "rm"][..]] {
            let mut cmd = self.ctr();
            cmd.args(args).arg(id);
            let out = run_with_timeout(cmd, CTR_TIMEOUT)?;
            if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("not found") {
                checked(out, &format!("ctr {} {id}", args.join(" ")))?;
            }
        }
        Ok(())
    }
}

/// A private containerd with its own socket, dirs and namespace. Dropping it
/// removes every container it started and stops containerd.
#[derive(Debug)]
pub struct Lab {
    shared: Arc<Shared>,
    containerd: Option<Child>,
    /// Held only so the watchdog's stdin stays open while we live.
    watchdog: Option<(Child, ChildStdin)>,
    tempdir: Option<tempfile::TempDir>,
}

impl Lab {
    /// Starts containerd and waits until it answers `ctr version`.
    pub fn start() -> Result<Lab, LabError> {
        lab_available().map_err(LabError::Unavailable)?;
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let busybox_src = find_busybox().map_err(LabError::Unavailable)?;
        let tempdir = tempfile::Builder::new()
            .prefix("tracelake-lab-")
            .tempdir()
            .map_err(io_err("creating the lab temp dir"))?;
        let dir = tempdir.path().to_path_buf();
        let address = dir.join("containerd.sock");
        // sun_path holds 108 bytes and containerd adds ".ttrpc" for its second socket.
        if address.as_os_str().len() > 100 {
            return Err(LabError::Unavailable(format!("socket path {} too long; set TMPDIR shorter", address.display())));
        }
        let namespace = format!("tracelake-lab-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        for sub in ["root", "state", "fifo", "containers"] {
            fs::create_dir(dir.join(sub)).map_err(io_err(format!("creating {sub} dir")))?;
        }
        let config = dir.join("config.toml");
        fs::write(&config, containerd_config(&dir, &address)).map_err(io_err("writing containerd config"))?;

        // Copied once, then hard-linked into each rootfs: containers of a
        // lab share the binary's inode like containers of one image do, and
        // no container's binary is ever open for writing. (A fresh copy may
        // still be held open by a child another thread just forked, and
        // exec'ing it then fails with ETXTBSY; so list applets from the source.)
        let busybox = dir.join("busybox");
        fs::copy(&busybox_src, &busybox).map_err(io_err(format!("copying {}", busybox_src.display())))?;
        let list = Command::new(&busybox_src)
            .arg("--list")
            .output()
            .map_err(|source| LabError::Spawn { command: "busybox --list".into(), source })?;
        let list = checked(list, "busybox --list")?;
        let applets = String::from_utf8_lossy(&list.stdout).split_whitespace().map(str::to_owned).collect();

        let mut path_env = OsString::from(SYSTEM_PATH);
        if let Some(p) = std::env::var_os("PATH") {
            path_env.push(":");
            path_env.push(p);
        }
        let log = fs::File::create(dir.join("containerd.log")).map_err(io_err("creating containerd.log"))?;
        let log2 = log.try_clone().map_err(io_err("duplicating log fd"))?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config).env("PATH", &path_env).stdin(Stdio::null()).stdout(log).stderr(log2);
        // Own process group: a terminal Ctrl-C must not kill containerd
        // before the watchdog or Drop has removed its containers.
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|source| LabError::Spawn { command: "containerd".into(), source })?;
        let cpid = child.id();

        let shared = Arc::new(Shared {
            address,
            namespace,
            dir,
            path_env,
            busybox,
            applets,
            closed: AtomicBool::new(false),
        });
        let mut lab = Lab { shared, containerd: Some(child), watchdog: None, tempdir: Some(tempdir) };
        lab.spawn_watchdog(cpid)?;
        lab.wait_ready()?;
        Ok(lab)
    }

    fn spawn_watchdog(&mut self, cpid: u32) -> Result<(), LabError> {
        let s = &self.shared;
        let cg = unified_root().unwrap_or_default();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", WATCHDOG, "tracelake-lab-watchdog", "ctr"])
            .arg(&s.address)
            .arg(&s.namespace)
            .arg(cpid.to_string())
            .arg(&s.dir)
            .arg(cg)
            .env("PATH", &s.path_env)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| LabError::Spawn { command: "/bin/sh (watchdog)".into(), source })?;
        let stdin = child.stdin.take().ok_or_else(|| LabError::Io {
            what: "watchdog stdin missing".into(),
            source: io::ErrorKind::BrokenPipe.into(),
        })?;
        self.watchdog = Some((child, stdin));
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), LabError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let fail = |lab: &Lab, reason: String| LabError::Startup { reason, log_tail: lab.log_tail() };
        loop {
            if let Some(child) = self.containerd.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(fail(self, format!("containerd exited with {status}")));
            }
            if self.shared.address.exists() {
                let mut cmd = self.shared.ctr();
                cmd.arg("version");
                if run_with_timeout(cmd, Duration::from_secs(5))?.status.success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(fail(self, format!("no answer on {} after {START_TIMEOUT:?}", self.shared.address.display())));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.shared.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Runs a detached container on a fresh copy of the busybox rootfs and
    /// returns once its init process has exec'd the requested command.
    pub fn run(&self, spec: &ContainerSpec) -> Result<Container, LabError> {
        spec.validate()?;
        let s = &self.shared;
        let bundle = s.dir.join("containers").join(&spec.id);
        fs::create_dir(&bundle).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => LabError::InvalidSpec(format!("id {:?} already used in this lab", spec.id)),
            _ => io_err(format!("creating {}", bundle.display()))(e),
        })?;
        let rootfs = bundle.join("rootfs");
        let mut container = Container {
            shared: Arc::clone(s),
            id: spec.id.clone(),
            pid: 0,
            cgroup_id: 0,
            cgroup_path: PathBuf::new(),
            rootfs: rootfs.clone(),
            log: bundle.join("output.log"),
            removed: false,
        };
        build_rootfs(s, &rootfs, &spec.id)?;
        let pid_file = bundle.join("init.pid");
        let mut cmd = s.ctr();
        cmd.args(["run", "--detach", "--rootfs", "--runc-root"])
            .arg(s.dir.join("state").join("runc"))
            .arg("--fifo-dir")
            .arg(s.dir.join("fifo"))
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--log-uri")
            .arg(format!("file://{}", container.log.display()));
        if !spec.env.iter().any(|e| e.starts_with("PATH=")) {
            cmd.args(["--env", CONTAINER_PATH]);
        }
        for e in &spec.env {
            cmd.arg("--env").arg(e);
        }
        for (k, v) in &spec.labels {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        if spec.net_host {
            cmd.arg("--net-host");
        }
        cmd.arg(&rootfs).arg(&spec.id).args(&spec.args);
        let what = format!("ctr run {} {}", spec.id, spec.args.join(" "));
        checked(run_with_timeout(cmd, CTR_TIMEOUT)?, &what)?;

        let pid = fs::read_to_string(&pid_file).map_err(io_err(format!("reading {}", pid_file.display())))?;
        container.pid = pid.trim().parse().map_err(|_| LabError::Io {
            what: format!("bad pid {pid:?} in {}", pid_file.display()),
            source: io::ErrorKind::InvalidData.into(),
        })?;
        wait_for_exec(container.pid);
        // An init that already exited has no /proc entry, but its cgroup
        // stays until the task is deleted, at the path ctr always chooses.
        let (path, id) = match unified_cgroup(container.pid) {
            Ok(found) => found,
            Err(e) => {
                let dir = unified_root().unwrap_or_default().join(&s.namespace).join(&spec.id);
                let ino = fs::metadata(&dir).map_err(|_| e)?.ino();
                (dir, ino)
            }
        };
        container.cgroup_path = path;
        container.cgroup_id = id;
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

    fn shutdown(&mut self) {
        let s = Arc::clone(&self.shared);
        s.closed.store(true, Ordering::SeqCst);
        if let Some((mut child, stdin)) = self.watchdog.take() {
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin);
        }
        if let Some(mut containerd) = self.containerd.take() {
            if matches!(containerd.try_wait(), Ok(None)) {
                let ids = s.ctr_ok(&["containers", "ls", "-q"]).map(|o| o.stdout).unwrap_or_default();
                for id in String::from_utf8_lossy(&ids).split_whitespace() {
                    let _ = s.remove_container(id);
                }
            }
            terminate(&mut containerd);
        }
        // Only needed when removal above failed: shims outlive containerd
        // and never exit on their own.
        kill_shims_of(&s.address);
        remove_cgroups(&s.namespace);
        remove_stale_shim_sockets(&s.dir.join("state/io.containerd.runtime.v2.task").join(&s.namespace));
        unmount_below(&s.dir);
        if let Some(t) = self.tempdir.take() {
            let _ = t.close();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A running container. Dropping it kills and deletes it (best effort);
/// [`Container::stop`] does the same but reports failures.
#[derive(Debug)]
pub struct Container {
    shared: Arc<Shared>,
    id: String,
    pid: u32,
    cgroup_id: u64,
    cgroup_path: PathBuf,
    rootfs: PathBuf,
    log: PathBuf,
    removed: bool,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the container's init process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// cgroup v2 id, as `bpf_get_current_cgroup_id()` reports it inside the container.
    pub fn cgroup_id(&self) -> u64 {
        self.cgroup_id
    }

    /// The container's directory in the unified cgroup hierarchy.
    pub fn cgroup_path(&self) -> &Path {
        &self.cgroup_path
    }

    /// Host path of the container's writable root filesystem. Everything in
    /// it is private to the container except `/bin/busybox`, a hard link
    /// shared by all containers of the lab.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// File receiving the init process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Runs `args` inside the container and waits for it. A non-zero exit of
    /// the process is not an error: check `status` (ctr itself also exits 1
    /// with `ctr: ...` on stderr when the exec cannot start).
    pub fn exec(&self, exec_id: &str, args: &[&str]) -> Result<Output, LabError> {
        self.exec_with_timeout(exec_id, args, EXEC_TIMEOUT)
    }

    pub fn exec_with_timeout(&self, exec_id: &str, args: &[&str], timeout: Duration) -> Result<Output, LabError> {
        let mut cmd = self.shared.ctr();
        cmd.args(["tasks", "exec", "--exec-id", exec_id, "--fifo-dir"])
            .arg(self.shared.dir.join("fifo"))
            .arg(&self.id)
            .args(args);
        run_with_timeout(cmd, timeout)
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
        self.shared.remove_container(&self.id)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pid > 0 && Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        if let Some(bundle) = self.rootfs.parent() {
            let _ = fs::remove_dir_all(bundle);
        }
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn containerd_config(dir: &Path, address: &Path) -> String {
    // CRI would go looking for CNI and kubelet config, "opt" creates
    // /opt/containerd, and the exotic snapshotters only log noise; none are
    // needed for `ctr run --rootfs`. The legacy runtime.v1.linux plugin must
    // stay: the 1.6 tasks service refuses to load without it.
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        sock = address.display(),
    )
}

fn build_rootfs(s: &Shared, rootfs: &Path, id: &str) -> Result<(), LabError> {
    let err = |what: &str| io_err(format!("building rootfs {}: {what}", rootfs.display()));
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "usr", "var/tmp"] {
        fs::create_dir_all(rootfs.join(d)).map_err(err(d))?;
    }
    fs::hard_link(&s.busybox, rootfs.join("bin/busybox")).map_err(err("bin/busybox"))?;
    for applet in s.applets.iter().filter(|a| a.as_str() != "busybox") {
        symlink("busybox", rootfs.join("bin").join(applet)).map_err(err(applet))?;
    }
    // Scripts and tests use absolute paths like /usr/bin/env or /sbin/ip.
    for (link, target) in [("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin")] {
        symlink(target, rootfs.join(link)).map_err(err(link))?;
    }
    let files = [
        ("etc/hostname", format!("{id}\n")),
        ("etc/hosts", format!("127.0.0.1\tlocalhost {id}\n::1\tlocalhost\n")),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".into()),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".into()),
    ];
    for (name, body) in files {
        fs::write(rootfs.join(name), body).map_err(err(name))?;
    }
    Ok(())
}

/// `ctr run` returns once runc told the init to proceed, which can be
/// before its execve finished (seen as comm `runc:[2:INIT]`); tests watching
/// exec events or comm want it done. execve switches `exe` before `comm`.
fn wait_for_exec(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let (Ok(exe), Ok(comm)) = (fs::read_link(format!("/proc/{pid}/exe")), fs::read_to_string(format!("/proc/{pid}/comm"))) else {
            return; // exited already
        };
        if !exe.to_string_lossy().contains("runc") && !comm.starts_with("runc:") {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, LabError> {
    let command = describe(&cmd);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
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

fn checked(out: Output, command: &str) -> Result<Output, LabError> {
    if out.status.success() {
        return Ok(out);
    }
    Err(LabError::CommandFailed {
        command: command.into(),
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

fn describe_args(args: &[&str]) -> String {
    format!("ctr {}", args.join(" "))
}

fn terminate(child: &mut Child) {
    // SAFETY: signalling our own unreaped child; no memory is involved.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn kill_shims_of(address: &Path) {
    let want = address.as_os_str().as_encoded_bytes();
    let Ok(entries) = fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else { continue };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_shim = args.first().is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
        if is_shim && args.windows(2).any(|w| w[0] == b"-address" && w[1] == want) {
            // SAFETY: plain syscall; the pid was matched by our unique socket path.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn remove_cgroups(namespace: &str) {
    let mut roots: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    if let Some(unified) = unified_root() {
        let kill = unified.join(namespace).join("cgroup.kill");
        if kill.exists() {
            let _ = fs::write(kill, "1");
        }
    }
    for root in roots {
        let dir = root.join(namespace);
        if !dir.is_dir() {
            continue;
        }
        // rmdir fails with EBUSY until killed tasks are fully gone.
        let deadline = Instant::now() + Duration::from_secs(2);
        while rmdir_tree(&dir).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn rmdir_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

/// A shim killed without a task delete leaves its socket in
/// /run/containerd/s (a path hard-coded in containerd 1.6); the bundle's
/// `address` file names it.
fn remove_stale_shim_sockets(bundles: &Path) {
    let Ok(entries) = fs::read_dir(bundles) else { return };
    for entry in entries.flatten() {
        if let Ok(addr) = fs::read_to_string(entry.path().join("address"))
            && let Some(path) = addr.trim().strip_prefix("unix://")
        {
            let _ = fs::remove_file(path);
        }
    }
}

fn unmount_below(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn search_path() -> OsString {
    let mut path = OsString::from(SYSTEM_PATH);
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    path
}

fn find_in_path(name: &str, path: &OsString) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// The container has no libc, so only a statically linked busybox works.
fn find_busybox() -> Result<PathBuf, String> {
    let path = BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no busybox binary at {}", BUSYBOX_CANDIDATES.join(", ")))?;
    let mut head = vec![0u8; 4096];
    let n = fs::File::open(&path).and_then(|mut f| f.read(&mut head)).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if has_interp(&head[..n]) {
        return Err(format!("{} is dynamically linked; install busybox-static", path.display()));
    }
    Ok(path)
}

/// True if a 64-bit little-endian ELF has a PT_INTERP program header.
fn has_interp(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let mut off = [0u8; 8];
    off.copy_from_slice(&elf[0x20..0x28]);
    let (phoff, phentsize, phnum) = (u64::from_le_bytes(off) as usize, u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        elf.get(o..o + 4).is_some_and(|t| t == 3u32.to_le_bytes())
    })
}

fn unified_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].into_iter().map(PathBuf::from).find(|p| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
        // SAFETY: statfs only writes into the zeroed struct we own; `c` is a valid C string.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: see above.
        let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
        rc == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
    })
}
