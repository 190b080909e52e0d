//! tracelake.toml: one file for every component, plus environment
//! overrides `TRACELAKE__<SECTION>__<KEY>=value` (value parsed as TOML,
//! else taken as a string), e.g. `TRACELAKE__SENSOR__ARGV_MAX=2048`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tracelake_enricher::EnricherConfig;
use tracelake_queries::DetectionsConfig;
use tracelake_sensor::SensorConfig;
use tracelake_sinks::kafka::{KafkaConfig, LakeServiceConfig};
use tracelake_sinks::parquet::LakeConfig;
use tracelake_sinks::stdout::StdoutConfig;
use tracelake_telemetry::TelemetryConfig;

use crate::cli::ConfigArgs;

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Node name written into every event; defaults to the hostname.
    #[serde(default)]
    pub node_name: Option<String>,
    /// The eBPF sensor.
    #[serde(default)]
    pub sensor: SensorConfig,
    /// Workload identity.
    #[serde(default)]
    pub enricher: EnricherConfig,
    /// Event sinks.
    #[serde(default)]
    pub sinks: SinksConfig,
    /// Metrics export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Detection rules, live and over the lake.
    #[serde(default)]
    pub detections: DetectionsConfig,
    /// Kafka transport between `tracelake agent` and `tracelake lake` (docs/kafka.md).
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// `tracelake lake`: the consumer group that writes the Parquet lake.
    #[serde(default)]
    pub lake_service: LakeServiceConfig,
    /// The HTTP endpoint of `run`, `agent` and `lake`: Prometheus `/metrics`, `/healthz`, `/readyz`
    /// (docs/metrics.md).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Forwarding to SIEMs: `[siem.elasticsearch]`, `[siem.splunk_hec]` (docs/siem.md).
    #[serde(default)]
    pub siem: crate::siem::SiemConfig,
}

/// `[metrics]`: the node's HTTP endpoint (docs/metrics.md).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the endpoint at all; default `true`. `false`, like an empty `listen`, turns it off
    /// (the OTLP push of `[telemetry]` is independent of it).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `IP:port` to listen on, e.g. `"0.0.0.0:9464"` (what the Helm chart sets for the DaemonSet,
    /// through `TRACELAKE__METRICS__LISTEN`) or `"[::]:9464"`; unset means `"127.0.0.1:9464"`,
    /// `""` turns the endpoint off. When the address cannot be bound (port taken): set here or
    /// through the environment, start fails with an error naming the address and this key;
    /// left unset (the default address), the error is logged, the node runs on without the
    /// endpoint (events keep flowing) and `tracelake.metrics.listen_errors` counts it.
    #[serde(default)]
    pub listen: Option<String>,
    /// `/healthz` answers 503 when the sensor's read loop (in `tracelake lake`: the consumer's
    /// loop) has not made progress for longer than this; the loop ticks about once a second even
    /// without events. Humantime string; default `"30s"`, at least `"2s"`.
    #[serde(default = "default_stall_after", with = "humantime_serde")]
    pub stall_after: Duration,
}

/// Where the endpoint listens when `metrics.listen` is unset.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

fn default_true() -> bool {
    true
}

fn default_stall_after() -> Duration {
    Duration::from_secs(30)
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: None, stall_after: default_stall_after() }
    }
}

impl MetricsConfig {
    /// The address to listen on and whether it was configured explicitly; `None` when off.
    pub fn address(&self) -> Option<(&str, bool)> {
        match self.listen.as_deref() {
            _ if !self.enabled => None,
            Some("") => None,
            Some(l) => Some((l, true)),
            None => Some((DEFAULT_METRICS_LISTEN, false)),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some((addr, _)) = self.address() {
            addr.parse::<SocketAddr>().with_context(|| {
                format!("metrics.listen = {addr:?}: not an IP:port (e.g. \"0.0.0.0:9464\", \"[::]:9464\")")
            })?;
        }
        if self.stall_after < Duration::from_secs(2) {
            bail!("metrics.stall_after = {:?}: at least 2s (the read loop ticks once a second)", self.stall_after);
        }
        Ok(())
    }
}

/// `[sinks]`: one table per sink.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// JSON lines on standard output.
    #[serde(default)]
    pub stdout: StdoutConfig,
    /// The Parquet data lake.
    #[serde(default)]
    pub lake: LakeConfig,
}

