//! Process lineage from real kernel events: a shell inside a shell running
//! /bin/true is traced back through both shells, and stays resolvable after
//! every one of them has exited. (`; exit 0` keeps dash from exec'ing the
//! last command in place of the shell.)
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::time::Duration;

use common::capture;
use tracelake_enricher::ProcessTable;
use tracelake_model::Kind;
use tracelake_sensor::SensorConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_of_a_nested_shell_command() {
    let (events, pids) = capture(SensorConfig::default(), || {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "/bin/sh -c '/bin/true tl-lineage; exit 0'; exit 0"])
            .spawn()
            .unwrap();
        vec![common::wait(child)]
    })
    .await;
    let mut table = ProcessTable::new(Duration::from_secs(60), 10_000, 100_000);
    for ev in &events {
        table.observe(&ev.as_event());
    }
    let t = events
        .iter()
        .find(|e| e.kind == Kind::Exec && e.strings[1].starts_with(b"/bin/true\0tl-lineage"))
        .expect("exec of /bin/true");
    let chain = table.lineage(t.subject.tgid, t.subject.proc_start_ns, 8);
    let exes: Vec<String> = chain.iter().take(3).map(|p| String::from_utf8_lossy(&p.exe).into_owned()).collect();
    assert!(exes[0].ends_with("/true"), "{exes:?}");
    assert!(exes[1].ends_with("sh") && exes[2].ends_with("sh"), "{exes:?}");
    assert_eq!(chain[2].pid, pids[0], "the outer shell is the child the test started");
    assert!(chain.iter().take(3).all(|p| p.exited_ns.is_some()), "all three exited and are tombstones now");
}
