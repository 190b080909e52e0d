//! What the end-to-end tests share: a `tracelake` child whose output is drained all along.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

pub fn tracelake() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracelake"))
}

/// A running `tracelake run`/`agent`.
pub struct Running {
    pub child: Child,
    stdout: JoinHandle<std::io::Result<Vec<u8>>>,
    log: JoinHandle<String>,
}

/// What it printed, once it stopped.
pub struct Stopped {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// Standard error (the log).
    pub log: String,
}

impl Stopped {
    /// Standard output as JSON lines.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }
}

/// Spawns `cmd` and returns once the sensor is attached and has reported the running processes, so what the
/// test does next is seen. Both pipes are drained all along: the /proc walk alone can fill a pipe, and a child
/// blocked on a full pipe would never say it started.
pub fn start(mut cmd: Command) -> Running {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).map(|_| buf)
    });
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("reported running processes") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sensor never started:\n{}", log.join().unwrap());
    }
    Running { child, stdout, log }
}

impl Running {
    /// SIGTERM, then what it printed.
    pub fn stop(self) -> Stopped {
        // SAFETY: kill(2) on our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) }, 0);
        self.wait()
    }

    /// Waits for it to exit by itself (`--for`).
    pub fn wait(mut self) -> Stopped {
        let status = self.child.wait().unwrap();
        Stopped { status, stdout: self.stdout.join().unwrap().unwrap(), log: self.log.join().unwrap() }
    }
}

/// Connects from `a` to port 8080 of `ip` until the server there answers "hello-from-b" (a peer's listener
/// may take a moment to start).
pub fn connect_until_reply(a: &tracelake_testkit::lab::Container, ip: &str) {
    let t = std::time::Instant::now();
    loop {
        let out = a.exec(&format!("a-nc-{}", t.elapsed().as_millis()), &["nc", "-w", "2", ip, "8080"]).unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("hello-from-b") {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "no reply from {ip}: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
