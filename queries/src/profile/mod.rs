//! Behaviour profiles: what each workload's containers normally do, learnt from the rows the live detector
//! already builds, and deviations from a stable profile reported as findings of their own.
//!
//! A profile belongs to a workload container: (namespace, workload kind, workload, container name), so the
//! replicas of a Deployment share one. It learns per class (executables, outbound destinations, listening
//! ports, write paths, privilege-class events), and each class has its own state:
//! - **warm-up** for `warmup` after the profile is made: start-up behaviour is learnt, never flagged;
//! - **learning**: new items are learnt;
//! - **stable** once nothing new came for `quiet_period` and the profile is at least `min_observation` old:
//!   a new item is an anomaly (reported once, not learnt);
//! - **unstable** when the class keeps growing past `max_items` or stays unsettled past `max_learning`:
//!   nothing from it is flagged, and the state says so.
//!
//! A locked profile (set in its YAML) never learns: what it does not list is an anomaly. A new image digest
//! starts a new generation of the profile (learning again), the old one kept for comparison.

mod file;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};
use tracelake_sinks::parquet::Table;

pub use file::{ProfileFileError, diff, load, parse, render, save};

use crate::finding::{Finding, IDENTITY};
use crate::rule::Rule;

/// `[detections.profiles]` of tracelake.toml.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Learn a profile per workload container and report deviations from stable ones.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// After a profile is made, behaviour is learnt without being flagged for this long (start-up).
    #[serde(default = "default_warmup", with = "humantime_serde")]
    pub warmup: Duration,
    /// A class is stable once nothing new came for this long ...
    #[serde(default = "default_quiet_period", with = "humantime_serde")]
    pub quiet_period: Duration,
    /// ... and the profile is at least this old.
    #[serde(default = "default_min_observation", with = "humantime_serde")]
    pub min_observation: Duration,
    /// A class still not stable after this long is unstable: reported, never flagged.
    #[serde(default = "default_max_learning", with = "humantime_serde")]
    pub max_learning: Duration,
    /// A class with more items than this is unstable (a workload too varied to profile that way).
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// Anomaly findings per workload and minute at most; beyond, they are counted, not reported.
    #[serde(default = "default_anomalies_per_minute")]
    pub anomalies_per_minute: u32,
    /// Where the node's profiles are kept (YAML, reviewable; loaded at start, written every minute and at
    /// shutdown); default: `profiles.yaml` in `enricher.state_dir`.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
}

fn default_enabled() -> bool {
    true
}
fn default_warmup() -> Duration {
    Duration::from_secs(60)
}
fn default_quiet_period() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_min_observation() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_max_learning() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_items() -> usize {
    2_000
}
fn default_anomalies_per_minute() -> u32 {
    10
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            enabled: default_enabled(),
            warmup: default_warmup(),
            quiet_period: default_quiet_period(),
            min_observation: default_min_observation(),
            max_learning: default_max_learning(),
            max_items: default_max_items(),
            anomalies_per_minute: default_anomalies_per_minute(),
            file: None,
        }
    }
}

/// What a profile learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Executables run: `exe|argv0` (busybox applets differ by argv0 only).
    Exec,
    /// Outbound destinations: the peer workload or service where known, else address, with the port.
    Connect,
    /// Listening ports.
    Listen,
    /// Paths written, renamed, removed or chmod-ed, generalised where they vary (numbers, hashes).
    Write,
    /// Privilege-class events (setuid, capset, ptrace, mount, setns, module load, bpf, ...).
    Privilege,
}

impl Class {
    pub const ALL: [Class; 5] = [Class::Exec, Class::Connect, Class::Listen, Class::Write, Class::Privilege];

    fn index(self) -> usize {
        match self {
            Class::Exec => 0,
            Class::Connect => 1,
            Class::Listen => 2,
            Class::Write => 3,
            Class::Privilege => 4,
        }
    }

