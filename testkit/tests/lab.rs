//! Drives the container lab against the real containerd, runc and kernel of
//! this machine. Needs root; the tests fail (not skip) without it so a broken
//! environment is never mistaken for a passing one.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use std::{fs, thread};

use tracelake_testkit::lab::{Container, ContainerSpec, Lab, LabError, lab_available, unified_cgroup};

const HELPER_ENV: &str = "TRACELAKE_LAB_CLEANUP_HELPER";

fn start_lab() -> Lab {
    if let Err(why) = lab_available() {
        panic!("these tests need a real container lab: {why}");
    }
    let t = Instant::now();
    let lab = Lab::start().expect("Lab::start");
    eprintln!("Lab::start took {:?}", t.elapsed());
    lab
}

fn run(lab: &Lab, spec: &ContainerSpec) -> Container {
    let t = Instant::now();
    let c = lab.run(spec).expect("Lab::run");
    eprintln!("Lab::run({}) took {:?}", spec.id, t.elapsed());
    c
}

fn sleeper(id: &str) -> ContainerSpec {
    ContainerSpec::new(id, ["sleep", "30"])
}

/// Our own unified cgroup, computed independently of the library.
fn own_cgroup() -> (String, u64) {
    let text = fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).expect("own 0:: line").to_owned();
    let dir = Path::new("/sys/fs/cgroup/unified").join(rel.trim_start_matches('/'));
    (rel, fs::metadata(dir).expect("stat own cgroup").ino())
}

fn unified_line(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read container cgroup");
    text.lines().find_map(|l| l.strip_prefix("0::")).expect("container 0:: line").to_owned()
}

fn ctr_stdout(lab: &Lab, args: &[&str]) -> String {
    let out = lab.ctr().args(args).output().expect("spawn ctr");
    assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("ctr prints UTF-8")
}

/// (id, pid, status) of each task, from `ctr task ls`.
fn tasks(lab: &Lab) -> Vec<(String, u32, String)> {
    ctr_stdout(lab, &["tasks", "ls"])
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].parse().expect("numeric pid"), f[2].to_owned())
        })
        .collect()
}