const ENV_PREFIX: &str = "TRACELAKE__";

/// Reads the file (if any), applies environment overrides, validates.
pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read config file {}", p.display()))?,
        None => String::new(),
    };
    let vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    parse(&text, &vars).with_context(|| match path {
        Some(p) => format!("invalid config {}", p.display()),
        None => "invalid config".to_string(),
    })
}

/// Parses config text with overrides; the error names the offending field.
pub fn parse(text: &str, overrides: &[(String, String)]) -> anyhow::Result<Config> {
    // Parsing the file on its own first keeps line and column in its errors.
    let from_file: Config = toml::from_str(text)?;
    if overrides.is_empty() {
        from_file.sensor.validate()?;
        from_file.kafka.validate()?;
        from_file.metrics.validate()?;
        from_file.siem.validate()?;
        return Ok(from_file);
    }
    let mut doc: toml::Table = toml::from_str(text)?;
    for (key, raw) in overrides {
        let path: Vec<String> = key[ENV_PREFIX.len()..].split("__").map(str::to_lowercase).collect();
        if path.iter().any(String::is_empty) {
            bail!("environment variable {key}: empty path segment");
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        set_path(&mut doc, &path, value).with_context(|| format!("environment variable {key}"))?;
    }
    let cfg: Config = Config::deserialize(toml::Value::Table(doc))?;
    cfg.sensor.validate()?;
    cfg.kafka.validate()?;
    cfg.metrics.validate()?;
    cfg.siem.validate()?;
    Ok(cfg)
}

fn set_path(doc: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().context("empty key")?;
    let mut table = doc;
    for p in parents {
        let entry = table.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("{p} is not a table"),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

/// `tracelake config`: validates and prints the effective configuration.
pub fn command(args: &ConfigArgs) -> anyhow::Result<()> {
    let mut cfg = load(args.config.as_deref())?;
    // Secrets are checked, not shown.
    for secret in [&mut cfg.kafka.sasl.password, &mut cfg.kafka.tls.key_password] {
        if secret.is_some() {
            *secret = Some("<redacted>".into());
        }
    }
    cfg.siem.redact();
    print!("{}", toml::to_string_pretty(&cfg)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn shipped_example_config_parses() {
        let cfg = parse(include_str!("../../deploy/tracelake.example.toml"), &[]).unwrap();
        assert_eq!(cfg.sensor, SensorConfig::default());
    }

    #[test]
    fn empty_config_is_the_default() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(cfg.sensor, SensorConfig::default());
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let err = format!("{:#}", parse("[sensor]\nargv_maxx = 3\n", &[]).unwrap_err());
        assert!(err.contains("argv_maxx"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn out_of_range_value_names_the_field() {
        let err = format!("{:#}", parse("[sensor]\nargv_max = 100000\n", &[]).unwrap_err());
        assert!(err.contains("sensor.argv_max"), "{err}");
        let err = format!("{:#}", parse("[sensor]\nscope = \"pods\"\n", &[]).unwrap_err());
        assert!(err.contains("pods"), "{err}");
    }

    #[test]
    fn kubernetes_section_parses_and_rejects_unknown_keys() {
        let cfg =
            parse("[enricher.kubernetes]\nmode = \"off\"\nnode_name = \"n1\"\nnamespaces = [\"shop\"]\n", &[]).unwrap();
        let k = &cfg.enricher.kubernetes;
        assert_eq!(k.mode, tracelake_enricher::kube::KubeMode::Off);
        assert_eq!((k.node_name(), k.namespaces.as_slice()), ("n1".to_string(), &["shop".to_string()][..]));
        let err = format!("{:#}", parse("[enricher.kubernetes]\nmod = \"on\"\n", &[]).unwrap_err());
        assert!(err.contains("mod"), "{err}");
        let err = format!("{:#}", parse("[enricher.kubernetes]\nmode = \"maybe\"\n", &[]).unwrap_err());
        assert!(err.contains("maybe"), "{err}");
        let env = [("TRACELAKE__ENRICHER__KUBERNETES__MODE".to_string(), "on".to_string())];
        assert_eq!(parse("", &env).unwrap().enricher.kubernetes.mode, tracelake_enricher::kube::KubeMode::On);
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = [
            ("TRACELAKE__SENSOR__ARGV_MAX".to_string(), "2048".to_string()),
            ("TRACELAKE__SENSOR__AGGREGATION__INTERVAL".to_string(), "5s".to_string()),
            ("TRACELAKE__NODE_NAME".to_string(), "worker-7".to_string()),
        ];
        let cfg = parse("[sensor]\nargv_max = 100\n", &env).unwrap();
        assert_eq!(cfg.sensor.argv_max, 2048);
        assert_eq!(cfg.sensor.aggregation.interval, std::time::Duration::from_secs(5));
        assert_eq!(cfg.node_name.as_deref(), Some("worker-7"));
        let bad = [("TRACELAKE__SENSOR__NOPE".to_string(), "1".to_string())];
        assert!(format!("{:#}", parse("", &bad).unwrap_err()).contains("nope"));
    }

    #[test]
    fn kafka_sections_parse_with_env_overrides_and_reject_unknown_fields() {
        let text = "[kafka]\nbrokers = \"k1:9092,k2:9092\"\ntopic_prefix = \"tl.\"\n\
                    [kafka.spool]\npolicy = \"block\"\nmax_bytes = 1073741824\n\
                    [kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"agent\"\n\
                    [lake_service]\ngroup_id = \"lake-a\"\nfile_age = \"10s\"\n";
        let env = [
            ("TRACELAKE__KAFKA__SASL__PASSWORD".to_string(), "s3cr3t".to_string()),
            ("TRACELAKE__KAFKA__LINGER".to_string(), "250ms".to_string()),
        ];
        let cfg = parse(text, &env).unwrap();
        assert_eq!(cfg.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(cfg.kafka.spool.policy, tracelake_sinks::kafka::SpoolPolicy::Block);
        assert_eq!(cfg.kafka.sasl.password.as_deref(), Some("s3cr3t"));
        assert_eq!(cfg.kafka.linger, std::time::Duration::from_millis(250));
        assert_eq!(cfg.lake_service.group_id, "lake-a");
        let props = cfg.kafka.client_properties("x").unwrap();
        assert_eq!(props.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(props.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        let err = format!("{:#}", parse("[kafka.spool]\npolicy = \"drop_newest\"\n", &[]).unwrap_err());
        assert!(err.contains("drop_newest"), "{err}");
        let err = format!("{:#}", parse("[lake_service]\ngroupid = \"x\"\n", &[]).unwrap_err());
        assert!(err.contains("groupid"), "{err}");
        let err = format!("{:#}", parse("[kafka]\ncompression = \"brotli\"\n", &[]).unwrap_err());
        assert!(err.contains("compression"), "{err}");
    }

    #[test]
    fn metrics_section_defaults_env_override_and_validation() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(cfg.metrics.address(), Some((DEFAULT_METRICS_LISTEN, false)));
        assert_eq!(cfg.metrics.stall_after, Duration::from_secs(30));
        let env = [("TRACELAKE__METRICS__LISTEN".to_string(), "0.0.0.0:9464".to_string())];
        let cfg = parse("[metrics]\nstall_after = \"10s\"\n", &env).unwrap();
        assert_eq!(cfg.metrics.address(), Some(("0.0.0.0:9464", true)));
        assert_eq!(cfg.metrics.stall_after, Duration::from_secs(10));
        let off = [("TRACELAKE__METRICS__LISTEN".to_string(), String::new())];
        assert_eq!(parse("", &off).unwrap().metrics.address(), None);
        assert_eq!(parse("[metrics]\nenabled = false\n", &[]).unwrap().metrics.address(), None);
        let err = format!("{:#}", parse("[metrics]\nlisten = \"localhost\"\n", &[]).unwrap_err());
        assert!(err.contains("metrics.listen"), "{err}");
        let err = format!("{:#}", parse("[metrics]\nstall_after = \"1s\"\n", &[]).unwrap_err());
        assert!(err.contains("metrics.stall_after"), "{err}");
        let err = format!("{:#}", parse("[metrics]\nlisten_on = \"x\"\n", &[]).unwrap_err());
        assert!(err.contains("listen_on"), "{err}");
    }
}
