#![allow(clippy::unwrap_used, reason = "test code")]

use std::io::{self, Write};

use tracelake_model::json::JsonContext;
use tracelake_model::{Body, BootClock, Event, Kind, Subject};

use super::*;

fn ctx() -> JsonContext<'static> {
    JsonContext { node: "n", clock: BootClock::from_offset(0), node_salt: 1 }
}

fn ev(pid: u32) -> Event<'static> {
    Event {
        kind: Kind::Exit,
        subject: Subject { pid, tgid: pid, ..Subject::default() },
        flags: 0,
        count: 1,
        aggregate: None,
        body: Body::Exit { exit_code: 3, signal: 0, core_dump: false },
    }
}

#[test]
fn every_event_is_one_parseable_line() {
    let mut sink = JsonLinesSink::new(Vec::new(), &StdoutConfig { buffer_bytes: 100 }, ctx());
    for pid in 0..50 {
        sink.push(&ev(pid));
    }
    sink.flush().unwrap();
    let out = sink.into_inner();
    let lines: Vec<serde_json::Value> =
        out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), 50);
    assert_eq!(lines[49]["pid"], 49);
    assert_eq!(lines[0]["exit_code"], 3);
}

struct Broken;
impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_is_reported_with_the_loss_counted() {
    let mut sink = JsonLinesSink::new(Broken, &StdoutConfig { buffer_bytes: 10 }, ctx());
    for pid in 0..5 {
        sink.push(&ev(pid));
    }
    let err = sink.flush().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(sink.lost(), 5);
    assert!(err.to_string().contains("5 events"));
}

#[test]
fn config_rejects_unknown_fields() {
    let err = toml::from_str::<StdoutConfig>("buffer_byte = 1").unwrap_err().to_string();
    assert!(err.contains("buffer_byte"), "{err}");
}
