//! Shared by the end-to-end tests: run a sensor around some activity and
//! keep what it saw.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, reason = "test code shared by several test files")]

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tracelake_model::{Event, OwnedEvent};
use tracelake_sensor::{EventHandler, Sensor, SensorConfig};

#[derive(Default)]
pub struct Collect(pub Vec<OwnedEvent>);

impl EventHandler for Collect {
    fn handle(&mut self, ev: &Event<'_>) {
        self.0.push(OwnedEvent::from_event(ev));
    }
}

/// Starts tl-act with arguments.
pub fn act(args: &[&str]) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_tl-act")).args(args).stdout(Stdio::piped()).spawn().unwrap();
    *LAST.lock().unwrap() = child.id();
    child
}

static LAST: Mutex<u32> = Mutex::new(0);
static NOTE: Mutex<String> = Mutex::new(String::new());

pub fn last_pid() -> u32 {
    *LAST.lock().unwrap()
}
pub fn remember(s: &str) {
    *NOTE.lock().unwrap() = s.to_string();
}
pub fn remembered() -> String {
    NOTE.lock().unwrap().clone()
}

/// Waits for a child, asserts success (or the exit code the test asked for), returns its pid.
pub fn wait(mut child: Child) -> u32 {
    let pid = child.id();
    let status = child.wait().unwrap();
    assert!(status.code().is_some(), "child {pid} died by a signal");
    pid
}

/// Runs `activity` (which returns the pids it cares about) while a real
/// sensor is attached; stops the sensor a moment after, once everything is
/// drained, and returns every event it delivered.
pub async fn capture(
    cfg: SensorConfig,
    activity: impl FnOnce() -> Vec<u32> + Send + 'static,
) -> (Vec<OwnedEvent>, Vec<u32>) {
    let mut sensor = Sensor::start(&cfg).expect("sensor starts (run tests as root)");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let pids = activity();
        // Exit tracepoints fire while the child is reaped: give the ring a moment.
        std::thread::sleep(Duration::from_millis(300));
        let _ = tx.send(pids);
    });
    let pids = std::sync::Arc::new(Mutex::new(Vec::new()));
    let p2 = std::sync::Arc::clone(&pids);
    let mut sink = Collect::default();
    let summary = sensor
        .run(&mut sink, async move {
            *p2.lock().unwrap() = rx.await.expect("activity thread");
        })
        .await
        .expect("sensor runs");
    assert_eq!(summary.stats.decode_errors, 0, "every record decodes");
    let pids = pids.lock().unwrap().clone();
    (sink.0, pids)
}

pub fn of_pid(events: &[OwnedEvent], pid: u32) -> Vec<OwnedEvent> {
    events.iter().filter(|e| e.subject.tgid == pid).cloned().collect()
}
