//! Metrics for every tracelake component, through OpenTelemetry.
//!
//! A binary calls [`init`] once at start-up and keeps the returned [`Telemetry`] guard alive;
//! libraries only call [`meter`] and register instruments.
//!
//! Hot paths never touch OpenTelemetry: they bump their own `AtomicU64`s (or the kernel does),
//! and [`observe_counters`] / [`observe_gauges`] register observable instruments that read those
//! values only when the periodic reader collects. That keeps the per-event cost at one relaxed
//! atomic add.
//!
//! [`init_with_scrape`] adds a second reader to the same provider: [`Scrape::render`] collects on
//! demand and encodes everything registered in the Prometheus text exposition format, so a
//! `/metrics` endpoint serves the very instruments the OTLP push exports, without re-plumbing.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use tracelake_telemetry::{KeyValue, TelemetryConfig, init, meter, observe_counters};
//!
//! let cfg = TelemetryConfig {
//!     otlp_endpoint: Some("http://127.0.0.1:4318".into()),
//!     ..TelemetryConfig::default()
//! };
//! let telemetry = init(&cfg)?;
//!
//! let dropped = Arc::new(AtomicU64::new(0));
//! let source = Arc::clone(&dropped);
//! observe_counters(&meter("sensor"), "tracelake.sensor.events_dropped", "Events lost in the ring buffer", move |report| {
//!     report(source.load(Ordering::Relaxed), &[KeyValue::new("reason", "full")]);
//! });
//! dropped.fetch_add(1, Ordering::Relaxed); // the hot path
//!
//! telemetry.shutdown()?; // or just drop it
//! # Ok::<(), tracelake_telemetry::TelemetryError>(())
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _, ObservableCounter, ObservableGauge};
use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use serde::{Deserialize, Serialize};

pub use opentelemetry::KeyValue;

/// The OTLP/HTTP path for metrics, appended to [`TelemetryConfig::otlp_endpoint`].
const METRICS_PATH: &str = "/v1/metrics";

/// How this process reports metrics; usually the `[telemetry]` table of a component's config.
///
/// Durations are humantime strings such as `"10s"`, `"500ms"` or `"1m 30s"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP (protobuf) receiver, e.g. `http://127.0.0.1:4318`; metrics are
    /// POSTed to `<base>/v1/metrics`. Only `http://` is accepted: the intended receiver is a
    /// collector on the node, and leaving TLS out keeps this crate free of a TLS stack.
    /// `None` (the default) exports nothing, but instruments still work.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Time between two collections and exports, as a humantime string; default `"10s"`.
    #[serde(default = "default_export_interval", with = "humantime_serde")]
    pub export_interval: Duration,
    /// Upper bound on one export, retries included; also bounds how long [`Telemetry::shutdown`]
    /// can block on an unreachable collector. Humantime string; default `"5s"`.
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub export_timeout: Duration,
    /// The `service.name` resource attribute; default `"tracelake"`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Extra resource attributes attached to every exported metric, such as
    /// `"k8s.node.name" = "node-1"`; default empty. They override `OTEL_RESOURCE_ATTRIBUTES`.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
}

