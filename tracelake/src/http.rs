//! The node's HTTP endpoint (docs/metrics.md): Prometheus `/metrics`, liveness `/healthz`,
//! readiness `/readyz`, for `tracelake run`, `agent` and `lake`.
//!
//! It runs on a thread of its own (hyper 1, HTTP/1.1, a current-thread tokio runtime), so a busy
//! or stuck sensor loop neither delays a scrape nor hides itself from `/healthz`. `/metrics`
//! collects the one OpenTelemetry meter provider on demand (the pull reader of
//! [`tracelake_telemetry::init_with_scrape`]), next to the OTLP push when that is configured.
//!
//! Health is process-wide state ([`progress`], [`watch_progress`], [`ready_check`]) so the parts
//! that know it (the pipeline's tick, the Kafka and lake counters) report it without plumbing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::oneshot;
use tracelake_telemetry::{Scrape, Telemetry, TelemetryError};

use crate::config::Config;

/// A connection that has not sent its request headers within this is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server thread samples a watched progress counter ([`watch_progress`]).
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What the liveness of this process is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `run`, `agent`: the sensor's ring-buffer read loop.
    Sensor,
    /// `lake`: the Kafka consumer's loop.
    Consumer,
}

impl Role {
    fn what(self) -> &'static str {
        match self {
            Role::Sensor => "the sensor's read loop",
            Role::Consumer => "the lake consumer's loop",
        }
    }
}

type Check = Box<dyn Fn() -> Option<String> + Send>;
type Watch = Box<dyn Fn() -> u64 + Send>;

/// Progress and readiness of the process.
pub struct Health {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last progress, plus one; 0: none yet.
    last: AtomicU64,
    /// Readiness checks: each names what is wrong, or None.
    checks: Mutex<Vec<Check>>,
    /// A counter whose change is progress (the lake consumer's polls), and its last value.
    watch: Mutex<Option<(Watch, u64)>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("last", &self.last).finish_non_exhaustive()
    }
}

static HEALTH: LazyLock<Health> = LazyLock::new(|| Health::new(Instant::now()));
/// Times the endpoint could not listen (only the default address gets this far; see `metrics.listen`).
static LISTEN_ERRORS: AtomicU64 = AtomicU64::new(0);

/// The loop made progress now (the sensor's read loop ticks about once a second).
pub fn progress() {
    HEALTH.stamp(Instant::now());
}

/// Progress is a change of `counter`, sampled every second by the server thread (the lake consumer runs on a
/// thread of its own and counts its polls).
pub fn watch_progress(counter: impl Fn() -> u64 + Send + 'static) {
    if let Ok(mut w) = HEALTH.watch.lock() {
        *w = Some((Box::new(counter), u64::MAX));
    }
}

/// `/readyz` also asks `check`: `Some(reason)` makes it 503 with that reason.
pub fn ready_check(check: impl Fn() -> Option<String> + Send + 'static) {
    if let Ok(mut c) = HEALTH.checks.lock() {
        c.push(Box::new(check));
    }
}

impl Health {
    fn new(epoch: Instant) -> Health {
        Health { epoch, last: AtomicU64::new(0), checks: Mutex::new(Vec::new()), watch: Mutex::new(None) }
    }

