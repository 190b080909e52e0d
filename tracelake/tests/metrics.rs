//! The HTTP endpoint of a real `tracelake run` (docs/metrics.md): `/metrics` in the Prometheus text format with
//! the sensor's, enricher's, detections' and lake's families, `/healthz`, `/readyz`; a taken port; JSON logs.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::tracelake;

/// One sample of the text exposition format.
#[derive(Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: family name → (`# TYPE`, `# HELP`, samples).
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    help: BTreeMap<String, String>,
    samples: BTreeMap<String, Vec<Sample>>,
}

impl Exposition {
    /// Parses the text format (version 0.0.4): comments `# HELP`/`# TYPE`, samples `name{l="v",...} value`.
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE name type");
                e.types.insert(name.into(), ty.into());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                e.help.insert(name.into(), help.into());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("sample name");
            let name = &line[..name_end];
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "invalid metric name in {line:?}"
            );
            let mut labels = BTreeMap::new();
            let mut rest = &line[name_end..];
            if let Some(after) = rest.strip_prefix('{') {
                let mut chars = after.char_indices();
                let mut key = String::new();
                let end = loop {
                    let (i, c) = chars.next().expect("unterminated labels");
                    match c {
                        '}' => break i,
                        ',' => {}
                        '=' => {
                            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "label value quoted in {line:?}");
                            let mut value = String::new();
                            loop {
                                match chars.next().expect("unterminated value").1 {
                                    '\\' => match chars.next().expect("escape").1 {
                                        'n' => value.push('\n'),
                                        other => value.push(other),
                                    },
                                    '"' => break,
                                    other => value.push(other),
                                }
                            }
                            labels.insert(std::mem::take(&mut key), value);
                        }
                        other => key.push(other),
                    }
                };
                rest = &after[end + 1..];
            }
            let value = rest.split_whitespace().next().expect("sample value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            e.samples.entry(name.into()).or_default().push(Sample { labels, value });
        }
        e
    }

    fn family(&self, name: &str) -> &[Sample] {
        self.samples.get(name).map_or(&[], Vec::as_slice)
    }

    fn total(&self, name: &str) -> f64 {
        self.family(name).iter().map(|s| s.value).sum()
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.family(name).iter().filter_map(|s| s.labels.get(label).cloned()).collect()
    }
}

/// A plain HTTP/1.1 GET: (status, content type, body).
fn get(port: u16, path: &str) -> (u16, String, String) {
    try_get(port, path).expect("connect")
}