    /// The anomaly rule of this class.
    fn rule(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Class::Exec => ("TL-PROF-001", "New executable in a stable workload profile", "Execution"),
            Class::Connect => {
                ("TL-PROF-002", "New outbound destination in a stable workload profile", "Lateral movement")
            }
            Class::Listen => ("TL-PROF-003", "New listening port in a stable workload profile", "Persistence"),
            Class::Write => ("TL-PROF-004", "New write path in a stable workload profile", "Persistence"),
            Class::Privilege => {
                ("TL-PROF-005", "New privilege-class event in a stable workload profile", "Privilege escalation")
            }
        }
    }
}

/// Where a class of a profile stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Warmup,
    Learning,
    Stable,
    Unstable,
}

/// One class of one profile.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassProfile {
    /// Where the class stands.
    pub state: State,
    /// When something new was last learnt (ns since the epoch).
    #[serde(default)]
    pub last_new_ns: i64,
    /// What is normal.
    #[serde(default)]
    pub items: BTreeSet<String>,
    /// Items already reported as anomalies (each is reported once).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub anomalies: BTreeSet<String>,
}

impl Default for ClassProfile {
    fn default() -> Self {
        ClassProfile { state: State::Warmup, last_new_ns: 0, items: BTreeSet::new(), anomalies: BTreeSet::new() }
    }
}

/// The key of a profile: a workload's container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileKey {
    pub namespace: String,
    pub workload_kind: String,
    pub workload: String,
    pub container: String,
}

impl std::fmt::Display for ProfileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}", self.namespace, self.workload_kind, self.workload, self.container)
    }
}

/// One workload container's profile.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Whose profile this is.
    pub key: ProfileKey,
    /// The image digest this generation was learnt on (None: unknown).
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Bumped when the image digest changes.
    #[serde(default = "one")]
    pub generation: u32,
    /// Never learns: anything not listed is an anomaly.
    #[serde(default)]
    pub locked: bool,
    /// When this generation started (ns since the epoch).
    pub created_ns: i64,
    /// Per class, in `Class::ALL` order, by name.
    pub classes: std::collections::BTreeMap<Class, ClassProfile>,
    /// The previous generation's items per class, for comparison.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub previous: std::collections::BTreeMap<Class, BTreeSet<String>>,
}

fn one() -> u32 {
    1
}

impl Profile {
    fn new(key: ProfileKey, image_digest: Option<String>, now: i64) -> Profile {
        Profile {
            key,
            image_digest,
            generation: 1,
            locked: false,
            created_ns: now,
            classes: Class::ALL.iter().map(|c| (*c, ClassProfile::default())).collect(),
            previous: Default::default(),
        }
    }

    /// The class's part (made on first use: a profile file may list only some classes).
    pub fn class(&mut self, c: Class) -> &mut ClassProfile {
        self.classes.entry(c).or_default()
    }
}

/// What the engine counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileStats {
    pub profiles: u64,
    pub learnt: u64,
    pub anomalies: u64,
    /// Anomalies over `anomalies_per_minute`, counted and not reported.
    pub rate_limited: u64,
    /// Items of unstable classes, not flagged.
    pub unstable_items: u64,
}

/// The profiles of a node, learning from batches and reporting anomalies.
#[derive(Debug)]
pub struct ProfileEngine {
    cfg: ProfileConfig,
    /// By `namespace\0kind\0workload\0container`: looked up with a reused buffer, no allocation per row.
    profiles: HashMap<String, Profile>,
    /// Index of the first anomaly rule in the rule list findings point into.
    rule_base: usize,
    /// Per workload: (minute, anomalies in it).
    rate: HashMap<String, (i64, u32)>,
    pub stats: ProfileStats,
}

