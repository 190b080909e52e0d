//! A real Kafka-protocol broker for tests: tansu (in-memory storage) on a
//! free loopback port, killed on drop. scripts/setup.sh installs it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot start tansu at {} (scripts/setup.sh installs it)", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free port")]
    Port(#[source] std::io::Error),
    #[error("tansu did not listen on {0} within 20 s")]
    NotReady(String),
}

/// The tansu binary: `$TANSU`, else where scripts/setup.sh installs it.
pub fn tansu_bin() -> PathBuf {
    std::env::var_os("TANSU").map_or_else(|| PathBuf::from("/var/tmp/tansu/bin/tansu"), PathBuf::from)
}

/// One broker process; its data lives in memory and is gone when it stops.
#[derive(Debug)]
pub struct Broker {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Broker {
    /// Starts a broker on a free port of 127.0.0.1 and waits until it accepts connections.
    pub fn start() -> Result<Broker, BrokerError> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(BrokerError::Port)?.port();
        let log = std::env::temp_dir().join(format!("tansu-{port}.log"));
        let mut b = Broker { port, child: None, log };
        b.restart()?;
        Ok(b)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the broker's output goes (appended across restarts).
    pub fn log(&self) -> &PathBuf {
        &self.log
    }

    /// SIGKILL, as a crash: everything it held in memory is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port (empty: storage is in memory).
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.kill();
        let url = format!("tcp://{}", self.addr());
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log);
        let (stdout, stderr) = match out.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
            Err(_) => (Stdio::null(), Stdio::null()),
        };
        let path = tansu_bin();
        let child = Command::new(&path)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--cluster-id", "tracelake-test"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| BrokerError::Spawn { path, source })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr()).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(BrokerError::NotReady(self.addr()))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