    fn stamp(&self, now: Instant) {
        let ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1);
        self.last.fetch_max(ms + 1, Ordering::Relaxed);
    }

    /// Time since the last progress; None before the first.
    fn since_progress(&self, now: Instant) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(now.saturating_duration_since(self.epoch + Duration::from_millis(ms - 1))),
        }
    }

    /// Samples the watched counter; a change is progress.
    fn sample(&self, now: Instant) {
        let Ok(mut w) = self.watch.lock() else { return };
        if let Some((counter, seen)) = w.as_mut() {
            let v = counter();
            if v != *seen {
                *seen = v;
                self.stamp(now);
            }
        }
    }

    /// Alive: progress within `bound`, or still starting (no progress yet, up for less than `bound`).
    fn liveness(&self, now: Instant, bound: Duration, what: &str) -> Result<(), String> {
        match self.since_progress(now) {
            Some(d) if d > bound => {
                Err(format!("{what} has made no progress for {} (metrics.stall_after = {})", secs(d), secs(bound)))
            }
            Some(_) => Ok(()),
            None if now.saturating_duration_since(self.epoch) > bound => {
                Err(format!("{what} has not started within metrics.stall_after = {}", secs(bound)))
            }
            None => Ok(()),
        }
    }

    /// Ready: the loop has started and made progress within `bound`, and every check passes.
    fn readiness(&self, now: Instant, bound: Duration, what: &str) -> Result<(), String> {
        match self.since_progress(now) {
            None => return Err(format!("{what} has not started yet")),
            Some(d) if d > bound => {
                return Err(format!(
                    "{what} has made no progress for {} (metrics.stall_after = {})",
                    secs(d),
                    secs(bound)
                ));
            }
            Some(_) => {}
        }
        let checks = self.checks.lock().map_err(|_| "a readiness check panicked".to_string())?;
        checks.iter().find_map(|c| c()).map_or(Ok(()), Err)
    }
}

fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The running endpoint; dropping it stops the server thread (a scrape in flight finishes first).
#[derive(Debug)]
pub struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What every request handler shares.
#[derive(Debug)]
struct State {
    scrape: Scrape,
    stall_after: Duration,
    role: Role,
}

/// Sets up telemetry (the OTLP push of `[telemetry]`, and the pull reader when the endpoint is on) and starts
/// the endpoint of `[metrics]`. A taken port is an error naming the address and the config key when
/// `metrics.listen` was set (file or environment); at the default address it is logged and counted, and the
/// process runs on without the endpoint.
pub fn telemetry(cfg: &Config, role: Role) -> anyhow::Result<(Telemetry, Option<Server>)> {
    let Some((listen, explicit)) = cfg.metrics.address() else {
        return Ok((tracelake_telemetry::init(&cfg.telemetry).context("cannot set up telemetry")?, None));
    };
    let telemetry = tracelake_telemetry::init_with_scrape(&cfg.telemetry).context("cannot set up telemetry")?;
    tracelake_telemetry::observe_counters(
        &tracelake_telemetry::meter("tracelake.metrics"),
        "tracelake.metrics.listen_errors",
        "Times the metrics endpoint could not listen at the default address and the process went on without it",
        |report| report(LISTEN_ERRORS.load(Ordering::Relaxed), &[]),
    );
    LazyLock::force(&HEALTH);
    let Some(scrape) = telemetry.scrape() else { return Ok((telemetry, None)) };
    let addr: SocketAddr = listen.parse().with_context(|| format!("metrics.listen = {listen:?}"))?;
    let listener = match std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
        Ok(l) => l,
        Err(e) if explicit => {
            return Err(e).with_context(|| {
                format!(
                    "cannot listen on {addr} for /metrics, /healthz and /readyz (metrics.listen, \
                     TRACELAKE__METRICS__LISTEN; \"\" turns the endpoint off)"
                )
            });
        }
        Err(e) => {
            LISTEN_ERRORS.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                %addr,
                error = %e,
                "cannot listen on the default metrics address: running without /metrics, /healthz and /readyz \
                 (set metrics.listen or TRACELAKE__METRICS__LISTEN to another address, \"\" to turn it off)"
            );
            return Ok((telemetry, None));
        }
    };
    let state = Arc::new(State { scrape, stall_after: cfg.metrics.stall_after, role });
    let (stop, stopped) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("tl-http".into())
        .spawn(move || serve_thread(listener, state, stopped))
        .context("cannot start the metrics endpoint thread")?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok((telemetry, Some(Server { stop: Some(stop), thread: Some(thread) })))
}

