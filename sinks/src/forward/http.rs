//! The HTTP client of the forwarders: reqwest's blocking client (already linked by the OTLP exporter) with
//! rustls on ring, one per sender thread (a blocking client must not live on an async runtime's thread, and
//! `tracelake run` starts the forwarders from inside one).

use std::io::Write;
use std::sync::Once;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;

use tracelake_model::error_chain;

use super::ForwardError;
use super::config::TlsConfig;

/// One connection pool with the target's TLS settings.
#[derive(Debug)]
pub struct Http {
    client: reqwest::blocking::Client,
    /// Request body bytes put on the wire (after gzip), for `bytes_sent`.
    pub wire_bytes: std::sync::atomic::AtomicU64,
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// Bytes of the request body on the wire (after gzip).
    pub sent: usize,
}

fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Someone else may have installed one (kube's client does not; a test may); any provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Http {
    pub fn new(tls: &TlsConfig, timeout: Duration) -> Result<Http, ForwardError> {
        install_provider();
        let read = |p: &std::path::PathBuf, what| {
            std::fs::read(p).map_err(|source| ForwardError::Io { what, path: p.clone(), source })
        };
        let mut b = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(50))
            .tls_backend_rustls();
        if let Some(ca) = &tls.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca, "read the CA file")?)
                .map_err(|e| ForwardError::Config(format!("tls.ca_file {}: {e}", ca.display())))?;
            b = b.tls_certs_only(certs);
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert, "read the client certificate")?;
                pem.push(b'\n');
                pem.extend_from_slice(&read(key, "read the client key")?);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| ForwardError::Config(format!("tls.cert_file/key_file: {e}")))?;
                b = b.identity(id);
            }
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(ForwardError::Config("tls.cert_file and tls.key_file go together".into()));
            }
        }
        if !tls.verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let client = b.build().map_err(|e| ForwardError::Http(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http { client, wire_bytes: std::sync::atomic::AtomicU64::new(0) })
    }

    /// POSTs `body` (gzipped with `gzip`) with `headers`; an error for anything but an HTTP answer.
    pub fn post(&self, url: &str, headers: &[(&str, &str)], body: &[u8], gzip: bool) -> Result<Response, String> {
        let mut req = self.client.post(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let payload = if gzip {
            req = req.header("Content-Encoding", "gzip");
            gzip_bytes(body).map_err(|e| format!("gzip: {e}"))?
        } else {
            body.to_vec()
        };
        let sent = payload.len();
        self.wire_bytes.fetch_add(sent as u64, std::sync::atomic::Ordering::Relaxed);
        self.send(req.body(payload)).map(|r| Response { sent, ..r })
    }

    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        let mut req = self.client.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req)
    }

    pub fn put(&self, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Response, String> {
        let mut req = self.client.put(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(body))
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Response, String> {
        let resp = req.send().map_err(|e| error_chain(&e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().map_err(|e| error_chain(&e))?.to_vec();
        Ok(Response { status, body, sent: 0 })
    }
}

/// gzip at level 1: several times faster than the default level for a few percent more bytes.
pub fn gzip_bytes(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 6 + 64), Compression::fast());
    enc.write_all(body)?;
    enc.finish()
}
