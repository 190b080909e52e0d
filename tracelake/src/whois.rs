//! `tracelake whois IP [--at TIME]`: who held an address, from the IP
//! history `tracelake run` persists (read without locking or repairing it,
//! so it works while the node agent runs).

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use tracelake_enricher::iphistory::{Interval, IpHistory, Owner, Source, UnixNanos, now_ns};
use tracelake_queries::lake::Lake;
use tracelake_sinks::parquet::Table;

use crate::cli::WhoisArgs;
use crate::config;

pub fn command(args: &WhoisArgs) -> anyhow::Result<()> {
    let ip: IpAddr = args
        .ip
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("not an IP address: {:?} (expected e.g. 10.42.1.7 or fd00::7)", args.ip))?;
    let at = args.at.as_deref().map(parse_time).transpose()?;
    let mut rows = match &args.lake {
        Some(lake) => from_lake(lake, ip)?,
        None => {
            let state_dir = match &args.state_dir {
                Some(d) => d.clone(),
                None => config::load(args.config.as_deref())?.enricher.state_dir,
            };
            let dir = state_dir.join("ip-history");
            let history = IpHistory::read_only(&dir)
                .with_context(|| format!("no IP history under {} (is the state dir right?)", state_dir.display()))?;
            history.history(ip)
        }
    };
    if let Some(t) = at {
        rows.retain(|iv| iv.contains(t));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<serde_json::Value> = rows.iter().map(|iv| json_row(ip, iv)).collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(());
    }
    if rows.is_empty() {
        match at {
            Some(t) => writeln!(out, "{ip}: nobody known at {}", time(t))?,
            None => writeln!(out, "{ip}: no history")?,
        }
        return Ok(());
    }
    table(&mut out, &rows)?;
    Ok(())
}

/// The intervals of `ip` in a lake's `ip_ownership` table (every node's, as `tracelake lake` or `tracelake
/// run` wrote them), current version of each (the `ip_owners` view), oldest first.
fn from_lake(dir: &Path, ip: IpAddr) -> anyhow::Result<Vec<Interval>> {
    if !dir.join(Table::IpOwnership.name()).is_dir() {
        bail!("no ip_ownership table under {} (is the lake dir right?)", dir.display());
    }
    let sql = format!(
        "SELECT CAST(valid_from AS BIGINT) AS f, CAST(valid_to AS BIGINT) AS t, node, namespace, pod, pod_uid, \
         workload_kind, workload, container_id, service, source FROM ip_owners WHERE ip = '{ip}' ORDER BY f"
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let batches = rt.block_on(async {
        let lake = Lake::open(dir, None).await?;
        lake.sql(&sql).await
    })?;
    let mut out = Vec::new();
    for b in &batches {
        let int = |i: usize| -> anyhow::Result<Int64Array> {
            let c = cast(b.column(i), &DataType::Int64)?;
            c.as_any().downcast_ref::<Int64Array>().cloned().context("ip_owners: not an integer column")
        };
        let text = |i: usize| -> anyhow::Result<StringArray> {
            let c = cast(b.column(i), &DataType::Utf8)?;
            c.as_any().downcast_ref::<StringArray>().cloned().context("ip_owners: not a string column")
        };
        let (from, to) = (int(0)?, int(1)?);
        let cols: Vec<StringArray> = (2..11).map(text).collect::<anyhow::Result<_>>()?;
        for r in 0..b.num_rows() {
            let s = |c: usize| (!cols[c].is_null(r)).then(|| cols[c].value(r).to_string());
            let owner = Owner {
                node: s(0),
                namespace: s(1),
                pod: s(2),
                pod_uid: s(3),
                workload_kind: s(4),
                workload: s(5),
                container_id: s(6),
                service: s(7),
                source: if s(8).as_deref() == Some("kube") { Source::Kube } else { Source::Node },
            };
            out.push(Interval {
                valid_from: from.value(r),
                valid_to: (!to.is_null(r)).then(|| to.value(r)),
                owner: Arc::new(owner),
            });
        }
    }
    Ok(out)
}

/// RFC 3339 with `Z` or a numeric offset, or "now".
fn parse_time(s: &str) -> anyhow::Result<UnixNanos> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_ns());
    }
    let bad = || format!("--at: cannot read {s:?} as a time (expected RFC 3339 like 2026-11-24T14:03:00Z, or \"now\")");
    // humantime reads UTC only: a +hh:mm / -hh:mm offset is applied here.
    let (utc, offset_s) = match s.len().checked_sub(6).map(|i| s.split_at(i)) {
        Some((head, off)) if off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) && &off[3..4] == ":" => {
            let h: i64 = off[1..3].parse().ok().with_context(bad)?;
            let m: i64 = off[4..6].parse().ok().with_context(bad)?;
            if h > 23 || m > 59 {
                bail!(bad());
            }
            let sign = if off.starts_with('-') { -1 } else { 1 };
            (format!("{head}Z"), sign * (h * 3600 + m * 60))
        }
        Some(_) | None => (s.to_string(), 0),
    };
    let t = humantime::parse_rfc3339(&utc).ok().with_context(bad)?;
    let ns = t.duration_since(UNIX_EPOCH).ok().with_context(bad)?.as_nanos();
    let ns = i64::try_from(ns).ok().with_context(bad)?;
    Ok(ns - offset_s * 1_000_000_000)
}

