use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[kafka]`: the transport between `tracelake agent` (producer) and `tracelake lake` (consumer); see docs/kafka.md.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` comma separated (librdkafka `bootstrap.servers`).
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// One topic per lake table: `<topic_prefix><table>`, e.g. `tracelake.process_activity`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Create missing topics at start and after an outage (the broker may have lost them).
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Partitions of topics this process creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics this process creates (3 on a production cluster).
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// librdkafka `client.id`; defaults to `tracelake-<node>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Kafka compression of message batches: `lz4` or `zstd` (or `none`).
    #[serde(default = "default_compression")]
    pub compression: String,
    /// A message is shipped once its rows hold this many estimated bytes in the Arrow builders.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// ... or this many rows.
    #[serde(default = "default_batch_max_rows")]
    pub batch_max_rows: usize,
    /// ... or once its oldest row is this old.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Most (table, workload) batches open at once; the largest is shipped early past it (memory bound).
    #[serde(default = "default_max_open_batches")]
    pub max_open_batches: usize,
    /// librdkafka `linger.ms`: how long the client waits to fill a request with several messages.
    #[serde(default = "default_client_linger", with = "humantime_serde")]
    pub client_linger: Duration,
    /// librdkafka `message.timeout.ms`: a message not acknowledged by then fails and goes to the spool.
    #[serde(default = "default_message_timeout", with = "humantime_serde")]
    pub message_timeout: Duration,
    /// librdkafka `queue.buffering.max.kbytes`: memory for messages in flight; past it they go to the spool.
    #[serde(default = "default_queue_max_kbytes")]
    pub queue_max_kbytes: usize,
    /// Largest message (producer `message.max.bytes`, and topic `max.message.bytes` of topics created here);
    /// bigger batches are split, a single row bigger than this is rejected and counted.
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: usize,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (librdkafka `security.protocol`).
    #[serde(default = "default_security_protocol")]
    pub security_protocol: String,
    /// TLS settings (used with `ssl` and `sasl_ssl`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// SASL settings (used with `sasl_plaintext` and `sasl_ssl`).
    #[serde(default)]
    pub sasl: SaslConfig,
    /// Further librdkafka properties, passed as they are (they win over the settings above).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The agent's on-disk spool for messages the broker did not take.
    #[serde(default)]
    pub spool: SpoolConfig,
}

/// `[kafka.tls]`: files librdkafka reads (PEM).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle to verify brokers with (`ssl.ca.location`); the system store when unset.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS (`ssl.certificate.location`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (`ssl.key.location`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Password of the client key (`ssl.key.password`).
    #[serde(default)]
    pub key_password: Option<String>,
    /// Check the broker's host name against its certificate (`ssl.endpoint.identification.algorithm`).
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

/// `[kafka.sasl]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (`sasl.mechanisms`).
    #[serde(default)]
    pub mechanism: Option<String>,
    /// `sasl.username`.
    #[serde(default)]
    pub username: Option<String>,
    /// `sasl.password`; prefer the `TRACELAKE__KAFKA__SASL__PASSWORD` variable to a file.
    #[serde(default)]
    pub password: Option<String>,
}

/// What the agent does when the spool is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolPolicy {
    /// Stop reading events until the broker takes messages again: the kernel ring fills and counts drops.
    Block,
    /// Delete the oldest segment, counting its messages and rows as dropped.
    DropOldest,
}

/// `[kafka.spool]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of segment files (one spool per agent: do not share it).
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Most bytes of segments on disk.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size (the unit `drop_oldest` deletes).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// `block` or `drop_oldest`.
    #[serde(default = "default_policy")]
    pub policy: SpoolPolicy,
    /// Delivered messages kept in memory (bytes) and re-sent after an outage, for brokers that lose
    /// acknowledged messages (in-memory storage, unclean leader election); 0 turns it off.
    #[serde(default = "default_replay_bytes")]
    pub replay_window_bytes: usize,
    /// ... only those delivered this recently.
    #[serde(default = "default_replay_age", with = "humantime_serde")]
    pub replay_window_age: Duration,
    /// Spooled messages sent at once while replaying.
    #[serde(default = "default_replay_inflight")]
    pub replay_inflight: usize,
}

/// `[lake_service]`: `tracelake lake`, the consumer that writes the Parquet lake.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LakeServiceConfig {
    /// Consumer group: `lake` processes with the same id share the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// A table's consumed rows are written as one file once they hold this many bytes (Arrow memory) ...
    #[serde(default = "default_file_bytes")]
    pub file_bytes: usize,
    /// ... or this many rows ...
    #[serde(default = "default_file_rows")]
    pub file_rows: usize,
    /// ... or once the oldest is this old. Offsets are committed only after the file is durable, so this is
    /// also how far a crash rewinds.
    #[serde(default = "default_file_age", with = "humantime_serde")]
    pub file_age: Duration,
    /// Event ids remembered per table to drop duplicates (re-sent or re-consumed messages).
    #[serde(default = "default_dedupe_ids")]
    pub dedupe_ids: usize,
    /// At start, the ids of files written this recently are loaded, so a restart drops what it re-consumes.
    #[serde(default = "default_dedupe_seed_age", with = "humantime_serde")]
    pub dedupe_seed_age: Duration,
    /// Messages that cannot be decoded (unknown schema version, corrupt) are saved here, named by
    /// topic, partition and offset, and counted.
    #[serde(default = "default_rejected_dir")]
    pub rejected_dir: PathBuf,
    /// Run retention and compaction of the lake (turn on in one `lake` process only).
    #[serde(default)]
    pub maintenance: bool,
    /// Stable name of this process in the group (static membership, librdkafka `group.instance.id`): a process
    /// restarted under the same name takes its partitions back at once instead of after the session timeout.
    /// Use the pod name (stable across container restarts); unset: dynamic membership. Never share one name.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Consumer group session timeout: how soon the partitions of a `lake` process that died move to the others.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
}

