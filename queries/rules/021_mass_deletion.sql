-- id: TL-K8S-021
-- title: Mass file deletion
-- severity: high
-- tactic: Impact
-- technique: Data destruction
-- mitre: T1485
-- tables: file_activity
-- description: One process deleted 100 or more files within a minute (summaries count their repeats), as
--   wipers and ransomware do. Live, the rule sees the last minute of batches.
-- false_positives: Cache cleaners, package managers, build tools cleaning their output.
-- suppress: 30m
-- window: 60s
-- dedup: pid

SELECT min(time) AS time, array_agg(event_id) AS event_ids,
       node, namespace, pod, pod_uid, workload_kind, workload, container_id, image, pid, exe,
       CAST(sum(count) AS BIGINT) AS deleted
FROM file_activity
WHERE kind = 'file_unlink'
GROUP BY node, namespace, pod, pod_uid, workload_kind, workload, container_id, image, pid, exe,
         date_bin(INTERVAL '1 minute', time)
HAVING sum(count) >= 100
