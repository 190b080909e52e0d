//! A STAND-IN for Splunk's HTTP Event Collector: no Splunk can run here, so this implements the part of
//! Splunk's published HEC API the forwarder uses, and nothing more:
//!
//! - `POST /services/collector/event`: events as concatenated JSON objects (optionally gzip), each with an
//!   `event` field; `Authorization: Splunk <token>` (401 code 2 without, 403 code 4 with a wrong one); the
//!   `X-Splunk-Request-Channel` header required (400 code 10) since indexer acknowledgement is on; an empty
//!   body is 400 code 5 "No data"; unparsable data 400 code 6; 503 code 9 "Server is busy" when the test
//!   says so. Success: `{"text":"Success","code":0,"ackId":N}` (ack ids count per channel).
//! - `POST /services/collector/ack`: `{"acks":[ids]}` → `{"acks":{"id":bool}}` for the channel.
//! - `GET /services/collector/health`: 200 code 17, or 503 code 18 when busy.
//!
//! What a test can make it do: be busy (503), give acknowledgements late (`ack_delay`), lose requests (taken
//! with an ack id that never turns true, their events not indexed: what an indexer crash looks like to a
//! client), reject requests that contain a marker (400 code 6, a poison event).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the stand-in holds and how it behaves; shared with the test.
#[derive(Debug)]
pub struct HecState {
    token: String,
    indexed: Mutex<Vec<serde_json::Value>>,
    acks: Mutex<HashMap<String, HashMap<u64, Option<Instant>>>>,
    next_ack: AtomicU64,
    /// Answer 503 "Server is busy" to events and health.
    pub busy: AtomicBool,
    /// Take requests but never index them nor acknowledge them.
    pub lose: AtomicBool,
    /// Acknowledge this many milliseconds after indexing.
    pub ack_delay_ms: AtomicU64,
    /// A request whose body contains this is rejected whole (400 code 6).
    pub poison: Mutex<Option<String>>,
    pub requests: AtomicU64,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HecState {
    /// Every event indexed so far (the objects as sent: `time`, `host`, `sourcetype`, `event`, ...).
    pub fn events(&self) -> Vec<serde_json::Value> {
        lock(&self.indexed).clone()
    }

    pub fn set_poison(&self, marker: Option<&str>) {
        *lock(&self.poison) = marker.map(String::from);
    }
}

/// The running stand-in; stopped on drop.
#[derive(Debug)]
pub struct HecStandIn {
    url: String,
    pub state: Arc<HecState>,
    addr: std::net::SocketAddr,
}

impl HecStandIn {
    /// Listens on a free port of 127.0.0.1 and accepts `token`.
    pub fn start(token: &str) -> std::io::Result<HecStandIn> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(HecState {
            token: token.into(),
            indexed: Mutex::new(Vec::new()),
            acks: Mutex::new(HashMap::new()),
            next_ack: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            lose: AtomicBool::new(false),
            ack_delay_ms: AtomicU64::new(0),
            poison: Mutex::new(None),
            requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&state);
        std::thread::Builder::new().name("hec-standin".into()).spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                let _ = std::thread::Builder::new().name("hec-conn".into()).spawn(move || serve(&s, conn));
            }
        })?;
        Ok(HecStandIn { url: format!("http://{addr}"), state, addr })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for HecStandIn {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body })
}

fn serve(s: &HecState, conn: TcpStream) {
    // No read timeout: a connection's thread ends when the client closes it (keep-alive between requests).
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    while !s.stop.load(Ordering::Relaxed) {
        let Some(req) = read_request(&mut r) else { return };
        s.requests.fetch_add(1, Ordering::Relaxed);
        let (status, body) = route(s, &req);
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            if status == 200 { "OK" } else { "Error" },
            body.len()
        );
        if w.write_all(head.as_bytes()).and_then(|()| w.write_all(body.as_bytes())).is_err() {
            return;
        }
    }
}

fn reply(code: u32, text: &str) -> String {
    format!("{{\"text\":\"{text}\",\"code\":{code}}}")
}

fn route(s: &HecState, req: &Request) -> (u16, String) {
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "/services/collector/health") => {
            if s.busy.load(Ordering::Relaxed) {
                (503, reply(18, "HEC is unhealthy, queues are full"))
            } else {
                (200, reply(17, "HEC is healthy"))
            }
        }
        ("POST", "/services/collector/event" | "/services/collector") => event(s, req),
        ("POST", "/services/collector/ack") => ack(s, req),
        _ => (404, reply(404, "Not found")),
    }
}

/// Token and channel checks every endpoint but health makes.
fn authorize(s: &HecState, req: &Request) -> Result<String, (u16, String)> {
    let Some(auth) = req.headers.get("authorization") else { return Err((401, reply(2, "Token is required"))) };
    if auth.strip_prefix("Splunk ").map(str::trim) != Some(s.token.as_str()) {
        return Err((403, reply(4, "Invalid token")));
    }
    req.headers.get("x-splunk-request-channel").cloned().ok_or((400, reply(10, "Data channel is missing")))
}

fn event(s: &HecState, req: &Request) -> (u16, String) {
    let channel = match authorize(s, req) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if s.busy.load(Ordering::Relaxed) {
        return (503, reply(9, "Server is busy"));
    }
    let body = if req.headers.get("content-encoding").is_some_and(|e| e == "gzip") {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&req.body[..]).read_to_end(&mut out).is_err() {
            return (400, reply(6, "Invalid data format"));
        }
        out
    } else {
        req.body.clone()
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return (400, reply(5, "No data"));
    }
    if let Some(p) = lock(&s.poison).as_deref()
        && body.windows(p.len()).any(|w| w == p.as_bytes())
    {
        return (400, reply(6, "Invalid data format"));
    }
    let mut events = Vec::new();
    for (i, v) in serde_json::Deserializer::from_slice(&body).into_iter::<serde_json::Value>().enumerate() {
        match v {
            Ok(v) if v.get("event").is_some() => events.push(v),
            Ok(_) => {
                return (
                    400,
                    format!("{{\"text\":\"Event field is required\",\"code\":12,\"invalid-event-number\":{i}}}"),
                );
            }
            Err(_) => {
                return (400, format!("{{\"text\":\"Invalid data format\",\"code\":6,\"invalid-event-number\":{i}}}"));
            }
        }
    }
    let id = s.next_ack.fetch_add(1, Ordering::Relaxed);
    let lost = s.lose.load(Ordering::Relaxed);
    let ready = (!lost).then(|| Instant::now() + Duration::from_millis(s.ack_delay_ms.load(Ordering::Relaxed)));
    if !lost {
        lock(&s.indexed).extend(events);
    }
    lock(&s.acks).entry(channel).or_default().insert(id, ready);
    (200, format!("{{\"text\":\"Success\",\"code\":0,\"ackId\":{id}}}"))
}

fn ack(s: &HecState, req: &Request) -> (u16, String) {
    let channel = match authorize(s, req) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Ok(asked) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
        return (400, reply(6, "Invalid data format"));
    };
    let ids: Vec<u64> =
        asked["acks"].as_array().map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect()).unwrap_or_default();
    let now = Instant::now();
    let mut acks = lock(&s.acks);
    let chan = acks.entry(channel).or_default();
    let mut out = serde_json::Map::new();
    for id in ids {
        let done = chan.get(&id).copied().flatten().is_some_and(|t| t <= now);
        if done {
            // Splunk forgets an acknowledgement once it has been reported true.
            chan.remove(&id);
        }
        out.insert(id.to_string(), serde_json::Value::Bool(done));
    }
    (200, serde_json::json!({ "acks": out }).to_string())
}
