#![allow(clippy::unwrap_used, reason = "test code")]
//! ECS golden documents, and forwarding to a real Elasticsearch-API server (osmem-server, testkit::osmem).

use std::time::{Duration, Instant};

use serde_json::Value;
use tracelake_testkit::osmem::Osmem;

use super::{Elasticsearch, ElasticsearchConfig};
use crate::forward::tests::{T0, golden, sample_batch};
use crate::forward::{Forwarder, TableRoute, Target};
use crate::parquet::Table;

/// The action line and the source of the first document of `table`'s hostile sample.
fn rendered(table: Table) -> (Value, Value) {
    let es = Elasticsearch::new(&ElasticsearchConfig::new("http://127.0.0.1:9")).unwrap();
    let mut out = Vec::new();
    es.render(table, &sample_batch(table, 1, true), &mut out);
    let text = String::from_utf8(out.remove(0)).unwrap();
    let mut lines = text.lines();
    let action = serde_json::from_str(lines.next().unwrap()).unwrap();
    let source = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(lines.next().is_none(), "a document is two NDJSON lines");
    (action, source)
}

#[test]
fn ecs_golden_documents_of_every_table() {
    for table in Table::ALL {
        let (action, source) = rendered(table);
        golden(
            &format!("src/elasticsearch/golden/{}.json", table.name()),
            &serde_json::json!({ "action": action, "source": source }),
        );
    }
}

#[test]
fn hostile_values_survive_exactly() {
    let (action, doc) = rendered(Table::ProcessActivity);
    assert_eq!(action["index"]["_index"], "tracelake-process_activity-2023.11.14");
    assert_eq!(action["index"]["_id"], "0000100000000000");
    assert_eq!(doc["process"]["executable"], "/tmp/\u{fffd}\u{fffd}evil\nline2\u{0}\"q\"\\");
    assert_eq!(doc["process"]["name"], "ev\nil");
    // The exact argv bytes (not UTF-8) are kept beside the lossy text.
    assert_eq!(doc["tracelake"]["args_raw"], crate::forward::json::base64(crate::forward::tests::RAW_ARGV));
    assert_eq!(doc["@timestamp"], "2023-11-14T22:13:20.123456789Z");
}

#[test]
fn a_one_mebibyte_argument_renders_as_valid_json() {
    use arrow::array::{ArrayRef, ListBuilder, StringBuilder};
    let batch = sample_batch(Table::ProcessActivity, 1, false);
    let big = "A".repeat(1 << 20);
    let mut b = ListBuilder::new(StringBuilder::new());
    b.values().append_value("sh");
    b.values().append_value(&big);
    b.append(true);
    let i = batch.schema().index_of("args").unwrap();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols[i] = std::sync::Arc::new(b.finish());
    let batch = arrow::record_batch::RecordBatch::try_new(batch.schema(), cols).unwrap();
    let es = Elasticsearch::new(&ElasticsearchConfig::new("http://127.0.0.1:9")).unwrap();
    let mut out = Vec::new();
    es.render(Table::ProcessActivity, &batch, &mut out);
    let doc: Value = serde_json::from_str(String::from_utf8(out.remove(0)).unwrap().lines().nth(1).unwrap()).unwrap();
    assert_eq!(doc["process"]["args"][1].as_str().unwrap().len(), 1 << 20);
    assert_eq!(doc["process"]["args_count"], 2);
}

fn config(url: &str, dir: &std::path::Path) -> ElasticsearchConfig {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut cfg = ElasticsearchConfig::new(url);
    cfg.tables.insert("process_activity".into(), TableRoute::default());
    cfg.delivery.dead_letter_dir = Some(dir.join("dead"));
    // Generous: the test VM is shared (2 cores, other builds); an outage is a SIGSTOP, not a slow answer.
    cfg.delivery.request_timeout = Duration::from_secs(10);
    cfg.delivery.retry_initial = Duration::from_millis(100);
    cfg.delivery.retry_max = Duration::from_secs(1);
    cfg.delivery.batch_max_bytes = 256 << 10;
    cfg.delivery.batch_max_age = Duration::from_millis(50);
    cfg.buffer.dir = Some(dir.join("buffer"));
    cfg.buffer.spill_after = Duration::from_secs(3);
    cfg
}

