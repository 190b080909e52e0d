//! The global path: `init` installs the provider that `tracelake_telemetry::meter` uses.
//! Alone in its own test binary because it depends on process-wide state.

mod common;

use std::time::Duration;

use common::{find_metric, gauge_points, int_value, start_receiver};
use tracelake_telemetry::{TelemetryConfig, init, meter, observe_gauges};

#[test]
fn global_meter_reports_through_the_installed_provider() {
    let collector = start_receiver();
    let cfg = TelemetryConfig {
        otlp_endpoint: Some(format!("{}/", collector.base_url)),
        export_interval: Duration::from_secs(3600),
        ..TelemetryConfig::default()
    };
    let telemetry = init(&cfg).expect("init");
    let _ = observe_gauges(&meter("enricher"), "tracelake.test.global", "g", |report| {
        report(11, &[]);
    });
    // Shutdown alone must deliver the final export.
    telemetry.shutdown().expect("shutdown");
    let (request, payload) = collector.next_with("tracelake.test.global");
    assert_eq!(request.path, "/v1/metrics");
    let points = gauge_points(find_metric(&payload, "tracelake.test.global").expect("metric"));
    assert_eq!(int_value(&points[0]), 11);
}
