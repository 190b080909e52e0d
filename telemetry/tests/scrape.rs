//! The Prometheus pull reader: what `/metrics` serves is what the instruments report.
#![allow(clippy::unwrap_used, reason = "test code")]

use tracelake_telemetry::{
    KeyValue, TelemetryConfig, TelemetryError, init, init_with_scrape, observe_counters, observe_gauges,
};

#[test]
fn counters_and_gauges_render_in_the_text_format() {
    let telemetry = init_with_scrape(&TelemetryConfig::default()).unwrap();
    let meter = telemetry.meter("t");
    let _ = observe_counters(&meter, "tracelake.test.events_dropped", "Records lost, by kind", |report| {
        report(5, &[KeyValue::new("kind", "exec"), KeyValue::new("cpu", "0")]);
        report(7, &[KeyValue::new("kind", "open"), KeyValue::new("cpu", "1")]);
    });
    let _ = observe_gauges(&meter, "tracelake.test.spool_bytes", "Bytes in the spool", |report| report(42, &[]));
    let text = telemetry.scrape().unwrap().render().unwrap();
    assert!(text.contains("# HELP tracelake_test_events_dropped_total Records lost, by kind\n"), "{text}");
    assert!(text.contains("# TYPE tracelake_test_events_dropped_total counter\n"), "{text}");
    assert!(text.contains("tracelake_test_events_dropped_total{cpu=\"0\",kind=\"exec\"} 5\n"), "{text}");
    assert!(text.contains("tracelake_test_events_dropped_total{cpu=\"1\",kind=\"open\"} 7\n"), "{text}");
    assert!(text.contains("# TYPE tracelake_test_spool_bytes gauge\n"), "{text}");
    assert!(text.contains("tracelake_test_spool_bytes 42\n"), "{text}");
    assert!(!text.contains("otel_scope"), "no scope labels: {text}");
    // The resource, once.
    assert!(text.contains("target_info{"), "{text}");
    assert!(text.contains("service_name=\"tracelake\""), "{text}");
}

#[test]
fn values_are_read_again_at_every_scrape() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let telemetry = init_with_scrape(&TelemetryConfig::default()).unwrap();
    let n = Arc::new(AtomicU64::new(1));
    let source = Arc::clone(&n);
    let _ = observe_counters(&telemetry.meter("t"), "tracelake.test.ticks", "ticks", move |report| {
        report(source.load(Ordering::Relaxed), &[]);
    });
    let scrape = telemetry.scrape().unwrap();
    assert!(scrape.render().unwrap().contains("tracelake_test_ticks_total 1\n"));
    n.store(9, Ordering::Relaxed);
    assert!(scrape.render().unwrap().contains("tracelake_test_ticks_total 9\n"));
}

#[test]
fn a_scrape_after_shutdown_fails_at_once() {
    let telemetry = init_with_scrape(&TelemetryConfig::default()).unwrap();
    let scrape = telemetry.scrape().unwrap();
    scrape.render().unwrap();
    telemetry.shutdown().unwrap();
    assert!(matches!(scrape.render(), Err(TelemetryError::ShutDown)));
}

#[test]
fn plain_init_has_no_scrape_reader() {
    let telemetry = init(&TelemetryConfig::default()).unwrap();
    assert!(telemetry.scrape().is_none());
}