/// The anomaly rules, appended after the SQL rules in the list findings index.
pub fn rules() -> Vec<Rule> {
    Class::ALL
        .iter()
        .map(|c| {
            let (id, title, tactic) = c.rule();
            Rule {
                file: std::path::PathBuf::from("builtin:profiles"),
                id: id.to_string(),
                title: title.to_string(),
                severity: "medium".into(),
                severity_id: 3,
                tactic: tactic.to_string(),
                technique: "Behaviour outside the workload's profile".into(),
                mitre: match c {
                    Class::Exec => "T1059",
                    Class::Connect => "T1021",
                    Class::Listen => "T1571",
                    Class::Write => "T1543",
                    Class::Privilege => "T1068",
                }
                .into(),
                tables: Vec::new(),
                description: "A workload container did something its stable behaviour profile has never seen.".into(),
                false_positives: "A new release doing new things (a new image digest starts a new profile); \
                                  rare maintenance tasks. Review the profile (tracelake profile export) and \
                                  import it with the item added, or lock it."
                    .into(),
                suppress: Duration::from_secs(3600),
                window: Duration::ZERO,
                dedup: "exe".into(),
                sql: String::new(),
                sql_line: 0,
            }
        })
        .collect()
}

/// A column of a batch as strings (None where the batch lacks it).
fn strings(b: &RecordBatch, name: &str) -> Option<StringArray> {
    let c = b.column_by_name(name)?;
    let c = cast(c, &DataType::Utf8).ok()?;
    Some(c.as_string::<i32>().clone())
}

fn get(a: &Option<StringArray>, row: usize) -> Option<&str> {
    a.as_ref().filter(|a| !a.is_null(row)).map(|a| a.value(row))
}

