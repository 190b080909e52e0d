//! Queries and hunts over a lake written by the real sink (`LakeSink`), read
//! back through DataFusion ListingTables; the hunting queries plan and run.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::AsArray;
use tracelake_model::Kind;
use tracelake_queries::builtin;
use tracelake_queries::fixtures::{Script, context};
use tracelake_queries::lake::{Format, Lake, format_batches};
use tracelake_sinks::parquet::{LakeConfig, LakeSink};

const HOUR: i128 = 3_600_000_000_000;

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// Writes the script's events through the real lake sink at wall time `base`.
fn write_lake(dir: &Path, base: i128, s: &Script) {
    let cfg = LakeConfig {
        dir: dir.to_path_buf(),
        retention: Duration::ZERO,
        compact_min_files: usize::MAX,
        ..LakeConfig::default()
    };
    let mut sink = LakeSink::open(&cfg, context(base)).unwrap();
    for fx in &s.events {
        sink.push_with(&fx.event.as_event(), &fx.identity());
    }
    sink.close(0, Duration::ZERO).unwrap();
}

/// `ip_ownership` rows for 10.1.2.3: (workload, valid_from, valid_to, seq), as the lake's ownership export
/// writes them (one row per version of an interval).
fn write_ownership(dir: &Path, rows: &[(&str, i64, Option<i64>, u64)]) {
    use tracelake_sinks::parquet::{LakeWriter, OwnershipRow, Table, ownership_batch};
    let pods: Vec<String> = rows.iter().map(|r| format!("{}-0", r.0)).collect();
    let rows: Vec<OwnershipRow<'_>> = rows
        .iter()
        .zip(&pods)
        .map(|(r, pod)| OwnershipRow {
            ip: "10.1.2.3",
            valid_from: r.1,
            valid_to: r.2,
            node: Some("node-1"),
            namespace: Some("payments"),
            pod: Some(pod),
            pod_uid: Some("uid"),
            workload_kind: Some("StatefulSet"),
            workload: Some(r.0),
            container_id: Some("c0"),
            service: None,
            source: "kube",
            seq: r.3,
        })
        .collect();
    let batch = ownership_batch(&rows).unwrap();
    let cfg = LakeConfig { dir: dir.to_path_buf(), ..LakeConfig::default() };
    LakeWriter::new(&cfg).unwrap().write(Table::IpOwnership, &batch).unwrap();
}

fn attack() -> Script {
    let mut s = Script::new();
    s.exec(100, "/bin/busybox", &["sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"]);
    s.file(Kind::FileOpen, 101, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0);
    s.connect(102, "nc", "10.0.0.12", 30080);
    s.exec(103, "/usr/bin/python3", &["python3", "app.py"]);
    s
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn query_reads_every_table_with_partition_columns() {
    let dir = tempfile::tempdir().unwrap();
    let base = now_ns() - 2 * HOUR;
    write_lake(dir.path(), base, &attack());
    let rt = rt();
    rt.block_on(async {
        let lake = Lake::open(dir.path(), None).await.unwrap();
        let b = lake
            .sql("SELECT kind, comm, pod, namespace, date, hour FROM process_activity WHERE kind = 'exec' ORDER BY pid")
            .await
            .unwrap();
        let rows: usize = b.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2);
        let b = &b[0];
        assert_eq!(b.column_by_name("comm").unwrap().as_string::<i32>().value(0), "sh");
        assert_eq!(b.column_by_name("pod").unwrap().as_string::<i32>().value(0), "api-7d9f-x2");
        let (date, hour) = tracelake_queries::lake::partition_of(base as i64 + 1_001_000_000);
        assert_eq!(b.column_by_name("date").unwrap().as_string::<i32>().value(0), date);
        assert_eq!(b.column_by_name("hour").unwrap().as_string::<i32>().value(0), hour);
        let n = lake.sql("SELECT count(*) AS n FROM network_activity WHERE remote_port = 30080").await.unwrap();
        assert_eq!(n[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0), 1);
        // Tables nothing was written to are there, empty.
        let n = lake.sql("SELECT count(*) FROM ip_ownership").await.unwrap();
        assert_eq!(n[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0), 0);
        // Views.
        let t = lake.sql("SELECT exe, cmdline FROM process_tree ORDER BY pid").await.unwrap();
        assert_eq!(t[0].num_rows(), 2);
        let c = lake.sql("SELECT workload, exe, execs FROM exe_counts ORDER BY exe").await.unwrap();
        assert_eq!(c.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        // Output formats.
        let json = format_batches(&t, Format::Json).unwrap();
        let first: serde_json::Value = serde_json::from_slice(json.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["exe"], "/bin/busybox");
        let csv = String::from_utf8(format_batches(&t, Format::Csv).unwrap()).unwrap();
        assert!(csv.starts_with("exe,cmdline\n/bin/busybox,"), "{csv}");
        let table = String::from_utf8(format_batches(&t, Format::Table).unwrap()).unwrap();
        assert!(table.contains("| /bin/busybox"), "{table}");
    });
}

#[test]
fn bad_sql_names_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path(), now_ns(), &attack());
    rt().block_on(async {
        let lake = Lake::open(dir.path(), None).await.unwrap();
        let e = lake.sql("SELECT commm FROM process_activity").await.unwrap_err().to_string();
        assert!(e.contains("commm"), "{e}");
        assert!(e.contains("tables: process_activity, file_activity"), "{e}");
        assert!(e.contains("process_activity columns: time, event_id"), "{e}");
        let e = lake.sql("SELECT * FROM processes").await.unwrap_err().to_string();
        assert!(e.contains("processes") && e.contains("tables: "), "{e}");
        let e = lake.sql("SELEC 1").await.unwrap_err().to_string();
        assert!(e.contains("SELEC"), "{e}");
    });
}

