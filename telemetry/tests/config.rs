//! `TelemetryConfig` as components read it from TOML.

use std::time::Duration;

use tracelake_telemetry::TelemetryConfig;

#[test]
fn empty_table_gives_the_defaults() {
    let cfg: TelemetryConfig = toml::from_str("").expect("empty config parses");
    assert_eq!(cfg.otlp_endpoint, None);
    assert_eq!(cfg.export_interval, Duration::from_secs(10));
    assert_eq!(cfg.export_timeout, Duration::from_secs(5));
    assert_eq!(cfg.service_name, "tracelake");
    assert!(cfg.resource_attributes.is_empty());
    assert_eq!(cfg, TelemetryConfig::default());
}

#[test]
fn all_fields_parse() {
    let cfg: TelemetryConfig = toml::from_str(
        r#"
        otlp_endpoint = "http://127.0.0.1:4318"
        export_interval = "1m 30s"
        export_timeout = "250ms"
        service_name = "tracelake-sensor"

        [resource_attributes]
        "k8s.node.name" = "node-1"
        "#,
    )
    .expect("full config parses");
    assert_eq!(cfg.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
    assert_eq!(cfg.export_interval, Duration::from_secs(90));
    assert_eq!(cfg.export_timeout, Duration::from_millis(250));
    assert_eq!(cfg.service_name, "tracelake-sensor");
    assert_eq!(cfg.resource_attributes.get("k8s.node.name").map(String::as_str), Some("node-1"));
}

#[test]
fn unknown_field_is_rejected_by_name() {
    let err =
        toml::from_str::<TelemetryConfig>("otlp_endpoit = \"http://x:4318\"").expect_err("typo must not be ignored");
    assert!(err.to_string().contains("otlp_endpoit"), "{err}");
}

#[test]
fn bad_duration_is_rejected() {
    let err = toml::from_str::<TelemetryConfig>("export_interval = \"ten seconds\"").expect_err("not a duration");
    assert!(err.to_string().contains("export_interval"), "{err}");
}

#[test]
fn round_trips_through_toml() {
    let mut cfg = TelemetryConfig {
        otlp_endpoint: Some("http://collector:4318".into()),
        export_interval: Duration::from_millis(1500),
        ..TelemetryConfig::default()
    };
    cfg.resource_attributes.insert("node".into(), "n1".into());
    let text = toml::to_string(&cfg).expect("serializes");
    assert!(text.contains("export_interval = \"1s 500ms\""), "{text}");
    let back: TelemetryConfig = toml::from_str(&text).expect("parses back");
    assert_eq!(back, cfg);
}