/// A path with the parts that vary from run to run generalised: a component holding a run of 3 or more
/// digits, or 8 or more hex digits, becomes `*`.
pub fn generalise(path: &str) -> String {
    path.split('/')
        .map(|part| {
            let digits = part.bytes().fold((0, 0), |(best, run), b| {
                let run = if b.is_ascii_digit() { run + 1 } else { 0 };
                (best.max(run), run)
            });
            let hex = part.bytes().fold((0, 0), |(best, run), b| {
                let run = if b.is_ascii_hexdigit() { run + 1 } else { 0 };
                (best.max(run), run)
            });
            if digits.0 >= 3 || hex.0 >= 8 { "*" } else { part }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl ProfileEngine {
    /// An engine starting from `profiles` (a loaded file), whose findings index rules from `rule_base` on.
    pub fn new(cfg: ProfileConfig, profiles: Vec<Profile>, rule_base: usize) -> ProfileEngine {
        let profiles: HashMap<String, Profile> = profiles
            .into_iter()
            .map(|p| {
                let (k, mut joined) = (&p.key, String::new());
                join_key(&mut joined, [&k.namespace, &k.workload_kind, &k.workload, &k.container]);
                (joined, p)
            })
            .collect();
        let stats = ProfileStats { profiles: profiles.len() as u64, ..ProfileStats::default() };
        ProfileEngine { cfg, profiles, rule_base, rate: HashMap::new(), stats }
    }

    /// The profiles, sorted by key (for the file).
    pub fn profiles(&self) -> Vec<Profile> {
        let mut v: Vec<Profile> = self.profiles.values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Learns from one round's batches; returns the anomalies among them.
    pub fn observe(&mut self, batches: &[(Table, RecordBatch)]) -> Vec<Finding> {
        let mut out = Vec::new();
        for (table, b) in batches {
            self.observe_batch(*table, b, &mut out);
        }
        out
    }

    fn observe_batch(&mut self, table: Table, b: &RecordBatch, out: &mut Vec<Finding>) {
        let cols = Columns::of(b);
        let Some(time) = b.column_by_name("time").and_then(|c| cast(c, &DataType::Int64).ok()) else { return };
        let time = time.as_primitive::<arrow::datatypes::Int64Type>().clone();
        let (mut item, mut key) = (String::new(), String::new());
        for row in 0..b.num_rows() {
            let (Some(ns), Some(workload), Some(container)) =
                (get(&cols.namespace, row), get(&cols.workload, row), get(&cols.container_name, row))
            else {
                continue;
            };
            let Some(class) = cols.item(table, row, &mut item) else { continue };
            let parts = [ns, get(&cols.workload_kind, row).unwrap_or(""), workload, container];
            join_key(&mut key, parts);
            let now = time.value(row);
            if let Some(a) = self.learn(&key, parts, get(&cols.image_digest, row), class, &item, now)
                && let Some(f) = self.finding(a, &cols, row, now)
            {
                out.push(f);
            }
        }
    }

    /// Learns `item` of `class`; Some(anomaly) when a stable (or locked) profile did not know it.
    fn learn(
        &mut self,
        key: &str,
        parts: [&str; 4],
        digest: Option<&str>,
        class: Class,
        item: &str,
        now: i64,
    ) -> Option<Anomaly> {
        let cfg = &self.cfg;
        if !self.profiles.contains_key(key) {
            let [namespace, workload_kind, workload, container] = parts.map(str::to_string);
            let k = ProfileKey { namespace, workload_kind, workload, container };
            self.profiles.insert(key.to_string(), Profile::new(k, digest.map(str::to_string), now));
            self.stats.profiles += 1;
        }
        let p = self.profiles.get_mut(key)?;
        if let Some(d) = digest
            && p.image_digest.as_deref().is_some_and(|old| old != d)
            && !p.locked
        {
            // A new image: a new generation learns again; the old items stay for comparison.
            p.previous = p.classes.iter().map(|(c, cp)| (*c, cp.items.clone())).collect();
            p.generation += 1;
            p.image_digest = Some(d.to_string());
            p.created_ns = now;
            p.classes = Class::ALL.iter().map(|c| (*c, ClassProfile::default())).collect();
        }
        let (created, locked, generation) = (p.created_ns, p.locked, p.generation);
        let cp = p.class(class);
        advance(cfg, cp, created, now, locked);
        if cp.items.contains(item) {
            return None;
        }
        match cp.state {
            State::Warmup | State::Learning => {
                cp.items.insert(item.to_string());
                cp.last_new_ns = now;
                self.stats.learnt += 1;
                if cp.items.len() > cfg.max_items {
                    cp.state = State::Unstable;
                    tracing::warn!(profile = %p.key, ?class, items = cfg.max_items, "profile class unstable: too many items");
                }
                None
            }
            State::Unstable => {
                self.stats.unstable_items += 1;
                None
            }
            State::Stable => {
                if !cp.anomalies.insert(item.to_string()) {
                    return None;
                }
                let nearest = nearest(&cp.items, item);
                Some(Anomaly { key: p.key.clone(), class, item: item.to_string(), generation, nearest })
            }
        }
    }

    /// The finding of an anomaly; None (counted) beyond `anomalies_per_minute` for its workload.
    fn finding(&mut self, a: Anomaly, cols: &Columns, row: usize, now: i64) -> Option<Finding> {
        let minute = now.div_euclid(60_000_000_000);
        let workload = a.key.to_string();
        let slot = self.rate.entry(workload).or_insert((minute, 0));
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += 1;
        if slot.1 > self.cfg.anomalies_per_minute {
            self.stats.rate_limited += 1;
            return None;
        }
        self.stats.anomalies += 1;
        let mut identity: [Option<String>; 10] = Default::default();
        for (i, _) in IDENTITY.iter().enumerate() {
            identity[i] = cols.identity[i].as_ref().filter(|c| !c.is_null(row)).map(|c| c.value(row).to_string());
        }
        let nearest = a.nearest.as_deref().unwrap_or("nothing alike");
        let message = format!(
            "{:?} {:?} is new for {} (profile generation {}); nearest known: {}",
            a.class, a.item, a.key, a.generation, nearest
        );
        let rule = self.rule_base + a.class.index();
        Some(Finding {
            rule,
            rule_id: a.class.rule().0.to_string(),
            time_ns: now,
            event_ids: get(&cols.event_id, row).map(str::to_string).into_iter().collect(),
            identity,
            pid: cols.pid(row),
            key: format!("{}|{}", a.key, a.item),
            message,
        })
    }
}

/// The map key of a profile: its parts joined by NUL (which no Kubernetes name holds).
fn join_key(buf: &mut String, parts: [&str; 4]) {
    buf.clear();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            buf.push('\0');
        }
        buf.push_str(p);
    }
}

/// A stable profile's miss.
#[derive(Debug)]
struct Anomaly {
    key: ProfileKey,
    class: Class,
    item: String,
    generation: u32,
    nearest: Option<String>,
}

/// Moves a class along its states at `now`.
fn advance(cfg: &ProfileConfig, cp: &mut ClassProfile, created: i64, now: i64, locked: bool) {
    let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    if locked {
        cp.state = State::Stable;
        return;
    }
    let age = now.saturating_sub(created);
    cp.state = match cp.state {
        State::Warmup if age < ns(cfg.warmup) => State::Warmup,
        State::Warmup | State::Learning => {
            let quiet = now.saturating_sub(cp.last_new_ns) >= ns(cfg.quiet_period);
            if quiet && age >= ns(cfg.min_observation) {
                State::Stable
            } else if age >= ns(cfg.max_learning) {
                State::Unstable
            } else {
                State::Learning
            }
        }
        State::Stable => State::Stable,
        State::Unstable => State::Unstable,
    };
}

/// The known item sharing the longest prefix with `item`, for the analyst's eye.
fn nearest(items: &BTreeSet<String>, item: &str) -> Option<String> {
    items.iter().max_by_key(|k| k.bytes().zip(item.bytes()).take_while(|(a, b)| a == b).count()).cloned()
}

/// The columns the engine reads, of one batch.
struct Columns {
    namespace: Option<StringArray>,
    workload_kind: Option<StringArray>,
    workload: Option<StringArray>,
    container_name: Option<StringArray>,
    image_digest: Option<StringArray>,
    event_id: Option<StringArray>,
    kind: Option<StringArray>,
    exe: Option<StringArray>,
    args: Option<arrow::array::ListArray>,
    path: Option<StringArray>,
    open_flags: Option<arrow::array::UInt32Array>,
    remote_ip: Option<StringArray>,
    remote_port: Option<StringArray>,
    local_port: Option<StringArray>,
    peer_namespace: Option<StringArray>,
    peer_workload_kind: Option<StringArray>,
    peer_workload: Option<StringArray>,
    peer_service: Option<StringArray>,
    pid: Option<arrow::array::UInt32Array>,
    identity: Vec<Option<StringArray>>,
}

impl Columns {
    fn of(b: &RecordBatch) -> Columns {
        let u32s = |n: &str| {
            b.column_by_name(n)
                .and_then(|c| cast(c, &DataType::UInt32).ok())
                .map(|c| c.as_primitive::<arrow::datatypes::UInt32Type>().clone())
        };
        Columns {
            namespace: strings(b, "namespace"),
            workload_kind: strings(b, "workload_kind"),
            workload: strings(b, "workload"),
            container_name: strings(b, "container_name"),
            image_digest: strings(b, "image_digest"),
            event_id: strings(b, "event_id"),
            kind: strings(b, "kind"),
            exe: strings(b, "exe"),
            args: b.column_by_name("args").and_then(|c| c.as_list_opt::<i32>().cloned()),
            path: strings(b, "path"),
            open_flags: u32s("open_flags"),
            remote_ip: strings(b, "remote_ip"),
            remote_port: strings(b, "remote_port"),
            local_port: strings(b, "local_port"),
            peer_namespace: strings(b, "peer_namespace"),
            peer_workload_kind: strings(b, "peer_workload_kind"),
            peer_workload: strings(b, "peer_workload"),
            peer_service: strings(b, "peer_service"),
            pid: u32s("pid"),
            identity: IDENTITY.iter().map(|n| strings(b, n)).collect(),
        }
    }

    fn pid(&self, row: usize) -> Option<u32> {
        self.pid.as_ref().filter(|p| !p.is_null(row)).map(|p| p.value(row))
    }

    /// The item row `row` of `table` stands for, written into `out`, and its class (None: nothing to learn).
    fn item(&self, table: Table, row: usize, out: &mut String) -> Option<Class> {
        use std::fmt::Write as _;
        out.clear();
        let kind = get(&self.kind, row)?;
        match table {
            Table::ProcessActivity => {
                if kind != "exec" {
                    return None;
                }
                let exe = get(&self.exe, row)?;
                let argv0 = self.args.as_ref().filter(|a| !a.is_null(row)).and_then(|a| {
                    let v = a.value(row);
                    let s = v.as_string_opt::<i32>()?;
                    (!s.is_empty() && !s.is_null(0)).then(|| s.value(0).rsplit('/').next().unwrap_or("").to_string())
                });
                let _ = write!(out, "{exe}|{}", argv0.unwrap_or_default());
                Some(Class::Exec)
            }
            Table::NetworkActivity => match kind {
                "net_connect" => {
                    let port = get(&self.remote_port, row).unwrap_or("");
                    if let Some(w) = get(&self.peer_workload, row) {
                        let ns = get(&self.peer_namespace, row).unwrap_or("");
                        let k = get(&self.peer_workload_kind, row).unwrap_or("");
                        let _ = write!(out, "{ns}/{k}/{w}:{port}");
                    } else if let Some(s) = get(&self.peer_service, row) {
                        let _ = write!(out, "service {}/{s}:{port}", get(&self.peer_namespace, row).unwrap_or(""));
                    } else {
                        let _ = write!(out, "{}:{port}", get(&self.remote_ip, row)?);
                    }
                    Some(Class::Connect)
                }
                "net_listen" => {
                    let _ = write!(out, "{}", get(&self.local_port, row)?);
                    Some(Class::Listen)
                }
                _ => None,
            },
            Table::FileActivity => {
                let path = get(&self.path, row)?;
                let writes = match kind {
                    "file_open" => self.open_flags.as_ref().is_some_and(|f| !f.is_null(row) && f.value(row) & 3 != 0),
                    "file_rename" | "file_unlink" | "file_chmod" | "file_chown" => true,
                    _ => false,
                };
                if !writes || path.starts_with("/proc/") || path.starts_with("/dev/") {
                    return None;
                }
                out.push_str(&generalise(path));
                Some(Class::Write)
            }
            Table::KernelActivity => {
                out.push_str(kind);
                Some(Class::Privilege)
            }
            Table::DnsActivity | Table::DetectionFinding | Table::IpOwnership => None,
        }
    }
}

/// The node's engine with its file: loaded at start, written every minute and at the end.
#[derive(Debug)]
pub struct Profiles {
    engine: ProfileEngine,
    file: Option<std::path::PathBuf>,
    last_save: std::time::Instant,
}

/// How often the node writes its profiles.
const SAVE_EVERY: Duration = Duration::from_secs(60);

impl Profiles {
    /// None when profiles are off; an error when the file exists but cannot be used (named, with the line).
    pub fn open(cfg: &ProfileConfig, rule_base: usize) -> Result<Option<Profiles>, ProfileFileError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let loaded = match &cfg.file {
            Some(f) => load(f)?,
            None => Vec::new(),
        };
        if !loaded.is_empty() {
            tracing::info!(profiles = loaded.len(), "behaviour profiles loaded");
        }
        let engine = ProfileEngine::new(cfg.clone(), loaded, rule_base);
        Ok(Some(Profiles { engine, file: cfg.file.clone(), last_save: std::time::Instant::now() }))
    }

    /// Learns from a round's batches; the anomalies among them.
    pub fn observe(&mut self, batches: &[(Table, RecordBatch)]) -> Vec<Finding> {
        self.engine.observe(batches)
    }

    /// Writes the file when a minute has passed (or `now`); a failure is logged and tried again later.
    pub fn save_when_due(&mut self, now: bool) {
        if !now && self.last_save.elapsed() < SAVE_EVERY {
            return;
        }
        self.last_save = std::time::Instant::now();
        let Some(f) = &self.file else { return };
        if let Err(e) = save(f, self.engine.profiles()) {
            tracing::error!(error = %tracelake_model::error_chain(&e), "behaviour profiles not saved");
        }
        if now {
            let s = self.engine.stats;
            tracing::info!(
                profiles = s.profiles,
                learnt = s.learnt,
                anomalies = s.anomalies,
                rate_limited = s.rate_limited,
                unstable_items = s.unstable_items,
                "behaviour profiles"
            );
        }
    }
}