#[test]
fn hunt_finds_what_live_found_and_since_prunes_old_hours() {
    let dir = tempfile::tempdir().unwrap();
    // The same attack 3 hours ago and 30 minutes ago.
    write_lake(dir.path(), now_ns() - 3 * HOUR, &attack());
    write_lake(dir.path(), now_ns() - HOUR / 2, &attack());
    let rules = builtin::rules().unwrap();
    let token = rules.iter().find(|r| r.id == "TL-K8S-006").unwrap();
    let nodeport = rules.iter().find(|r| r.id == "TL-K8S-025").unwrap();
    rt().block_on(async {
        let since_1h = (now_ns() - HOUR) as i64;
        let lake = Lake::open(dir.path(), Some(since_1h)).await.unwrap();
        let (found, _) = lake.hunt(token).await.unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].get("pod"), Some("api-7d9f-x2"));
        let (found, _) = lake.hunt(nodeport).await.unwrap();
        assert_eq!(found.len(), 1);
        let lake = Lake::open(dir.path(), Some((now_ns() - 4 * HOUR) as i64)).await.unwrap();
        let (found, _) = lake.hunt(token).await.unwrap();
        assert_eq!(found.len(), 2, "both hours: {found:?}");
        // The plan of a `since` view prunes on the partition columns.
        let plan = lake.sql("EXPLAIN SELECT count(*) FROM file_activity").await.unwrap();
        let text = String::from_utf8(format_batches(&plan, Format::Table).unwrap()).unwrap();
        assert!(text.contains("date"), "{text}");
    });
}

#[test]
fn hunting_queries_plan_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = attack();
    s.connect(104, "curl", "10.1.2.3", 443);
    write_lake(dir.path(), now_ns() - HOUR / 4, &s);
    // 10.1.2.3 belonged to `db` from 2 hours ago until 1 hour ago, then to `cache`. The `db` interval was
    // written when it opened (no end yet) and again when it closed: only the later row is current.
    let now = now_ns() as i64;
    let h = HOUR as i64;
    write_ownership(dir.path(), &[("db", now - 2 * h, None, 0), ("cache", now - h, None, 2)]);
    write_ownership(dir.path(), &[("db", now - 2 * h, Some(now - h), 1)]);
    rt().block_on(async {
        let lake = Lake::open(dir.path(), None).await.unwrap();
        for (name, sql) in builtin::HUNTING {
            let out = lake.sql(sql).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let rows: usize = out.iter().map(|b| b.num_rows()).sum();
            match *name {
                "rare_processes_per_workload.sql" => assert_eq!(rows, 2, "{name}"),
                "first_seen_destinations.sql" => assert_eq!(rows, 2, "{name}"),
                "who_talked_to_ip.sql" => {
                    assert_eq!(rows, 1, "{name}: the superseded open `db` row must not match too");
                    let owner = out.iter().find(|b| b.num_rows() > 0).unwrap().column_by_name("owner_workload");
                    assert_eq!(owner.unwrap().as_string::<i32>().value(0), "cache", "the owner at the time");
                }
                _ => {}
            }
        }
        // The raw table has every version; the view only the current ones.
        let count = |sql: &'static str| {
            let lake = &lake;
            async move {
                let b = lake.sql(sql).await.unwrap();
                b[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0)
            }
        };
        assert_eq!(count("SELECT count(*) FROM ip_ownership").await, 3);
        assert_eq!(count("SELECT count(*) FROM ip_owners").await, 2);
        assert_eq!(count("SELECT count(*) FROM ip_owners WHERE workload = 'db' AND valid_to IS NOT NULL").await, 1);
        let b = lake.sql("SELECT peer_workload FROM connections WHERE remote_ip = '10.1.2.3'").await.unwrap();
        let peers: Vec<&str> =
            b.iter().flat_map(|b| b.column(0).as_string::<i32>().iter().map(Option::unwrap)).collect();
        assert_eq!(peers, ["cache"]);
        // Rare-value views: counts per workload.
        let b = lake
            .sql("SELECT remote_ip, remote_port, connects, containers FROM destination_counts ORDER BY remote_ip")
            .await
            .unwrap();
        let b = arrow::compute::concat_batches(&b[0].schema(), &b).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(0), "10.0.0.12");
        assert_eq!(b.column(1).as_primitive::<arrow::datatypes::UInt16Type>().value(0), 30080);
        assert_eq!(b.column(2).as_primitive::<arrow::datatypes::Int64Type>().value(0), 1);
        let b = lake.sql("SELECT workload, path, events FROM file_counts").await.unwrap();
        let b = arrow::compute::concat_batches(&b[0].schema(), &b).unwrap();
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.column(0).as_string::<i32>().value(0), "api");
        assert!(b.column(1).as_string::<i32>().value(0).ends_with("/serviceaccount/token"));
    });
}
