//! The workload owning a pod, and what can be inferred of it from the pod
//! name and labels alone (no API server, or before the pod was seen).

use std::sync::Arc;

/// Kind of the workload that owns a pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    /// A ReplicaSet no Deployment controls.
    ReplicaSet,
    /// A pod without a controller.
    Pod,
    /// Any other controller (an operator's custom resource, ...): its kind.
    Other(Arc<str>),
}

impl WorkloadKind {
    pub fn as_str(&self) -> &str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Other(k) => k,
        }
    }

    /// The kind named in an ownerReference.
    pub fn from_kind(kind: &str) -> WorkloadKind {
        match kind {
            "Deployment" => WorkloadKind::Deployment,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "Job" => WorkloadKind::Job,
            "CronJob" => WorkloadKind::CronJob,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "Pod" => WorkloadKind::Pod,
            other => WorkloadKind::Other(Arc::from(other)),
        }
    }
}

/// How a workload was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadSource {
    /// From the API server's ownerReferences.
    Api,
    /// From naming conventions and labels: likely, not certain.
    Inferred,
}

impl WorkloadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadSource::Api => "api",
            WorkloadSource::Inferred => "inferred",
        }
    }
}

/// The workload that owns a pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: Arc<str>,
    pub source: WorkloadSource,
}

impl Workload {
    pub fn new(kind: WorkloadKind, name: &str, source: WorkloadSource) -> Workload {
        Workload { kind, name: Arc::from(name), source }
    }
}

/// Characters of generated names and template hashes
/// (k8s.io/apimachinery/pkg/util/rand: no vowels, no 0, 1, 3).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| SAFE.contains(&b))
}

/// The 5-character random suffix `generateName` appends.
fn generated_suffix(s: &str) -> bool {
    s.len() == 5 && safe(s)
}

/// A CronJob's job suffix: the scheduled time in minutes since the epoch
/// (8 digits from 1976 to 2160).
fn schedule_suffix(s: &str) -> bool {
    (8..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `<base>-<suffix>` split at the last dash, both sides non-empty.
fn split_last(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('-').filter(|(b, s)| !b.is_empty() && !s.is_empty())
}

/// Read access to a label set, whatever holds it.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for std::collections::BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for [(Box<str>, Box<str>)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
}

impl Labels for [(&str, &str)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// The CronJob behind a job name `<cronjob>-<scheduled minutes>`.
pub fn cronjob_of_job(job: &str) -> Option<&str> {
    split_last(job).filter(|(_, s)| schedule_suffix(s)).map(|(b, _)| b)
}

/// The Deployment behind a ReplicaSet `<deployment>-<pod-template-hash>`.
pub fn deployment_of_replicaset<'a>(rs: &'a str, template_hash: Option<&str>) -> Option<&'a str> {
    let (base, hash) = split_last(rs)?;
    match template_hash {
        Some(h) => (hash == h).then_some(base),
        // An all-digit hash is far likelier a CronJob schedule than a template hash.
        None => {
            (safe(hash) && (5..=10).contains(&hash.len()) && !hash.bytes().all(|b| b.is_ascii_digit())).then_some(base)
        }
    }
}

/// Job (or CronJob) from a job name.
fn job_workload(job: &str) -> Workload {
    match cronjob_of_job(job) {
        Some(cj) => Workload::new(WorkloadKind::CronJob, cj, WorkloadSource::Inferred),
        None => Workload::new(WorkloadKind::Job, job, WorkloadSource::Inferred),
    }
}

/// Best guess of a pod's workload from its name and whatever labels are
/// known (the pod's, or kubelet's on the container). None when nothing
/// points anywhere: a bare pod and an unknown controller look the same.
pub fn infer<L: Labels + ?Sized>(pod: &str, labels: &L) -> Option<Workload> {
    let kind = |k, n: &str| Some(Workload::new(k, n, WorkloadSource::Inferred));
    if let Some(job) = labels.label("batch.kubernetes.io/job-name").or_else(|| labels.label("job-name")) {
        return Some(job_workload(job));
    }
    if labels.label("statefulset.kubernetes.io/pod-name") == Some(pod)
        || labels.label("apps.kubernetes.io/pod-index").is_some()
    {
        let (sts, ordinal) = split_last(pod)?;
        return ordinal.bytes().all(|b| b.is_ascii_digit()).then(|| kind(WorkloadKind::StatefulSet, sts))?;
    }
    if labels.label("controller-revision-hash").is_some() && labels.label("pod-template-generation").is_some() {
        let (ds, suffix) = split_last(pod)?;
        return generated_suffix(suffix).then(|| kind(WorkloadKind::DaemonSet, ds))?;
    }
    let (rs, suffix) = split_last(pod)?;
    if !generated_suffix(suffix) {
        return None;
    }
    if let Some(hash) = labels.label("pod-template-hash") {
        return deployment_of_replicaset(rs, Some(hash)).and_then(|d| kind(WorkloadKind::Deployment, d));
    }
    // Names only: `<cronjob>-<minutes>-<5>` or `<deployment>-<hash>-<5>`.
    if let Some(cj) = cronjob_of_job(rs) {
        return kind(WorkloadKind::CronJob, cj);
    }
    deployment_of_replicaset(rs, None).and_then(|d| kind(WorkloadKind::Deployment, d))
}
