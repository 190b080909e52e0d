#!/usr/bin/env python3
"""Independent reader of a tracelake Parquet lake (pyarrow, not arrow-rs).

usage: check_lake.py [--allow-temp] LAKE_DIR [EXPECT.json]

Reads every visible file and checks the layout (table/date=YYYY-MM-DD/hour=HH/
name.parquet, rows inside their partition's hour), that no temporary file is
visible, column types, sort order by time, zstd on every column chunk, page
indexes on every column, bloom filters on the id and address columns, and that
no event_id appears twice. EXPECT (optional) names row counts per table, the
exact event_id set per table, and values of given rows (hex of the bytes).
Prints a JSON summary on stdout; exits 1 with the reason on failure.
"""
import datetime as dt
import json
import os
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq

TS = pa.timestamp("ns", tz="UTC")
COMMON = {
    "time": TS, "event_id": pa.string(), "node": pa.string(), "kind": pa.string(), "class_uid": pa.int32(),
    "count": pa.uint64(), "summary": pa.bool_(), "first_time": TS, "last_time": TS, "flags": pa.list_(pa.string()),
    "namespace": pa.string(), "pod": pa.string(), "pod_uid": pa.string(), "workload_kind": pa.string(),
    "workload": pa.string(), "container_id": pa.string(), "container_name": pa.string(), "image": pa.string(),
    "workload_source": pa.string(), "image_digest": pa.string(), "pod_ip": pa.string(), "peer_pod": pa.string(),
    "peer_namespace": pa.string(), "peer_workload_kind": pa.string(), "peer_workload": pa.string(),
    "peer_container_id": pa.string(), "peer_service": pa.string(),
    "cgroup_id": pa.uint64(), "pid": pa.uint32(), "tid": pa.uint32(), "ppid": pa.uint32(), "uid": pa.uint32(),
    "euid": pa.uint32(), "gid": pa.uint32(), "comm": pa.string(), "exe": pa.string(), "exe_raw": pa.binary(),
    "parent_exe": pa.string(), "ancestor_exes": pa.list_(pa.string()), "ancestor_pids": pa.list_(pa.uint32()),
}
PER_TABLE = {
    "process_activity": {"cmdline": pa.string(), "args": pa.list_(pa.string()), "args_raw": pa.binary(),
                         "cwd": pa.string(), "exit_code": pa.uint32(), "child_pid": pa.uint32()},
    "file_activity": {"path": pa.string(), "path_raw": pa.binary(), "path2": pa.string(), "open_flags": pa.uint32(),
                      "mode": pa.uint32(), "owner_uid": pa.int64(), "ret": pa.int64()},
    "network_activity": {"local_ip": pa.string(), "local_port": pa.uint16(), "remote_ip": pa.string(),
                         "remote_port": pa.uint16(), "protocol": pa.string(), "bytes_sent": pa.uint64()},
    "kernel_activity": {"syscall_nr": pa.uint32(), "syscall_args": pa.list_(pa.uint64()), "target": pa.string(),
                        "cap_effective": pa.uint64(), "target_pid": pa.int32()},
    "detection_finding": {"time": TS, "finding_id": pa.string(), "event_ids": pa.list_(pa.string())},
    "ip_ownership": {"ip": pa.string(), "valid_from": TS, "valid_to": TS, "pod_uid": pa.string(),
                     "workload": pa.string(), "service": pa.string(), "source": pa.string(), "seq": pa.uint64(),
                     "event_id": pa.string()},
}
PER_TABLE["dns_activity"] = PER_TABLE["network_activity"]
EVENT_TABLES = {"process_activity", "file_activity", "network_activity", "dns_activity", "kernel_activity"}
BLOOM = {"event_id", "container_id", "pod_uid", "local_ip", "remote_ip", "ip", "finding_id"}
PART = re.compile(r"^date=(\d{4})-(\d{2})-(\d{2})$|^hour=(\d{2})$")