fn time(ns: UnixNanos) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

fn json_row(ip: IpAddr, iv: &Interval) -> serde_json::Value {
    let o = &iv.owner;
    serde_json::json!({
        "ip": ip.to_string(),
        "valid_from": time(iv.valid_from),
        "valid_to": iv.valid_to.map(time),
        "valid_from_ns": iv.valid_from,
        "valid_to_ns": iv.valid_to,
        "node": o.node,
        "namespace": o.namespace,
        "pod": o.pod,
        "pod_uid": o.pod_uid,
        "workload_kind": o.workload_kind,
        "workload": o.workload,
        "container_id": o.container_id,
        "service": o.service,
        "source": o.source.name(),
    })
}

fn table(out: &mut impl Write, rows: &[Interval]) -> std::io::Result<()> {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![[
        "FROM".to_string(),
        "TO".into(),
        "NAMESPACE".into(),
        "POD / SERVICE".into(),
        "WORKLOAD".into(),
        "CONTAINER".into(),
        "NODE".into(),
        "SOURCE".into(),
    ]];
    for iv in rows {
        let o = &iv.owner;
        let workload = match (&o.workload_kind, &o.workload) {
            (Some(k), Some(w)) => format!("{k}/{w}"),
            (None, Some(w)) => w.clone(),
            (Some(_), None) | (None, None) => "-".into(),
        };
        let who = o.pod.clone().or_else(|| o.service.as_ref().map(|s| format!("service/{s}")));
        lines.push([
            time(iv.valid_from),
            iv.valid_to.map_or_else(|| "(held)".into(), time),
            dash(&o.namespace),
            dash(&who),
            workload,
            o.container_id.as_deref().map_or_else(|| "-".into(), |c| c.chars().take(12).collect()),
            dash(&o.node),
            o.source.name().into(),
        ]);
    }
    let mut widths = [0usize; 8];
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for l in &lines {
        let cells: Vec<String> = l.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn times_with_offsets_and_errors() {
        let z = parse_time("2026-11-24T14:03:00Z").unwrap();
        assert_eq!(parse_time("2026-11-24T16:03:00+02:00").unwrap(), z);
        assert_eq!(parse_time("2026-11-24T09:03:00-05:00").unwrap(), z);
        assert_eq!(parse_time("2026-11-24T14:03:00.5Z").unwrap(), z + 500_000_000);
        assert_eq!(time(z), "2026-11-24T14:03:00.000Z");
        let n = parse_time("now").unwrap();
        assert!((n - now_ns()).abs() < 60_000_000_000);
        for bad in ["yesterday", "2026-13-01T00:00:00Z", "2026-11-24T14:03:00+25:00", "", "1700000000"] {
            let e = parse_time(bad).unwrap_err().to_string();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