/// As [`get`]; None when nothing listens, or when the server closes the connection without an answer (it is
/// shutting down: the connection was accepted, then reset). A response that does not come within 10 s fails
/// the test.
fn try_get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    match s.read_to_string(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("reading the answer to {path}: {e}"),
    }
    if raw.is_empty() {
        return None;
    }
    let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    Some((status, ctype, body.to_string()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn run_serves_metrics_health_and_readiness() {
    let port = free_port();
    let lake = tempfile::tempdir().unwrap();
    let mut cmd = tracelake();
    cmd.args(["--log-format", "json", "run", "--for", "20s", "--lake"])
        .arg(lake.path())
        .env("TRACELAKE__METRICS__LISTEN", format!("127.0.0.1:{port}"))
        .env("TRACELAKE__SINKS__LAKE__ROTATE_AGE", "2s")
        .env("TRACELAKE__SINKS__LAKE__FLUSH_INTERVAL", "1s")
        .env_remove("TRACELAKE_LOG_FORMAT")
        .env_remove("RUST_LOG");
    let running = common::start(cmd);

    // Some activity of our own.
    for _ in 0..20 {
        std::process::Command::new("true").status().unwrap();
    }
    // Until the lake has written a file (rotate_age 2s), at most 15 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (metrics, ctype) = loop {
        let (status, ctype, body) = get(port, "/metrics");
        assert_eq!(status, 200, "{body}");
        let m = Exposition::parse(&body);
        if m.total("tracelake_lake_sink_rows_written_total") > 0.0 || Instant::now() > deadline {
            break (m, ctype);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");

    // Sensor: delivered events, emitted per kind, ring-buffer drops per CPU (every CPU, zeros included).
    assert_eq!(metrics.types["tracelake_sensor_events_delivered_total"], "counter");
    assert!(metrics.total("tracelake_sensor_events_delivered_total") > 0.0);
    assert!(metrics.label_values("tracelake_sensor_events_emitted_total", "kind").contains(&"exec".to_string()));
    let cpus = metrics.label_values("tracelake_sensor_events_dropped_per_cpu_total", "cpu");
    assert!(cpus.contains(&"0".to_string()), "drops per cpu: {cpus:?}");
    assert!(metrics.help["tracelake_sensor_events_dropped_per_cpu_total"].contains("ring buffer"));
    for family in ["tracelake_sensor_filtered_total", "tracelake_sensor_decode_errors_total"] {
        assert_eq!(metrics.family(family).len(), 1, "{family}");
    }
    // Enricher: caches by name, unresolved identity by reason (every reason, zeros included), the hold.
    let caches = metrics.label_values("tracelake_enricher_cache_hits_total", "cache");
    for cache in ["cgroup_identity", "process"] {
        assert!(caches.contains(&cache.to_string()), "{caches:?}");
    }
    assert!(metrics.total("tracelake_enricher_cache_hits_total") > 0.0);
    assert_eq!(metrics.label_values("tracelake_enricher_cache_misses_total", "cache").len(), caches.len());
    let reasons = metrics.label_values("tracelake_enricher_unresolved_total", "reason");
    for reason in ["permission_denied", "runtime_unreachable", "pod_unknown", "hold_expired"] {
        assert!(reasons.contains(&reason.to_string()), "{reasons:?}");
    }
    assert_eq!(metrics.family("tracelake_enricher_hold_held_total").len(), 1);
    // Detections: every rule, and the totals.
    let rules = metrics.label_values("tracelake_detections_findings_total", "rule");
    assert!(rules.len() >= 25, "{rules:?}");
    assert!(metrics.total("tracelake_detections_rounds_total") >= 0.0);
    assert_eq!(metrics.family("tracelake_detections_rule_errors_total").len(), 1);
    // The local lake.
    assert!(metrics.total("tracelake_lake_sink_rows_buffered_total") > 0.0);
    assert!(metrics.total("tracelake_lake_sink_rows_written_total") > 0.0, "a file within 15 s");
    assert!(metrics.total("tracelake_lake_sink_files_written_total") > 0.0);
    assert_eq!(metrics.total("tracelake_lake_sink_write_errors_total"), 0.0);
    assert_eq!(metrics.types["tracelake_lake_sink_rows_pending"], "gauge");
    // The resource, once; and every family has its help text.
    assert_eq!(metrics.family("target_info").len(), 1);
    for name in metrics.samples.keys() {
        assert!(metrics.help.get(name).is_some_and(|h| !h.is_empty()), "no help for {name}");
    }

    // A scrape sees the counters as they are, not as of the last status line.
    let before = metrics.total("tracelake_sensor_events_delivered_total");
    for _ in 0..20 {
        std::process::Command::new("true").status().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let again = Exposition::parse(&get(port, "/metrics").2);
    assert!(again.total("tracelake_sensor_events_delivered_total") > before);

    assert_eq!(get(port, "/healthz"), (200, "text/plain; charset=utf-8".into(), "ok\n".into()));
    assert_eq!(get(port, "/readyz").0, 200);
    assert_eq!(get(port, "/nope").0, 404);

    // A second instance on the same (explicitly configured) port: refused at start, naming the address and key.
    let out = tracelake()
        .args(["run", "--stdout", "--for", "5s"])
        .env("TRACELAKE__METRICS__LISTEN", format!("127.0.0.1:{port}"))
        .env("TRACELAKE_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second instance must fail: {err}");
    // In JSON too, as the last line.
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR", "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("metrics.listen"), "{err}");
    assert!(out.stdout.is_empty(), "no sensor ran: {}", String::from_utf8_lossy(&out.stdout));
    // The first one is unaffected.
    assert_eq!(get(port, "/healthz").0, 200);

    // Scrapes all through the shutdown: each answered (200, or 503 once metrics are shut down), none hangs.
    let scraper = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        while let Some((status, _, body)) = try_get(port, "/metrics") {
            assert!(status == 200 || (status == 503 && body == "shutting down\n"), "{status}: {body}");
            statuses.push(status);
            std::thread::sleep(Duration::from_millis(20));
        }
        statuses
    });
    let stopped = running.wait();
    let statuses = scraper.join().unwrap();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(stopped.status.success(), "{}", stopped.log);
    // --log-format json: every line of the log is one JSON object with level and fields.
    let mut lines = 0;
    for line in stopped.log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", stopped.log));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
        lines += 1;
    }
    assert!(stopped.log.contains("serving /metrics"), "{}", stopped.log);
    assert!(lines > 5, "{}", stopped.log);
    // After the process: nothing listens any more.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// At the default address (metrics.listen unset) a taken port does not stop the sensor: the error is logged and
/// events flow.
#[test]
fn a_taken_default_port_is_logged_and_the_node_runs_on() {
    // Hold 127.0.0.1:9464 ourselves (another test's instance may hold it for a while: wait for it).
    let deadline = Instant::now() + Duration::from_secs(90);
    let _held = loop {
        match TcpListener::bind("127.0.0.1:9464") {
            Ok(l) => break l,
            Err(e) if Instant::now() > deadline => panic!("127.0.0.1:9464 stays taken: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let out = tracelake()
        .args(["run", "--stdout", "--for", "2s"])
        .env_remove("TRACELAKE__METRICS__LISTEN")
        .env_remove("TRACELAKE_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cannot listen on the default metrics address"), "{err}");
    assert!(err.contains("127.0.0.1:9464"), "{err}");
    assert!(!out.stdout.is_empty(), "events flow without the endpoint");
}

#[test]
fn metrics_listen_empty_turns_the_endpoint_off() {
    let out = tracelake()
        .args(["run", "--stdout", "--for", "1s"])
        .env("TRACELAKE__METRICS__LISTEN", "")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("serving /metrics") && !err.contains("cannot listen"), "{err}");
}
