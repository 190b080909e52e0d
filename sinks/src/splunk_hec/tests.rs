#![allow(clippy::unwrap_used, reason = "test code")]
//! CIM golden events, and forwarding to the HEC STAND-IN of the test kit (`testkit::hec`): no Splunk can run
//! here, so these tests check the forwarder against Splunk's published HEC API as the stand-in implements it.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracelake_testkit::hec::HecStandIn;

use super::{SplunkHec, SplunkHecConfig};
use crate::forward::tests::{golden, sample_batch};
use crate::forward::{ForwardError, TableRoute, Target};
use crate::parquet::Table;

const TOKEN: &str = "00000000-0000-4000-8000-00000000feed";

#[test]
fn cim_golden_events_of_every_table() {
    let hec = SplunkHec::new(&SplunkHecConfig::new("http://127.0.0.1:9", TOKEN)).unwrap();
    for table in Table::ALL {
        let mut out = Vec::new();
        // Only configured tables (and findings) render: route every table for the golden files.
        let mut cfg = SplunkHecConfig::new("http://127.0.0.1:9", TOKEN);
        cfg.tables.insert(table.name().into(), TableRoute::default());
        let hec_t = SplunkHec::new(&cfg).unwrap();
        hec_t.render(table, &sample_batch(table, 1, true), &mut out);
        let text = String::from_utf8(out.remove(0)).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "one event per line");
        let v: Value = serde_json::from_str(&text).unwrap();
        golden(&format!("src/splunk_hec/golden/{}.json", table.name()), &v);
    }
    let mut out = Vec::new();
    hec.render(Table::FileActivity, &sample_batch(Table::FileActivity, 1, false), &mut out);
    assert!(out.is_empty(), "file_activity is not configured");
}

fn config(url: &str, dir: &std::path::Path, token: &str) -> SplunkHecConfig {
    let mut cfg = SplunkHecConfig::new(url, token);
    cfg.tables
        .insert("process_activity".into(), TableRoute { index: Some("tracelake".into()), ..TableRoute::default() });
    cfg.delivery.dead_letter_dir = Some(dir.join("dead"));
    // Generous: the test VM is shared (2 cores, other builds); an outage is a SIGSTOP, not a slow answer.
    cfg.delivery.request_timeout = Duration::from_secs(10);
    cfg.delivery.retry_initial = Duration::from_millis(100);
    cfg.delivery.retry_max = Duration::from_secs(1);
    cfg.delivery.batch_max_bytes = 128 << 10;
    cfg.delivery.batch_max_age = Duration::from_millis(50);
    cfg.ack_interval = Duration::from_millis(100);
    cfg.ack_timeout = Duration::from_secs(2);
    cfg.buffer.dir = Some(dir.join("buffer"));
    cfg.buffer.spill_after = Duration::from_secs(20);
    cfg
}

fn rows(from: usize, n: usize) -> arrow::record_batch::RecordBatch {
    use arrow::array::{ArrayRef, StringArray};
    let batch = sample_batch(Table::ProcessActivity, n, false);
    let i = batch.schema().index_of("event_id").unwrap();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols[i] = std::sync::Arc::new(StringArray::from_iter_values((from..from + n).map(|k| format!("{k:016x}"))));
    arrow::record_batch::RecordBatch::try_new(batch.schema(), cols).unwrap()
}

fn ids(hec: &HecStandIn) -> Vec<String> {
    hec.state.events().iter().filter_map(|e| e["event"]["event_id"].as_str().map(String::from)).collect()
}

#[test]
fn n_events_delivered_only_once_acknowledged() {
    let hec = HecStandIn::start(TOKEN).unwrap();
    hec.state.ack_delay_ms.store(300, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let fwd = SplunkHec::forwarder(&config(hec.url(), dir.path(), TOKEN), Vec::new()).unwrap();
    let start = Instant::now();
    let last = fwd.push(Table::ProcessActivity, &rows(0, 5_000));
    assert!(fwd.wait_for(last, Duration::from_secs(30)));
    assert!(start.elapsed() >= Duration::from_millis(300), "safe before Splunk acknowledged");
    let got = ids(&hec);
    assert_eq!(got.len(), 5_000);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 5_000);
    let e = &hec.state.events()[0];
    assert_eq!((e["sourcetype"].as_str(), e["index"].as_str()), (Some("tracelake:process"), Some("tracelake")));
    assert_eq!(fwd.stats().delivered.load(Ordering::Relaxed), 5_000);
    fwd.close(Duration::from_secs(5));
}

#[test]
fn busy_then_lost_requests_are_sent_again_and_every_event_arrives() {
    let hec = HecStandIn::start(TOKEN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fwd = SplunkHec::forwarder(&config(hec.url(), dir.path(), TOKEN), Vec::new()).unwrap();
    // 503 "Server is busy" for 2 s, then requests taken but never indexed nor acknowledged for 2 s more.
    hec.state.busy.store(true, Ordering::Relaxed);
    let last = fwd.push(Table::ProcessActivity, &rows(0, 2_000));
    std::thread::sleep(Duration::from_secs(2));
    hec.state.lose.store(true, Ordering::Relaxed);
    hec.state.busy.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    hec.state.lose.store(false, Ordering::Relaxed);
    assert!(fwd.wait_for(last, Duration::from_secs(30)), "acked {}", fwd.acked_up_to());
    let got = ids(&hec);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 2_000, "every event, possibly some twice");
    let s = fwd.stats();
    assert!(s.retries.load(Ordering::Relaxed) > 0);
    assert!(s.ack_timeouts.load(Ordering::Relaxed) > 0);
    fwd.close(Duration::from_secs(5));
}

#[test]
fn a_poison_event_is_dead_lettered_and_the_rest_arrive() {
    let hec = HecStandIn::start(TOKEN).unwrap();
    hec.state.set_poison(Some(&format!("{:016x}", 77)));
    let dir = tempfile::tempdir().unwrap();
    let fwd = SplunkHec::forwarder(&config(hec.url(), dir.path(), TOKEN), Vec::new()).unwrap();
    let last = fwd.push(Table::ProcessActivity, &rows(0, 200));
    assert!(fwd.wait_for(last, Duration::from_secs(30)));
    let got: BTreeSet<String> = ids(&hec).into_iter().collect();
    assert_eq!(got.len(), 199);
    assert!(!got.contains(&format!("{:016x}", 77)));
    let dead: Vec<_> = std::fs::read_dir(dir.path().join("dead")).unwrap().collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(fwd.stats().dead_lettered.load(Ordering::Relaxed), 1);
    fwd.close(Duration::from_secs(5));
}

#[test]
fn a_wrong_token_is_a_clear_error_at_start() {
    let hec = HecStandIn::start(TOKEN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = SplunkHec::forwarder(&config(hec.url(), dir.path(), "wrong"), Vec::new()).unwrap_err();
    assert!(matches!(err, ForwardError::Auth { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("splunk_hec rejected the credentials") && msg.contains("403"), "{msg}");
    let mut cfg = config(hec.url(), dir.path(), TOKEN);
    cfg.token = None;
    assert!(SplunkHec::new(&cfg).unwrap_err().to_string().contains("token"));
}