fn serve_thread(listener: std::net::TcpListener, state: Arc<State>, stopped: oneshot::Receiver<()>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "metrics endpoint: cannot start its runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "metrics endpoint: cannot register the listener");
                return;
            }
        };
        let mut watch = tokio::time::interval(WATCH_EVERY);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = watch.tick() => HEALTH.sample(Instant::now()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let state = Arc::clone(&state);
                        tokio::spawn(async move {
                            let service = service_fn(move |req| {
                                let response = respond(&state, &req);
                                async move { Ok::<_, Infallible>(response) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .timer(TokioTimer::new())
                                .header_read_timeout(HEADER_TIMEOUT)
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    // Out of file descriptors and the like: wait instead of spinning.
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
}

fn respond(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    let now = Instant::now();
    let what = state.role.what();
    match req.uri().path() {
        "/metrics" => match state.scrape.render() {
            Ok(body) => {
                let mut r = text(StatusCode::OK, body);
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(tracelake_telemetry::SCRAPE_CONTENT_TYPE));
                r
            }
            Err(TelemetryError::ShutDown) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{:#}\n", anyhow::Error::new(e))),
        },
        "/healthz" => health(HEALTH.liveness(now, state.stall_after, what), "ok"),
        "/readyz" => health(HEALTH.readiness(now, state.stall_after, what), "ready"),
        _ => text(StatusCode::NOT_FOUND, "not found; try /metrics, /healthz or /readyz\n".into()),
    }
}

fn health(result: Result<(), String>, ok: &str) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => text(StatusCode::OK, format!("{ok}\n")),
        Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    const BOUND: Duration = Duration::from_secs(30);

    #[test]
    fn stalled_loop_fails_liveness_and_readiness() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        // Starting: alive, not ready.
        assert_eq!(h.liveness(t0 + Duration::from_secs(5), BOUND, "the loop"), Ok(()));
        assert!(h.readiness(t0 + Duration::from_secs(5), BOUND, "the loop").unwrap_err().contains("not started"));
        // Ticking.
        h.stamp(t0 + Duration::from_secs(10));
        assert_eq!(h.liveness(t0 + Duration::from_secs(39), BOUND, "the loop"), Ok(()));
        assert_eq!(h.readiness(t0 + Duration::from_secs(39), BOUND, "the loop"), Ok(()));
        // The stamp is older than the bound: 503 with a reason.
        let err = h.liveness(t0 + Duration::from_secs(45), BOUND, "the loop").unwrap_err();
        assert!(err.contains("the loop has made no progress for 35s"), "{err}");
        assert!(err.contains("metrics.stall_after = 30s"), "{err}");
        assert!(h.readiness(t0 + Duration::from_secs(45), BOUND, "the loop").is_err());
        // Progress again: healthy again.
        h.stamp(t0 + Duration::from_secs(46));
        assert_eq!(h.liveness(t0 + Duration::from_secs(47), BOUND, "the loop"), Ok(()));
    }

    #[test]
    fn never_started_fails_liveness_after_the_bound() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        let err = h.liveness(t0 + Duration::from_secs(31), BOUND, "the loop").unwrap_err();
        assert!(err.contains("not started"), "{err}");
    }

    #[test]
    fn a_failing_check_makes_readiness_fail_with_its_reason() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        h.stamp(t0);
        h.checks.lock().unwrap().push(Box::new(|| None));
        assert_eq!(h.readiness(t0, BOUND, "the loop"), Ok(()));
        h.checks.lock().unwrap().push(Box::new(|| Some("kafka: all brokers down".into())));
        assert_eq!(h.readiness(t0, BOUND, "the loop"), Err("kafka: all brokers down".into()));
        // Liveness does not depend on the sinks.
        assert_eq!(h.liveness(t0, BOUND, "the loop"), Ok(()));
    }

    #[test]
    fn a_watched_counter_is_progress_when_it_changes() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        let n = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&n);
        *h.watch.lock().unwrap() = Some((Box::new(move || c.load(Ordering::Relaxed)), u64::MAX));
        h.sample(t0 + Duration::from_secs(1));
        assert_eq!(h.since_progress(t0 + Duration::from_secs(1)), Some(Duration::ZERO));
        // Unchanged: no progress.
        h.sample(t0 + Duration::from_secs(40));
        assert!(h.liveness(t0 + Duration::from_secs(40), BOUND, "the consumer").is_err());
        n.store(5, Ordering::Relaxed);
        h.sample(t0 + Duration::from_secs(41));
        assert_eq!(h.liveness(t0 + Duration::from_secs(41), BOUND, "the consumer"), Ok(()));
    }
}