/// Rows of process_activity with ids `from..from+n`.
fn rows(from: usize, n: usize) -> arrow::record_batch::RecordBatch {
    use arrow::array::{ArrayRef, StringArray};
    let batch = sample_batch(Table::ProcessActivity, n, false);
    let i = batch.schema().index_of("event_id").unwrap();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols[i] = std::sync::Arc::new(StringArray::from_iter_values((from..from + n).map(|k| format!("{k:016x}"))));
    arrow::record_batch::RecordBatch::try_new(batch.schema(), cols).unwrap()
}

const INDEX: &str = "tracelake-process_activity-*";

fn wait_count(es: &Osmem, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let c = es.count(INDEX).unwrap_or(0);
        if c >= n || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_exactly(es: &Osmem, n: usize) {
    let ids = es.ids(INDEX);
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), n, "documents in the index");
    assert_eq!(distinct.len(), n, "distinct ids");
    assert!((0..n).all(|k| distinct.contains(&format!("{k:016x}"))), "every id");
}

#[test]
fn n_rows_in_exactly_n_documents_by_id_with_the_template_installed() {
    let es = Osmem::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fwd = Elasticsearch::forwarder(&config(es.url(), dir.path()), Vec::new()).unwrap();
    // osmem-server indexes about 500 documents a second on the shared test VM: N is sized for it.
    let n = 5_000;
    let mut last = 0;
    for k in (0..n).step_by(500) {
        last = fwd.push(Table::ProcessActivity, &rows(k, 500));
    }
    // Rows of a table not configured are not sent, and their ticket passes too.
    last = last.max(fwd.push(Table::FileActivity, &sample_batch(Table::FileActivity, 10, false)));
    assert!(fwd.wait_for(last, Duration::from_secs(60)), "acked {} of {last}", fwd.acked_up_to());
    let c = wait_count(&es, n as u64, Duration::from_secs(120));
    assert_eq!(c, n as u64, "{:?}", fwd.stats().snapshot());
    assert_exactly(&es, n);
    let (status, body) =
        tracelake_testkit::http::request("GET", &format!("{}/_index_template/tracelake", es.url()), None, &[]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let report = fwd.close(Duration::from_secs(5));
    assert_eq!((report.buffered, report.lost), (0, 0));
    let s = fwd.stats();
    assert_eq!(s.delivered.load(std::sync::atomic::Ordering::Relaxed), n as u64);
    assert!(s.bytes_sent.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[test]
fn the_siem_away_30s_mid_stream_then_back_still_exactly_n() {
    let es = Osmem::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fwd = Elasticsearch::forwarder(&config(es.url(), dir.path()), Vec::new()).unwrap();
    let n = 6_000;
    let mut last = 0;
    for k in (0..2_000).step_by(500) {
        last = fwd.push(Table::ProcessActivity, &rows(k, 500));
    }
    assert!(fwd.wait_for(last, Duration::from_secs(60)));
    es.pause();
    let paused = Instant::now();
    for k in (2_000..n).step_by(200) {
        last = fwd.push(Table::ProcessActivity, &rows(k, 200));
        std::thread::sleep(Duration::from_millis(500));
    }
    // Within the spill bound the rows are safe (on disk), the SIEM still away: what bounds the lake's wait.
    assert!(fwd.wait_for(last, Duration::from_secs(25)), "rows not safe while the SIEM is away");
    let s = fwd.stats();
    assert!(s.spilled.load(std::sync::atomic::Ordering::Relaxed) > 0, "nothing went to the disk buffer");
    std::thread::sleep(Duration::from_secs(30).saturating_sub(paused.elapsed()));
    es.resume();
    assert_eq!(wait_count(&es, n as u64, Duration::from_secs(120)), n as u64, "{:?}", fwd.stats().snapshot());
    assert_exactly(&es, n);
    let report = fwd.close(Duration::from_secs(5));
    assert_eq!((report.buffered, report.lost), (0, 0));
}

#[test]
fn a_crash_leaves_rows_in_the_disk_buffer_and_the_next_start_sends_them_once() {
    let es = Osmem::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(es.url(), dir.path());
    let fwd = Elasticsearch::forwarder(&cfg, Vec::new()).unwrap();
    let last = fwd.push(Table::ProcessActivity, &rows(0, 1_000));
    assert!(fwd.wait_for(last, Duration::from_secs(30)));
    es.pause();
    let last = fwd.push(Table::ProcessActivity, &rows(1_000, 4_000));
    // A stop while the SIEM is away: what is not delivered goes to disk (as after a spill), nothing is lost.
    let report = fwd.close(Duration::from_millis(500));
    assert!(report.buffered > 0 && report.lost == 0, "{report:?}");
    assert!(fwd.acked_up_to() >= last);
    drop(fwd);
    es.resume();
    let fwd: Forwarder = Elasticsearch::forwarder(&cfg, Vec::new()).unwrap();
    let c = wait_count(&es, 5_000, Duration::from_secs(120));
    assert_eq!(
        c,
        5_000,
        "{:?} {:?}",
        fwd.stats().snapshot(),
        std::fs::read_dir(dir.path().join("dead")).map(|d| d.count())
    );
    assert_exactly(&es, 5_000);
    let report = fwd.close(Duration::from_secs(5));
    assert_eq!(report.buffered, 0);
}

#[test]
fn a_poison_document_goes_to_the_dead_letter_directory_and_the_rest_arrive() {
    let es = Osmem::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The day's index exists with `process.working_directory` mapped as a number: the row whose cwd is not
    // one is rejected for good (mapper_parsing_exception), the others fit.
    let mapping = br#"{"mappings":{"properties":{"process":{"properties":{"working_directory":{"type":"long"}}}}}}"#;
    let url = format!("{}/tracelake-process_activity-2023.11.14", es.url());
    let (status, body) =
        tracelake_testkit::http::request("PUT", &url, Some(mapping), &[("Content-Type", "application/json")]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut batch = rows(0, 1_000);
    // Every row's cwd is a number but row 500's.
    use arrow::array::{ArrayRef, StringArray};
    let i = batch.schema().index_of("cwd").unwrap();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols[i] = std::sync::Arc::new(StringArray::from_iter_values(
        (0..1_000).map(|k| if k == 500 { "/app".to_string() } else { k.to_string() }),
    ));
    batch = arrow::record_batch::RecordBatch::try_new(batch.schema(), cols).unwrap();
    let fwd = Elasticsearch::forwarder(&config(es.url(), dir.path()), Vec::new()).unwrap();
    let last = fwd.push(Table::ProcessActivity, &batch);
    assert!(fwd.wait_for(last, Duration::from_secs(30)));
    assert_eq!(wait_count(&es, 999, Duration::from_secs(10)), 999);
    let dead: Vec<_> = std::fs::read_dir(dir.path().join("dead")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dead.len(), 1);
    let letter: Value = serde_json::from_str(&std::fs::read_to_string(&dead[0]).unwrap()).unwrap();
    assert!(letter["reason"].as_str().unwrap().contains("mapper_parsing_exception"), "{letter}");
    assert!(letter["document"].as_str().unwrap().contains(&format!("{:016x}", 500)));
    assert_eq!(letter["table"], "process_activity");
    let s = fwd.stats();
    assert_eq!(s.dead_lettered.load(std::sync::atomic::Ordering::Relaxed), 1);
    fwd.close(Duration::from_secs(5));
}

#[test]
fn findings_below_the_minimum_severity_stay_home() {
    let es = Osmem::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(es.url(), dir.path());
    cfg.findings_min_severity = "critical".into();
    let fwd = Elasticsearch::forwarder(&cfg, Vec::new()).unwrap();
    let last = fwd.push(Table::DetectionFinding, &sample_batch(Table::DetectionFinding, 5, false));
    assert!(fwd.wait_for(last, Duration::from_secs(10)));
    assert_eq!(fwd.stats().documents.load(std::sync::atomic::Ordering::Relaxed), 0);
    fwd.close(Duration::from_secs(5));
    let _ = T0;
}

#[test]
fn configuration_errors_are_named() {
    let mut cfg = ElasticsearchConfig::new("es:9200");
    assert!(Elasticsearch::new(&cfg).unwrap_err().to_string().contains("siem.elasticsearch.url"));
    cfg.url = "http://es:9200".into();
    cfg.tables.insert("procs".into(), TableRoute::default());
    assert!(Elasticsearch::new(&cfg).unwrap_err().to_string().contains("procs"));
    cfg.tables.clear();
    cfg.username = Some("u".into());
    assert!(Elasticsearch::new(&cfg).unwrap_err().to_string().contains("username and password"));
    cfg.password = Some("p".into());
    cfg.api_key = Some("k".into());
    assert!(Elasticsearch::new(&cfg).unwrap_err().to_string().contains("not both"));
    cfg.findings_min_severity = "severe".into();
    assert!(Elasticsearch::new(&cfg).unwrap_err().to_string().contains("findings_min_severity"));
}
