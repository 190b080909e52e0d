//! A real Elasticsearch-API server for tests: osmem-server (PyPI `osmem-server`, a static Go binary in the
//! wheel: `_bulk` with gzip, `_search`, `_count`, `_mget`, `_refresh`, index templates, per-item errors, 409
//! on a duplicate `create`), in memory, on a free loopback port, killed on drop. scripts/setup.sh installs it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::http;

/// Why osmem-server did not start.
#[derive(Debug, thiserror::Error)]
pub enum OsmemError {
    #[error("osmem-server not found ({0}): run scripts/setup.sh (it installs the PyPI package osmem-server)")]
    Missing(String),
    #[error("cannot start osmem-server {}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("osmem-server did not say where it listens: {0}")]
    NotReady(String),
}

/// The binary: `$OSMEM_SERVER_BIN`, else the one the installed Python package bundles.
pub fn binary() -> Result<PathBuf, OsmemError> {
    if let Some(p) = std::env::var_os("OSMEM_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args(["-c", "import osmem_server; print(osmem_server.resolve_binary())"])
        .output()
        .map_err(|e| OsmemError::Missing(format!("python3: {e}")))?;
    if !out.status.success() {
        return Err(OsmemError::Missing(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_string()));
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.exists() {
        return Err(OsmemError::Missing(format!("{} does not exist", path.display())));
    }
    Ok(path)
}

/// One osmem-server process; its indices live in memory and are gone when it stops.
#[derive(Debug)]
pub struct Osmem {
    child: Child,
    /// Kept open: osmem-server exits when its standard input closes.
    _stdin: Option<ChildStdin>,
    url: String,
}

impl Osmem {
    /// Starts it on a free port of 127.0.0.1 and waits for its ready line.
    pub fn start() -> Result<Osmem, OsmemError> {
        let path = binary()?;
        let mut child = Command::new(&path)
            .args(["-addr", "127.0.0.1:0", "-no-ja", "-parent-pid", &std::process::id().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| OsmemError::Spawn { path: path.clone(), source })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| OsmemError::NotReady("no stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| OsmemError::NotReady(e.to_string()))?;
        let ready: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| OsmemError::NotReady(format!("{e}: {line}")))?;
        let url = ready.get("url").and_then(|u| u.as_str()).ok_or_else(|| OsmemError::NotReady(line.clone()))?;
        Ok(Osmem { child, _stdin: stdin, url: url.to_string() })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the server hangs (requests time out), as an overloaded or partitioned cluster; `resume` ends it.
    pub fn pause(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    /// `_refresh` then `_count` of `index` (a pattern works); None if the index does not exist.
    pub fn count(&self, index: &str) -> Option<u64> {
        let _ = http::request("POST", &format!("{}/{index}/_refresh", self.url), None, &[]);
        let (status, body) = http::request("GET", &format!("{}/{index}/_count", self.url), None, &[]).ok()?;
        if status != 200 {
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&body).ok()?.get("count")?.as_u64()
    }

    /// The `_id`s of every document in `index` (a pattern works), with repeats if any: pages of 10,000 (the
    /// server's result window) in `_id` order.
    pub fn ids(&self, index: &str) -> Vec<String> {
        let url = format!("{}/{index}/_search", self.url);
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut q = serde_json::json!({"size": 10000, "_source": false, "sort": [{"_id": "asc"}]});
            if let Some(a) = &after {
                q["search_after"] = serde_json::json!([a]);
            }
            let body = q.to_string();
            let Ok((200, resp)) =
                http::request("POST", &url, Some(body.as_bytes()), &[("Content-Type", "application/json")])
            else {
                return out;
            };
            let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
            let page: Vec<String> = v["hits"]["hits"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h["_id"].as_str().map(String::from))
                .collect();
            if page.is_empty() {
                return out;
            }
            after = page.last().cloned();
            out.extend(page);
        }
    }

    /// The `_source` of document `id` in `index`.
    pub fn get(&self, index: &str, id: &str) -> Option<serde_json::Value> {
        let (status, body) = http::request("GET", &format!("{}/{index}/_doc/{id}", self.url), None, &[]).ok()?;
        if status != 200 {
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&body).ok()?.get("_source").cloned()
    }
}

impl Drop for Osmem {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