fn default_export_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_export_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_service_name() -> String {
    "tracelake".to_owned()
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            export_interval: default_export_interval(),
            export_timeout: default_export_timeout(),
            service_name: default_service_name(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

/// Why telemetry could not be set up, flushed or shut down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The configured endpoint is not an `http://` URL.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The OTLP exporter rejected its configuration.
    #[error("cannot build the OTLP metric exporter for {endpoint}")]
    Exporter {
        /// The full metrics URL the exporter was built for.
        endpoint: String,
        /// The exporter's own error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A forced collection and export failed (e.g. the collector is unreachable).
    #[error("cannot flush metrics")]
    Flush(#[source] OTelSdkError),
    /// The final export or the release of the reader failed.
    #[error("cannot shut down the meter provider")]
    Shutdown(#[source] OTelSdkError),
    /// The Prometheus pull reader could not be built.
    #[error("cannot build the Prometheus reader")]
    Prometheus(#[source] OTelSdkError),
    /// A scrape came after (or during) [`Telemetry::shutdown`]: the provider no longer collects.
    #[error("metrics are shut down")]
    ShutDown,
    /// The collected metrics could not be encoded in the text format.
    #[error("cannot encode metrics in the Prometheus text format")]
    Encode(#[source] prometheus::Error),
}

/// Guard for the process-wide meter provider set up by [`init`].
///
/// Keep it alive for the life of the process. [`Telemetry::shutdown`] (or dropping the guard)
/// runs a final collection and export, so counters bumped just before exit are not lost.
#[derive(Debug)]
pub struct Telemetry {
    /// `None` once shut down, so Drop does not shut down twice.
    provider: Option<SdkMeterProvider>,
    /// The pull reader's handle, with [`init_with_scrape`].
    scrape: Option<Scrape>,
}

/// Collects every instrument of the provider on demand and encodes it in the Prometheus text
/// exposition format (version 0.0.4), for a `/metrics` endpoint. Cheap to clone; usable from
/// any thread.
///
/// Names follow the OpenTelemetry-to-Prometheus rules of `opentelemetry-prometheus`: dots
/// become underscores, monotonic counters get `_total`, the description is the `# HELP` text;
/// resource attributes appear once, in `target_info`.
#[derive(Clone)]
pub struct Scrape {
    registry: prometheus::Registry,
    /// Set when the provider shuts down: later scrapes fail at once instead of collecting.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").field("closed", &self.closed.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// The `Content-Type` of [`Scrape::render`]'s text.
pub const SCRAPE_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Scrape {
    /// Runs every callback now (as an OTLP collection would) and returns the text exposition.
    ///
    /// Fails with [`TelemetryError::ShutDown`] once the provider is shut down; a scrape racing
    /// the shutdown gets either a complete text or that error, never a hang.
    pub fn render(&self) -> Result<String, TelemetryError> {
        use prometheus::Encoder as _;
        if self.closed.load(Ordering::Acquire) {
            return Err(TelemetryError::ShutDown);
        }
        let families = self.registry.gather();
        if self.closed.load(Ordering::Acquire) {
            // The collection may have failed half-way because of the shutdown: do not serve it.
            return Err(TelemetryError::ShutDown);
        }
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&families, &mut out).map_err(TelemetryError::Encode)?;
        String::from_utf8(out).map_err(|e| TelemetryError::Encode(prometheus::Error::Msg(e.to_string())))
    }
}

/// Builds the meter provider described by `cfg` and installs it as the global one.
///
/// With an endpoint, a periodic reader exports over OTLP/HTTP with a blocking client on its
/// own thread, so this works from plain threads and from inside any tokio runtime alike, and
/// exporting never occupies a runtime worker. Without an endpoint, instruments are created and
/// callbacks registered as usual but nothing is collected.
///
/// Calling it again replaces the global provider; meters obtained earlier keep reporting to the
/// provider that was global when they were created.
pub fn init(cfg: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    build(cfg, false)
}

/// As [`init`], plus a pull reader on the same provider for Prometheus scrapes
/// ([`Telemetry::scrape`]). The OTLP push, if configured, works exactly as with [`init`]: each
/// reader collects on its own schedule.
pub fn init_with_scrape(cfg: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    build(cfg, true)
}

fn build(cfg: &TelemetryConfig, scrape: bool) -> Result<Telemetry, TelemetryError> {
    // reqwest is built with rustls and no crypto provider of its own (the workspace's choice: ring, which needs
    // no cmake or NASM): every reqwest client, the OTLP exporter's included, needs one installed first. An
    // error means one is installed already, which is what this wants.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attributes(cfg.resource_attributes.iter().map(|(key, value)| KeyValue::new(key.clone(), value.clone())))
        .build();
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if let Some(endpoint) = &cfg.otlp_endpoint {
        let url = metrics_url(endpoint)?;
        let exporter = MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .with_timeout(cfg.export_timeout)
            .build()
            .map_err(|source| TelemetryError::Exporter { endpoint: url, source })?;
        let reader = PeriodicReader::builder(exporter).with_interval(cfg.export_interval).build();
        builder = builder.with_reader(reader);
    }
    let scrape = if scrape {
        let registry = prometheus::Registry::new();
        // Scope labels (otel_scope_name on every series) only add noise: metric names are unique.
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            .map_err(TelemetryError::Prometheus)?;
        builder = builder.with_reader(reader);
        Some(Scrape { registry, closed: Arc::new(AtomicBool::new(false)) })
    } else {
        None
    };
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    Ok(Telemetry { provider: Some(provider), scrape })
}

/// Turns the configured base URL into the metrics URL, because the exporter uses an explicitly
/// configured endpoint verbatim, unlike `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn metrics_url(endpoint: &str) -> Result<String, TelemetryError> {
    let invalid = |reason| TelemetryError::InvalidEndpoint { endpoint: endpoint.to_owned(), reason };
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(invalid("must start with http:// (this build has no TLS; export via a local collector)"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("has no host"));
    }
    let base = endpoint.trim_end_matches('/');
    // Accept a full metrics URL too, since that is what OTLP_..._METRICS_ENDPOINT users paste.
    if base.ends_with(METRICS_PATH) { Ok(base.to_owned()) } else { Ok(format!("{base}{METRICS_PATH}")) }
}

impl Telemetry {
    /// A meter from this guard's provider rather than the global one; lets tests that run
    /// several providers in one process keep their instruments apart.
    pub fn meter(&self, name: &'static str) -> Meter {
        match &self.provider {
            Some(provider) => provider.meter(name),
            // Unreachable through the public API (shutdown consumes self), but harmless.
            None => opentelemetry::global::meter(name),
        }
    }

    /// The Prometheus pull reader, with [`init_with_scrape`].
    pub fn scrape(&self) -> Option<Scrape> {
        self.scrape.clone()
    }

    /// Collects and exports now instead of waiting for the next interval.
    ///
    /// Blocks the calling thread until the export finished or timed out; from async code call it
    /// via `spawn_blocking`. Without an endpoint it does nothing and succeeds.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        match &self.provider {
            Some(provider) => provider.force_flush().map_err(TelemetryError::Flush),
            None => Ok(()),
        }
    }

    /// Runs a final collection and export, then stops the reader thread.
    ///
    /// Blocks like [`Telemetry::force_flush`]. Dropping the guard does the same but can only
    /// ignore errors.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shutdown_provider()
    }

    fn shutdown_provider(&mut self) -> Result<(), TelemetryError> {
        if let Some(s) = &self.scrape {
            s.closed.store(true, Ordering::Release);
        }
        match self.provider.take() {
            Some(provider) => provider.shutdown().map_err(TelemetryError::Shutdown),
            None => Ok(()),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Drop cannot report; an unreachable collector at exit must not abort the process.
        let _ = self.shutdown_provider();
    }
}

/// A meter from the global provider installed by [`init`] (a no-op one before `init`).
///
/// Create instruments after `init`: a meter taken earlier stays bound to the no-op provider.
pub fn meter(name: &'static str) -> Meter {
    opentelemetry::global::meter(name)
}

/// Registers a monotonic `u64` counter whose values are read from `source` at collection time.
///
/// On each collection `source` is called with a `report` function; it calls `report(value,
/// attributes)` once per attribute set, passing the current running total (not a delta), e.g.
/// an `AtomicU64` loaded with `Relaxed` or a kernel map counter. `source` runs on the reader
/// thread, so it must be cheap and must not panic: a panic stops all further exports.
///
/// The callback stays registered for the life of the provider; the returned handle need not be
/// kept.
pub fn observe_counters<F>(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    source: F,
) -> ObservableCounter<u64>
where
    F: Fn(&mut dyn FnMut(u64, &[KeyValue])) + Send + Sync + 'static,
{
    meter
        .u64_observable_counter(name)
        .with_description(description)
        .with_callback(move |observer| source(&mut |value, attrs| observer.observe(value, attrs)))
        .build()
}

/// Registers a `u64` gauge (a value that goes up and down: queue depth, map entries, open file
/// descriptors) read from `source` at collection time; `source` works as in [`observe_counters`].
///
/// For signed or fractional gauges use the meter's `i64_observable_gauge` / `f64_observable_gauge`
/// directly.
pub fn observe_gauges<F>(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    source: F,
) -> ObservableGauge<u64>
where
    F: Fn(&mut dyn FnMut(u64, &[KeyValue])) + Send + Sync + 'static,
{
    meter
        .u64_observable_gauge(name)
        .with_description(description)
        .with_callback(move |observer| source(&mut |value, attrs| observer.observe(value, attrs)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_url_appends_the_signal_path_once() {
        let url = |e: &str| metrics_url(e).expect("valid endpoint");
        assert_eq!(url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(url("http://collector:4318/"), "http://collector:4318/v1/metrics");
        assert_eq!(url("http://c:4318/v1/metrics"), "http://c:4318/v1/metrics");
        assert_eq!(url("http://c/prefix"), "http://c/prefix/v1/metrics");
    }

    #[test]
    fn metrics_url_rejects_non_http_endpoints() {
        for bad in ["https://c:4318", "127.0.0.1:4318", "http://", "http:///x", ""] {
            let err = metrics_url(bad).expect_err(bad);
            assert!(matches!(err, TelemetryError::InvalidEndpoint { .. }), "{bad}: {err}");
        }
    }
}