fn exec_stdout(c: &Container, exec_id: &str, args: &[&str]) -> String {
    let out = c.exec(exec_id, args).expect("exec");
    assert!(out.status.success(), "exec {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Zombies count as dead: orphans are reaped by this VM's init only lazily.
fn pid_alive(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// Pids of processes whose command line mentions `needle` (ours excluded).
fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

fn eventually(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn assert_lab_gone(dir: &Path, namespace: &str, pids: &[u32]) {
    assert_eq!(processes_mentioning(dir), Vec::<u32>::new(), "processes still use {}", dir.display());
    for pid in pids {
        assert!(!pid_alive(*pid), "container pid {pid} survived");
    }
    assert!(!dir.exists(), "{} not removed", dir.display());
    let cgroup = Path::new("/sys/fs/cgroup/unified").join(namespace);
    assert!(!cgroup.exists(), "{} not removed", cgroup.display());
}

#[test]
fn container_runs_with_labels_in_its_own_cgroup() {
    let lab = start_lab();
    let spec = sleeper("web-0").label("io.kubernetes.pod.name", "web-0").label("io.kubernetes.pod.namespace", "shop");
    let c = run(&lab, &spec);
    let pid = c.pid();
    assert!(pid > 1, "pid {pid}");
    assert_eq!(c.id(), "web-0");

    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "sleep", "init has exec'd its command by the time run returns");
    let running = tasks(&lab);
    assert_eq!(running, vec![("web-0".to_owned(), pid, "RUNNING".to_owned())]);

    let (own_path, own_id) = own_cgroup();
    let path = unified_line(pid);
    assert_ne!(path, own_path);
    assert_eq!(path, format!("/{}/web-0", lab.namespace()));
    assert_ne!(c.cgroup_id(), own_id);
    let dir = Path::new("/sys/fs/cgroup/unified").join(path.trim_start_matches('/'));
    assert_eq!(c.cgroup_path(), dir);
    assert_eq!(c.cgroup_id(), fs::metadata(&dir).expect("stat cgroup").ino());
    assert_eq!(unified_cgroup(pid).expect("unified_cgroup"), (dir, c.cgroup_id()));

    let info: serde_json::Value =
        serde_json::from_str(&ctr_stdout(&lab, &["containers", "info", "web-0"])).expect("JSON");
    assert_eq!(info["Labels"]["io.kubernetes.pod.name"], "web-0");
    assert_eq!(info["Labels"]["io.kubernetes.pod.namespace"], "shop");

    c.stop().expect("stop");
    assert!(!pid_alive(pid), "pid {pid} still exists after stop");
    assert_eq!(ctr_stdout(&lab, &["containers", "ls", "-q"]), "");
    assert!(tasks(&lab).is_empty());
}

#[test]
fn exec_runs_inside_the_container() {
    let lab = start_lab();
    let c = run(&lab, &sleeper("exec-target"));
    let t = Instant::now();
    assert_eq!(exec_stdout(&c, "hostname", &["cat", "/etc/hostname"]), "exec-target\n");
    eprintln!("exec took {:?}", t.elapsed());
    assert_eq!(exec_stdout(&c, "uid", &["id", "-u"]), "0\n");
    // Exec ids are free again once an exec finished.
    assert_eq!(exec_stdout(&c, "uid", &["/usr/bin/id", "-u"]), "0\n");
    let pid1 = exec_stdout(&c, "pid1", &["cat", "/proc/1/comm"]);
    assert_eq!(pid1, "sleep\n", "the exec shares the init's pid namespace");

    let failing = c.exec("fail", &["sh", "-c", "echo oops >&2; exit 3"]).expect("exec");
    assert_eq!(failing.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&failing.stderr), "oops\n");

    let missing = c.exec("missing", &["no-such-binary"]).expect("exec");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-binary"));

    let big = exec_stdout(&c, "big", &["seq", "1", "100000"]);
    assert_eq!((big.lines().count(), big.lines().last()), (100_000, Some("100000")));
    // A background child that keeps stdout open must not hold the exec up.
    let t = Instant::now();
    assert_eq!(exec_stdout(&c, "bg", &["sh", "-c", "sleep 5 & echo started"]), "started\n");
    assert!(t.elapsed() < Duration::from_secs(3), "exec with a background child took {:?}", t.elapsed());

    let slow = c.exec_with_timeout("slow", &["sleep", "10"], Duration::from_millis(300));
    assert!(matches!(slow, Err(LabError::Timeout { .. })), "{slow:?}");
}

#[test]
fn init_output_env_and_rootfs_are_per_container() {
    let lab = start_lab();
    let spec = ContainerSpec::new("talker", ["sh", "-c", "echo hello-$GREETING; echo to-stderr >&2; exec sleep 30"])
        .env("GREETING=world");
    let c = run(&lab, &spec);
    let other = run(&lab, &sleeper("quiet"));
    eventually("the init's output reaches the log", Duration::from_secs(5), || {
        let log = fs::read_to_string(c.log_path()).unwrap_or_default();
        log.contains("hello-world\n") && log.contains("to-stderr\n")
    });
    assert_eq!(exec_stdout(&c, "env", &["sh", "-c", "echo $GREETING:$PATH"]), "world:/bin:/sbin:/usr/bin:/usr/sbin\n");

    fs::write(c.rootfs().join("tmp/marker"), "x").expect("write marker");
    assert_eq!(exec_stdout(&c, "marker", &["cat", "/tmp/marker"]), "x");
    let seen = other.exec("marker", &["cat", "/tmp/marker"]).expect("exec");
    assert!(!seen.status.success(), "rootfs is shared between containers");
    assert_ne!(c.cgroup_id(), other.cgroup_id());

    // An explicit PATH replaces the default one rather than being doubled.
    let custom = run(&lab, &ContainerSpec::new("custom-path", ["/bin/sleep", "30"]).env("PATH=/bin"));
    assert_eq!(exec_stdout(&custom, "path", &["/bin/sh", "-c", "echo $PATH"]), "/bin\n");
}

#[test]
fn bad_specs_are_rejected() {
    let lab = start_lab();
    for id in ["", "../escape", "a/b", "-x", "a..b"] {
        let err = lab.run(&sleeper(id)).expect_err(id);
        assert!(matches!(err, LabError::InvalidSpec(_)), "{id:?}: {err}");
    }
    let err = lab.run(&ContainerSpec::new("no-args", Vec::<String>::new())).expect_err("no args");
    assert!(matches!(err, LabError::InvalidSpec(_)), "{err}");
    let err = lab.run(&sleeper("lbl").label("a=b", "c")).expect_err("bad label");
    assert!(matches!(err, LabError::InvalidSpec(_)), "{err}");

    let _first = run(&lab, &sleeper("dup"));
    let err = lab.run(&sleeper("dup")).expect_err("duplicate id");
    assert!(err.to_string().contains("already used"), "{err}");

    let err = lab.run(&ContainerSpec::new("nocmd", ["/no/such/cmd"])).expect_err("missing command");
    let msg = err.to_string();
    assert!(msg.contains("ctr run nocmd") && msg.contains("/no/such/cmd"), "{msg}");
    // The failed container must not linger in containerd.
    assert_eq!(ctr_stdout(&lab, &["containers", "ls", "-q"]), "dup\n");
}

#[test]
fn two_labs_run_concurrently() {
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(start_lab);
        let b = s.spawn(start_lab);
        (a.join().expect("lab a"), b.join().expect("lab b"))
    });
    assert_ne!(a.address(), b.address());
    assert_ne!(a.namespace(), b.namespace());

    // Same container id in both labs, created at the same time.
    let (ca, cb) = thread::scope(|s| {
        let ca = s.spawn(|| run(&a, &sleeper("app").label("lab", "a")));
        let cb = s.spawn(|| run(&b, &sleeper("app").label("lab", "b")));
        (ca.join().expect("run a"), cb.join().expect("run b"))
    });
    assert_ne!(ca.pid(), cb.pid());
    assert_ne!(ca.cgroup_id(), cb.cgroup_id());
    assert_eq!(tasks(&a), vec![("app".to_owned(), ca.pid(), "RUNNING".to_owned())]);
    assert_eq!(tasks(&b), vec![("app".to_owned(), cb.pid(), "RUNNING".to_owned())]);

    let (pid_b, dir_b, ns_b) = (cb.pid(), b.address().parent().expect("dir").to_path_buf(), b.namespace().to_owned());
    drop(cb);
    drop(b);
    assert_lab_gone(&dir_b, &ns_b, &[pid_b]);

    assert!(pid_alive(ca.pid()), "lab a's container died with lab b");
    assert_eq!(exec_stdout(&ca, "after", &["cat", "/etc/hostname"]), "app\n");
    let info: serde_json::Value = serde_json::from_str(&ctr_stdout(&a, &["c", "info", "app"])).expect("JSON");
    assert_eq!(info["Labels"]["lab"], "a");
}