fn default_true() -> bool {
    true
}
fn default_brokers() -> String {
    "localhost:9092".into()
}
fn default_topic_prefix() -> String {
    "tracelake.".into()
}
fn default_partitions() -> i32 {
    12
}
fn default_replication() -> i32 {
    1
}
fn default_compression() -> String {
    "lz4".into()
}
fn default_batch_max_bytes() -> usize {
    512 * 1024
}
fn default_batch_max_rows() -> usize {
    4096
}
fn default_linger() -> Duration {
    Duration::from_millis(500)
}
fn default_max_open_batches() -> usize {
    256
}
fn default_client_linger() -> Duration {
    Duration::from_millis(5)
}
fn default_message_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_queue_max_kbytes() -> usize {
    256 * 1024
}
fn default_message_max_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_security_protocol() -> String {
    "plaintext".into()
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/tracelake/spool")
}
fn default_spool_max_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_segment_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_policy() -> SpoolPolicy {
    SpoolPolicy::DropOldest
}
fn default_replay_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_replay_age() -> Duration {
    Duration::from_secs(60)
}
fn default_replay_inflight() -> usize {
    64
}
fn default_group_id() -> String {
    "tracelake-lake".into()
}
fn default_file_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_file_rows() -> usize {
    500_000
}
fn default_file_age() -> Duration {
    Duration::from_secs(30)
}
fn default_dedupe_ids() -> usize {
    2_000_000
}
fn default_dedupe_seed_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_rejected_dir() -> PathBuf {
    PathBuf::from("/var/lib/tracelake/rejected")
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            topic_prefix: default_topic_prefix(),
            create_topics: true,
            partitions: default_partitions(),
            replication_factor: default_replication(),
            client_id: None,
            compression: default_compression(),
            batch_max_bytes: default_batch_max_bytes(),
            batch_max_rows: default_batch_max_rows(),
            linger: default_linger(),
            max_open_batches: default_max_open_batches(),
            client_linger: default_client_linger(),
            message_timeout: default_message_timeout(),
            queue_max_kbytes: default_queue_max_kbytes(),
            message_max_bytes: default_message_max_bytes(),
            security_protocol: default_security_protocol(),
            tls: TlsConfig::default(),
            sasl: SaslConfig::default(),
            properties: BTreeMap::new(),
            spool: SpoolConfig::default(),
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: default_spool_dir(),
            max_bytes: default_spool_max_bytes(),
            segment_bytes: default_segment_bytes(),
            policy: default_policy(),
            replay_window_bytes: default_replay_bytes(),
            replay_window_age: default_replay_age(),
            replay_inflight: default_replay_inflight(),
        }
    }
}

impl Default for LakeServiceConfig {
    fn default() -> Self {
        LakeServiceConfig {
            group_id: default_group_id(),
            file_bytes: default_file_bytes(),
            file_rows: default_file_rows(),
            file_age: default_file_age(),
            dedupe_ids: default_dedupe_ids(),
            dedupe_seed_age: default_dedupe_seed_age(),
            rejected_dir: default_rejected_dir(),
            maintenance: false,
            session_timeout: default_session_timeout(),
            instance_id: None,
        }
    }
}

impl KafkaConfig {
    /// Topic of a lake table.
    pub fn topic(&self, table: crate::parquet::Table) -> String {
        format!("{}{}", self.topic_prefix, table.name())
    }

    /// librdkafka properties shared by producer, consumer and admin client.
    pub fn client_properties(&self, client_id: &str) -> Result<rdkafka::ClientConfig, super::KafkaError> {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", self.client_id.as_deref().unwrap_or(client_id));
        c.set("security.protocol", &self.security_protocol);
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        if let Some(p) = &self.tls.ca_file {
            c.set("ssl.ca.location", path(p));
        }
        if let Some(p) = &self.tls.cert_file {
            c.set("ssl.certificate.location", path(p));
        }
        if let Some(p) = &self.tls.key_file {
            c.set("ssl.key.location", path(p));
        }
        if let Some(p) = &self.tls.key_password {
            c.set("ssl.key.password", p);
        }
        if !self.tls.verify_hostname {
            c.set("ssl.endpoint.identification.algorithm", "none");
        }
        if let Some(m) = &self.sasl.mechanism {
            c.set("sasl.mechanisms", m);
        }
        if let Some(u) = &self.sasl.username {
            c.set("sasl.username", u);
        }
        if let Some(p) = &self.sasl.password {
            c.set("sasl.password", p);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        Ok(c)
    }

    /// Rejects settings that would fail later, naming the field.
    pub fn validate(&self) -> Result<(), super::KafkaError> {
        let bad = |m: &str| Err(super::KafkaError::Config(m.to_string()));
        if !matches!(self.compression.as_str(), "lz4" | "zstd" | "none" | "gzip" | "snappy") {
            return bad("kafka.compression: lz4, zstd or none");
        }
        if self.batch_max_bytes == 0 || self.batch_max_rows == 0 || self.linger.is_zero() {
            return bad("kafka.batch_max_bytes, batch_max_rows and linger must be above 0");
        }
        if self.spool.segment_bytes == 0 || self.spool.max_bytes < self.spool.segment_bytes {
            return bad("kafka.spool.max_bytes must be at least kafka.spool.segment_bytes (above 0)");
        }
        if self.partitions < 1 {
            return bad("kafka.partitions must be above 0");
        }
        if self.message_max_bytes < 64 * 1024 {
            return bad("kafka.message_max_bytes must be at least 64 KiB");
        }
        Ok(())
    }
}
