//! The comparison tracers, bpftrace and auditd, as guards: whatever way the
//! harness leaves (error, panic, Ctrl-C turned into an error), dropping the
//! guard kills bpftrace, removes the audit rule and stops an auditd we started.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

const BPFTRACE_PROG: &str = "tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }";
const AUDIT_KEY: &str = "tlbench";

/// A running `bpftrace` counting openat per comm.
#[derive(Debug)]
pub struct Bpftrace {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn forward(from: impl Read + Send + 'static, to: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if to.send(line).is_err() {
                break;
            }
        }
    });
}

impl Bpftrace {
    pub fn start() -> Result<Bpftrace> {
        let mut child = Command::new("bpftrace")
            .args(["-e", BPFTRACE_PROG])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run bpftrace")?;
        let (tx, rx) = mpsc::channel();
        forward(child.stdout.take().context("bpftrace stdout")?, tx.clone());
        forward(child.stderr.take().context("bpftrace stderr")?, tx);
        let mut bt = Bpftrace { child, lines: rx, seen: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match bt.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("Attaching") => break,
                Ok(line) => bt.seen.push(line),
                Err(_) => bail!("bpftrace did not attach: {}", bt.seen.join(" / ")),
            }
        }
        // "Attaching N probes..." is printed before the attach happens.
        std::thread::sleep(Duration::from_secs(1));
        ensure!(bt.child.try_wait()?.is_none(), "bpftrace exited: {}", bt.seen.join(" / "));
        Ok(bt)
    }

    /// Stops bpftrace as Ctrl-C would, so it prints its map, and returns
    /// its count for `comm`.
    pub fn stop(mut self, comm: &str) -> Result<Option<u64>> {
        // SAFETY: kill has no memory preconditions; the pid is our child's,
        // not yet reaped, so it cannot have been reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait()?.is_none() {
            ensure!(Instant::now() < deadline, "bpftrace ignored SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
        let want = format!("@[{comm}]:");
        // The reader threads end with the pipes; collect what they got.
        let count = self.lines.iter().find_map(|l| l.strip_prefix(&want).and_then(|n| n.trim().parse().ok()));
        Ok(count)
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `auditctl -s`, as name -> number.
fn audit_status() -> Result<HashMap<String, u64>> {
    let out = Command::new("auditctl").arg("-s").output().context("run auditctl -s")?;
    ensure!(out.status.success(), "auditctl -s: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

fn status_field(s: &HashMap<String, u64>, name: &str) -> Result<u64> {
    s.get(name).copied().with_context(|| format!("auditctl -s has no {name}"))
}

fn auditctl(args: &[&str]) -> Result<()> {
    let out = Command::new("auditctl").args(args).output().context("run auditctl")?;
    ensure!(out.status.success(), "auditctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

fn wait_daemon(running: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid = status_field(&audit_status()?, "pid")?;
        if (pid != 0) == running {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "auditd did not {} within 10 s", if running { "start" } else { "stop" });
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// auditd recording every 64-bit openat, with the kernel settings it is
/// restored to on drop.
#[derive(Debug)]
pub struct Audit {
    started_daemon: bool,
    enabled: u64,
    backlog_limit: u64,
    backlog_wait_time: u64,
    lost: u64,
}

impl Audit {
    pub fn start() -> Result<Audit> {
        let s = audit_status().context("no kernel audit support")?;
        let mut a = Audit {
            started_daemon: false,
            enabled: status_field(&s, "enabled")?,
            backlog_limit: status_field(&s, "backlog_limit")?,
            backlog_wait_time: status_field(&s, "backlog_wait_time")?,
            lost: status_field(&s, "lost")?,
        };
        if status_field(&s, "pid")? == 0 {
            // auditd forks into the background itself; no systemd here.
            let st = Command::new("auditd").status().context("run auditd")?;
            ensure!(st.success(), "auditd exited with {st}");
            a.started_daemon = true;
            wait_daemon(true)?;
        }
        // As Debian's stock /etc/audit/rules.d/audit.rules does: with the
        // kernel's default backlog of 64 the loop would mostly measure waits
        // on a full queue rather than auditing.
        auditctl(&["-b", "8192"])?;
        auditctl(&["--backlog_wait_time", "60000"])?;
        auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "openat", "-k", AUDIT_KEY])?;
        a.lost = status_field(&audit_status()?, "lost")?;
        Ok(a)
    }

    pub fn lost_since_start(&self) -> u64 {
        audit_status().ok().and_then(|s| s.get("lost").copied()).map_or(0, |n| n.saturating_sub(self.lost))
    }

    fn stop(&mut self) -> Result<()> {
        // Only our rule: an auditd that was already running keeps its own.
        auditctl(&["-D", "-k", AUDIT_KEY])?;
        auditctl(&["-b", &self.backlog_limit.to_string()])?;
        auditctl(&["--backlog_wait_time", &self.backlog_wait_time.to_string()])?;
        if self.started_daemon {
            let pid = status_field(&audit_status()?, "pid")?;
            if pid != 0 {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                wait_daemon(false)?;
            }
            auditctl(&["-e", &self.enabled.to_string()])?;
            self.started_daemon = false;
        }
        Ok(())
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("warning: audit cleanup incomplete ({e:#}); check `auditctl -l` and `auditctl -s`");
        }
    }
}
