//! Exports to a real OTLP/HTTP receiver on loopback, from plain threads and tokio runtimes.
//!
//! Every test here uses its guard's own meter (`Telemetry::meter`), because tests run in
//! parallel and each `init` replaces the global provider.

#![allow(clippy::unwrap_used, reason = "a missing metric should fail the test loudly")]

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{find_metric, gauge_points, int_value, resource_attr, start_receiver, string_attr, sum_points};
use opentelemetry_proto::tonic::metrics::v1::NumberDataPoint;
use tracelake_telemetry::{KeyValue, TelemetryConfig, TelemetryError, init, observe_counters, observe_gauges};

fn config(endpoint: &str) -> TelemetryConfig {
    TelemetryConfig {
        otlp_endpoint: Some(endpoint.to_owned()),
        // Long enough that only the explicit flush/shutdown exports during a test.
        export_interval: Duration::from_secs(3600),
        ..TelemetryConfig::default()
    }
}

#[test]
fn observed_counter_and_gauge_reach_the_collector() {
    let collector = start_receiver();
    let mut cfg = config(&collector.base_url);
    cfg.service_name = "tracelake-test".into();
    cfg.resource_attributes.insert("k8s.node.name".into(), "node-7".into());
    let telemetry = init(&cfg).expect("init with endpoint");

    let meter = telemetry.meter("sensor");
    let dropped = Arc::new(AtomicU64::new(0));
    let source = Arc::clone(&dropped);
    // The handle is dropped on purpose: the callback must outlive it.
    let _ = observe_counters(&meter, "tracelake.test.events_dropped", "events lost", move |report| {
        report(source.load(Ordering::Relaxed), &[KeyValue::new("reason", "full")]);
        report(3, &[KeyValue::new("reason", "filtered")]);
    });
    let _gauge = observe_gauges(&meter, "tracelake.test.queue_depth", "queued", |report| {
        report(7, &[]);
    });
    dropped.fetch_add(42, Ordering::Relaxed);

    telemetry.force_flush().expect("flush to a live collector");
    let (request, payload) = collector.next_with("tracelake.test.events_dropped");
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/metrics");
    assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
    let needle = b"tracelake.test.events_dropped";
    assert!(request.body.windows(needle.len()).any(|w| w == needle), "metric name bytes are in the raw body");
    assert_eq!(resource_attr(&payload, "service.name"), Some("tracelake-test"));
    assert_eq!(resource_attr(&payload, "k8s.node.name"), Some("node-7"));

    let counter = find_metric(&payload, "tracelake.test.events_dropped").unwrap();
    assert_eq!(counter.description, "events lost");
    let (monotonic, points) = sum_points(counter);
    assert!(monotonic, "observe_counters yields a monotonic sum");
    assert_eq!(value_with_reason(points, "full"), 42);
    assert_eq!(value_with_reason(points, "filtered"), 3);

    let gauge = find_metric(&payload, "tracelake.test.queue_depth").unwrap();
    let points = gauge_points(gauge);
    assert_eq!(points.len(), 1);
    assert_eq!(int_value(&points[0]), 7);

    // Shutdown must export what changed since the last flush.
    dropped.fetch_add(8, Ordering::Relaxed);
    telemetry.shutdown().expect("shutdown with a live collector");
    let (_, payload) = collector.next_with("tracelake.test.events_dropped");
    let counter = find_metric(&payload, "tracelake.test.events_dropped").unwrap();
    assert_eq!(value_with_reason(sum_points(counter).1, "full"), 50);
}

/// The integer value of the data point tagged `reason=<reason>`.
fn value_with_reason(points: &[NumberDataPoint], reason: &str) -> i64 {
    let point = points
        .iter()
        .find(|p| string_attr(&p.attributes, "reason") == Some(reason))
        .unwrap_or_else(|| panic!("no data point with reason={reason}"));
    int_value(point)
}

#[test]
fn periodic_export_happens_without_explicit_flush() {
    let collector = start_receiver();
    let mut cfg = config(&collector.base_url);
    cfg.export_interval = Duration::from_millis(200);
    let telemetry = init(&cfg).expect("init");
    let _ = observe_counters(&telemetry.meter("t"), "tracelake.test.ticks", "", |report| {
        report(1, &[]);
    });
    let (_, payload) = collector.next_with("tracelake.test.ticks");
    assert!(find_metric(&payload, "tracelake.test.ticks").is_some());
    drop(telemetry);
}

/// The default `#[tokio::test]` runtime is current-thread, the case the SDK warns can deadlock
/// with async exporters; init, flush and drop all run on the runtime thread here.
#[tokio::test]
async fn works_inside_a_current_thread_runtime() {
    let collector = start_receiver();
    let telemetry = init(&config(&collector.base_url)).expect("init inside tokio");
    let _ = observe_counters(&telemetry.meter("t"), "tracelake.test.ct", "", |report| {
        report(5, &[]);
    });
    tokio::task::yield_now().await;
    telemetry.force_flush().expect("flush inside tokio");
    let (_, payload) = collector.next_with("tracelake.test.ct");
    let points = sum_points(find_metric(&payload, "tracelake.test.ct").unwrap()).1;
    assert_eq!(int_value(&points[0]), 5);
    drop(telemetry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_multi_thread_runtime() {
    let collector = start_receiver();
    let telemetry = init(&config(&collector.base_url)).expect("init inside tokio");
    let _ = observe_counters(&telemetry.meter("t"), "tracelake.test.mt", "", |report| {
        report(6, &[]);
    });
    let telemetry = tokio::task::spawn_blocking(move || {
        telemetry.force_flush().expect("flush");
        telemetry
    })
    .await
    .expect("flush task");
    telemetry.shutdown().expect("shutdown on a runtime worker");
    let (_, payload) = collector.next_with("tracelake.test.mt");
    assert!(find_metric(&payload, "tracelake.test.mt").is_some());
}

#[test]
fn without_endpoint_instruments_work_and_nothing_is_exported() {
    let telemetry = init(&TelemetryConfig::default()).expect("init without endpoint");
    let _ = observe_counters(&telemetry.meter("t"), "tracelake.test.noop", "", |report| {
        report(1, &[]);
    });
    telemetry.force_flush().expect("flush with no reader");
    telemetry.shutdown().expect("shutdown with no reader");
}

#[test]
fn unreachable_collector_is_reported_and_shutdown_is_bounded() {
    // A port that was just free: connections are refused.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let mut cfg = config(&format!("http://127.0.0.1:{port}"));
    cfg.export_timeout = Duration::from_secs(1);
    let telemetry = init(&cfg).expect("init does not connect");
    let _ = observe_counters(&telemetry.meter("t"), "tracelake.test.lost", "", |report| {
        report(1, &[]);
    });
    let started = Instant::now();
    let err = telemetry.force_flush().expect_err("nobody listens");
    assert!(matches!(err, TelemetryError::Flush(_)), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    drop(telemetry);
    assert!(started.elapsed() < Duration::from_secs(10), "flush + drop took {:?}", started.elapsed());
}

#[test]
fn https_endpoint_is_rejected_at_init() {
    let err = init(&config("https://collector:4318")).expect_err("no TLS in this build");
    assert!(matches!(err, TelemetryError::InvalidEndpoint { .. }), "{err}");
    assert!(err.to_string().contains("https://collector:4318"), "{err}");
}
