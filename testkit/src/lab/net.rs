//! Real pod networking for lab containers: each networked container gets
//! its own network namespace, attached by Debian's CNI plugins (bridge +
//! host-local IPAM + loopback, as a kubelet's CNI config would) to a bridge
//! of its lab. Every lab holds an index 0..=255 (a flock, so parallel test
//! processes never share one) that names its bridge (`tlbr<i>`), subnet
//! (10.213.<i>.0/24) and namespaces (`tl<i>-<container>`); the lock passes
//! to the lab's cleanup script too, so an index is never reused before a
//! dead lab's leftovers are gone.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{LabError, checked, io_err, run_with_timeout, search_path};

const CNI_PATH: &str = "/usr/lib/cni";
const LOCK_DIR: &str = "/run/tracelake-lab-net";
const NETNS_DIR: &str = "/var/run/netns";
const CNI_TIMEOUT: Duration = Duration::from_secs(30);

/// One lab's share of the host network.
#[derive(Debug)]
pub(super) struct LabNet {
    pub(super) index: u8,
    ipam_dir: PathBuf,
    lock: File,
}

/// A container's network namespace and address.
#[derive(Debug, Clone)]
pub(super) struct Attachment {
    pub(super) netns: PathBuf,
    pub(super) ip: String,
    id: String,
}

impl LabNet {
    /// Takes the first free index and removes whatever a crashed holder of
    /// it left behind (we hold its lock, so nobody else uses it).
    pub(super) fn allocate(lab_dir: &Path) -> Result<LabNet, LabError> {
        fs::create_dir_all(LOCK_DIR).map_err(io_err(format!("creating {LOCK_DIR}")))?;
        for index in 0..=255u8 {
            let path = Path::new(LOCK_DIR).join(format!("{index}.lock"));
            let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&path);
            let lock = lock.map_err(io_err(format!("opening {}", path.display())))?;
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue;
            }
            let net = LabNet { index, ipam_dir: lab_dir.join("ipam"), lock };
            net.remove_leftovers();
            return Ok(net);
        }
        Err(LabError::Unavailable("all 256 lab network indices are in use".into()))
    }

    pub(super) fn lock_fd(&self) -> RawFd {
        self.lock.as_raw_fd()
    }

    pub(super) fn bridge(&self) -> String {
        format!("tlbr{}", self.index)
    }

    pub(super) fn netns_prefix(&self) -> String {
        format!("tl{}-", self.index)
    }

    /// The lab's subnet, e.g. `10.213.4.0/24`.
    pub(super) fn subnet(&self) -> String {
        format!("10.213.{}.0/24", self.index)
    }

    fn netconf(&self, ip: Option<&str>) -> String {
        let runtime = ip.map(|ip| format!(r#","runtimeConfig":{{"ips":["{ip}/24"]}}"#)).unwrap_or_default();
        format!(
            r#"{{"cniVersion":"1.0.0","name":"tracelake-lab-{i}","type":"bridge","bridge":"{br}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","dataDir":"{dir}","ranges":[[{{"subnet":"{subnet}"}}]]}}{runtime}}}"#,
            i = self.index,
            br = self.bridge(),
            dir = self.ipam_dir.display(),
            subnet = self.subnet(),
        )
    }

    /// New namespace, loopback up, eth0 on the bridge with an address from
    /// the lab's range (`ip`, if given, pins it).
    pub(super) fn attach(&self, id: &str, ip: Option<&str>) -> Result<Attachment, LabError> {
        let name = format!("{}{id}", self.netns_prefix());
        let netns = Path::new(NETNS_DIR).join(&name);
        checked(run_with_timeout(ip_cmd(&["netns", "add", &name]), CNI_TIMEOUT)?, &format!("ip netns add {name}"))?;
        let mut att = Attachment { netns, ip: String::new(), id: id.to_string() };
        let result = (|| {
            let lo = r#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#;
            cni("ADD", "loopback", &att, "lo", lo)?;
            let out = cni("ADD", "bridge", &att, "eth0", &self.netconf(ip))?;
            att.ip = first_address(&out)
                .ok_or_else(|| LabError::Unavailable(format!("bridge plugin gave no address: {out}")))?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(att),
            Err(e) => {
                let _ = self.detach(&att);
                Err(e)
            }
        }
    }

    /// CNI DEL (frees the address) and removes the namespace.
    pub(super) fn detach(&self, att: &Attachment) -> Result<(), LabError> {
        let del = cni("DEL", "bridge", att, "eth0", &self.netconf(None));
        let name = att.netns.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let rm = run_with_timeout(ip_cmd(&["netns", "delete", &name]), CNI_TIMEOUT)
            .and_then(|o| checked(o, &format!("ip netns delete {name}")));
        del.and(rm).map(|_| ())
    }

    /// Removes the bridge (after every namespace is gone).
    pub(super) fn teardown(&self) {
        let _ = run_with_timeout(ip_cmd(&["link", "delete", &self.bridge()]), CNI_TIMEOUT);
    }

    fn remove_leftovers(&self) {
        let prefix = self.netns_prefix();
        for entry in fs::read_dir(NETNS_DIR).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ = run_with_timeout(ip_cmd(&["netns", "delete", &name]), CNI_TIMEOUT);
            }
        }
        if Path::new("/sys/class/net").join(self.bridge()).exists() {
            self.teardown();
        }
    }
}

fn ip_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.env("PATH", search_path()).stdin(Stdio::null()).args(args);
    cmd
}

/// Runs one CNI plugin the way a runtime does: parameters in the
/// environment, network config on stdin, result JSON on stdout.
fn cni(command: &str, plugin: &str, att: &Attachment, ifname: &str, conf: &str) -> Result<String, LabError> {
    let mut cmd = Command::new(Path::new(CNI_PATH).join(plugin));
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &att.id)
        .env("CNI_NETNS", &att.netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_PATH)
        .env("PATH", search_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("CNI {command} {plugin} {}", att.id);
    let mut child = cmd.spawn().map_err(io_err(format!("starting {what}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf.as_bytes()).map_err(io_err(format!("writing the config of {what}")))?;
    }
    // The plugins finish in milliseconds; a hung one fails the test by the harness's timeout.
    let mut out = child.wait_with_output().map_err(io_err(format!("waiting for {what}")))?;
    // Plugins report errors as JSON on stdout.
    if !out.status.success() {
        out.stderr.extend_from_slice(&out.stdout);
    }
    Ok(String::from_utf8_lossy(&checked(out, &what)?.stdout).into_owned())
}

/// The first `"address": "a.b.c.d/len"` of a CNI result, without the length.
fn first_address(result: &str) -> Option<String> {
    let at = result.find("\"address\"")?;
    let rest = &result[at + "\"address\"".len()..];
    let start = rest.find('"')? + 1;
    let value = &rest[start..];
    let end = value.find('"')?;
    Some(value[..end].split('/').next()?.to_string())
}