def fail(msg):
    print("check_lake: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check_file(table, date, hour, path, summary):
    pf = pq.ParquetFile(path)
    md = pf.metadata
    schema = pf.schema_arrow
    expected = dict(PER_TABLE[table])
    if table in EVENT_TABLES:
        expected.update(COMMON)
    for name, ty in expected.items():
        if schema.field(name).type != ty:
            fail(f"{path}: column {name} is {schema.field(name).type}, want {ty}")
    t = pf.read()
    if t.num_rows != md.num_rows:
        fail(f"{path}: read {t.num_rows} rows, footer says {md.num_rows}")
    time_col = "valid_from" if table == "ip_ownership" else "time"
    times = t.column(time_col).cast(pa.int64()).to_pylist()
    if times != sorted(times):
        fail(f"{path}: rows not sorted by {time_col}")
    start = dt.datetime(int(date[0]), int(date[1]), int(date[2]), int(hour), tzinfo=dt.timezone.utc)
    lo = int(start.timestamp()) * 10**9
    if times and (times[0] < lo or times[-1] >= lo + 3600 * 10**9):
        fail(f"{path}: rows outside the partition's hour")
    for rg in range(md.num_row_groups):
        g = md.row_group(rg)
        for c in range(g.num_columns):
            col = g.column(c)
            name = col.path_in_schema.split(".")[0]
            if col.compression != "ZSTD":
                fail(f"{path}: column {col.path_in_schema} compressed with {col.compression}")
            if not (col.has_column_index and col.has_offset_index):
                fail(f"{path}: column {col.path_in_schema} has no page index")
            if name in BLOOM and col.path_in_schema == name:
                if col.bloom_filter_offset is None or col.bloom_filter_offset <= 0:
                    fail(f"{path}: column {name} has no bloom filter")
                summary["bloom_filters"] += 1
        summary["row_groups"] += 1
    kv = md.metadata or {}
    if b"ARROW:schema" not in kv:
        fail(f"{path}: no arrow schema in the footer")
    summary["files"] += 1
    summary["rows"][table] = summary["rows"].get(table, 0) + t.num_rows
    summary["bytes"] += os.path.getsize(path)
    if "event_id" in t.column_names:
        return t
    return None


def row_at(t, i):
    """Row i as Python values; timestamps as int64 nanoseconds (datetime has only microseconds)."""
    row = {}
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        row[name] = col[i].as_py()
    return row


def hexed(v):
    if v is None:
        return None
    if isinstance(v, list):
        return [hexed(x) for x in v]
    if isinstance(v, str):
        return v.encode("utf-8").hex()
    if isinstance(v, bytes):
        return v.hex()
    return v


def main():
    args = sys.argv[1:]
    allow_temp = "--allow-temp" in args
    args = [a for a in args if a != "--allow-temp"]
    root = args[0]
    expect = json.load(open(args[1])) if len(args) > 1 else {}
    summary = {"temp_files": 0, "files": 0, "rows": {}, "bytes": 0, "row_groups": 0, "bloom_filters": 0, "partitions": 0}
    ids = {}
    rows_by_id = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            # Hive convention: folders starting with `_` or `.` hold no data (the lake service's commit journal).
            dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        # Readers skip dot files (Hive convention): with --allow-temp, so does this check.
        temps = [f for f in filenames if f.startswith(".")]
        if temps and not allow_temp:
            fail(f"temporary file left: {os.path.join(dirpath, temps[0])}")
        summary["temp_files"] += len(temps)
        filenames = [f for f in filenames if not f.startswith(".")]
        parts = [] if rel == "." else rel.split(os.sep)
        if len(parts) < 3:
            if filenames:
                fail(f"files outside a partition: {dirpath}: {filenames}")
            continue
        table, date_dir, hour_dir = parts[0], parts[1], parts[2]
        if table not in PER_TABLE or len(parts) != 3:
            fail(f"unexpected directory {rel}")
        d, h = PART.match(date_dir), PART.match(hour_dir)
        if not d or not d.group(1) or not h or not h.group(4):
            fail(f"not a Hive partition: {rel}")
        summary["partitions"] += 1
        for f in sorted(filenames):
            if not f.endswith(".parquet"):
                fail(f"unexpected file {f} in {rel}")
            t = check_file(table, d.groups()[:3], h.group(4), os.path.join(dirpath, f), summary)
            # An ip_ownership version is written again by `tracelake run` after a restart (the ip_owners view
            # takes one); the central lake drops such repeats by event_id.
            if t is not None and table != "ip_ownership":
                want = {v["event_id"] for v in expect.get("values", []) if v["table"] == table}
                for i, eid in enumerate(t.column("event_id").to_pylist()):
                    if eid in ids:
                        fail(f"event_id {eid} appears twice ({ids[eid]} and {table})")
                    ids[eid] = table
                    if eid in want:
                        rows_by_id[eid] = row_at(t, i)
    for table, n in expect.get("rows", {}).items():
        if summary["rows"].get(table, 0) != n:
            fail(f"{table}: {summary['rows'].get(table, 0)} rows, want {n}")
    for table, want in expect.get("event_ids", {}).items():
        got = {e for e, t in ids.items() if t == table}
        if got != set(want):
            fail(f"{table}: event ids differ: {len(got - set(want))} unexpected, {len(set(want) - got)} missing")
    for v in expect.get("values", []):
        row = rows_by_id.get(v["event_id"])
        if row is None:
            fail(f"row {v['event_id']} not found in {v['table']}")
        got = hexed(row[v["column"]])
        if got != v["hex"]:
            fail(f"{v['table']} {v['event_id']} {v['column']}: got {str(got)[:200]}, want {str(v['hex'])[:200]}")
    summary["event_ids"] = len(ids)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