#[test]
fn dropping_a_lab_removes_everything_it_started() {
    let lab = start_lab();
    let dir = lab.address().parent().expect("lab dir").to_path_buf();
    let namespace = lab.namespace().to_owned();
    let c1 = run(&lab, &sleeper("one"));
    let c2 = run(&lab, &ContainerSpec::new("two", ["sh", "-c", "sleep 30 & sleep 30"]));
    let pids = [c1.pid(), c2.pid()];
    let mine = processes_mentioning(&dir);
    assert!(mine.len() >= 3, "containerd, cleanup script and shims: {mine:?}");
    let t = Instant::now();
    drop(lab);
    eprintln!("dropping a lab with two running containers took {:?}", t.elapsed());
    assert_lab_gone(&dir, &namespace, &pids);
    // Containers that outlive their lab must not fail or hang when dropped.
    drop((c1, c2));
}

#[test]
fn short_lived_and_host_network_containers() {
    let lab = start_lab();
    let oneshot = run(&lab, &ContainerSpec::new("oneshot", ["sh", "-c", "echo done"]));
    assert!(oneshot.cgroup_id() > 1);
    eventually("the one-shot init exits", Duration::from_secs(5), || !pid_alive(oneshot.pid()));
    assert!(fs::read_to_string(oneshot.log_path()).expect("log").contains("done"));
    oneshot.stop().expect("stop an exited container");

    let own_net = fs::read_link("/proc/self/ns/net").expect("own netns");
    let host = run(&lab, &ContainerSpec { net_host: true, ..sleeper("host-net") });
    assert_eq!(fs::read_link(format!("/proc/{}/ns/net", host.pid())).expect("netns"), own_net);
    let private = run(&lab, &sleeper("private-net"));
    assert_ne!(fs::read_link(format!("/proc/{}/ns/net", private.pid())).expect("netns"), own_net);
}

#[test]
fn cleanup_copes_with_a_crashed_containerd() {
    let lab = start_lab();
    let dir = lab.address().parent().expect("lab dir").to_path_buf();
    let namespace = lab.namespace().to_owned();
    let c = run(&lab, &sleeper("orphan"));
    let containerd = processes_mentioning(&dir.join("config.toml"));
    assert_eq!(containerd.len(), 1, "one containerd: {containerd:?}");
    // SAFETY: plain syscall on a pid we just looked up.
    assert_eq!(unsafe { libc::kill(containerd[0] as i32, libc::SIGKILL) }, 0);
    let bundle = dir.join("state/io.containerd.runtime.v2.task").join(&namespace).join("orphan");
    let address = fs::read_to_string(bundle.join("address")).expect("shim address file");
    let shim_socket = PathBuf::from(address.trim().strip_prefix("unix://").expect("unix:// address"));
    assert!(shim_socket.starts_with("/run/containerd/s"), "{}", shim_socket.display());
    assert!(shim_socket.exists());
    let pid = c.pid();
    drop(c); // fails quietly: nobody answers on the socket any more
    drop(lab); // so the shim and the container must be found and killed directly
    assert_lab_gone(&dir, &namespace, &[pid]);
    assert!(!shim_socket.exists(), "stale shim socket {} left behind", shim_socket.display());
}

/// Started by `cleanup_runs_even_when_the_owner_is_killed` in a child process.
#[test]
#[ignore = "helper process for cleanup_runs_even_when_the_owner_is_killed"]
fn helper_hold_lab_until_killed() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let lab = Lab::start().expect("Lab::start");
    let c = lab.run(&sleeper("held")).expect("run");
    println!("READY {} {} {}", lab.address().display(), lab.namespace(), c.pid());
    thread::sleep(Duration::from_secs(120));
}

#[test]
fn cleanup_runs_even_when_the_owner_is_killed() {
    lab_available().expect("lab available");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "helper_hold_lab_until_killed", "--ignored", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("helper stdout");
    // libtest prints "test NAME ... " on the same line before READY.
    let ready: Option<(PathBuf, String, u32)> = BufReader::new(stdout).lines().map_while(Result::ok).find_map(|l| {
        let mut f = l.split_once("READY ")?.1.split_whitespace();
        let dir = Path::new(f.next()?).parent()?.to_path_buf();
        Some((dir, f.next()?.to_owned(), f.next()?.parse().ok()?))
    });
    let was_running = ready.as_ref().is_some_and(|r| pid_alive(r.2));
    // Killed before any assertion, so a failure never leaves the helper behind.
    child.kill().expect("SIGKILL helper");
    child.wait().expect("reap helper");
    let (dir, namespace, pid) = ready.expect("helper reports READY");
    assert!(was_running, "the helper's container was running");
    eventually("the cleanup script removed the lab", Duration::from_secs(15), || {
        processes_mentioning(&dir).is_empty() && !pid_alive(pid) && !dir.exists()
    });
    assert_lab_gone(&dir, &namespace, &[pid]);
}
