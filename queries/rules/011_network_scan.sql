-- id: TL-K8S-011
-- title: Network scanning from a container
-- severity: medium
-- tactic: Discovery
-- technique: Network mapping
-- mitre: T1046
-- tables: network_activity
-- description: One process in a container tried 20 or more distinct addresses, or 20 or more ports of
--   fewer addresses, within one minute (aligned minutes: a scan straddling two minutes counts in each).
--   Live, the rule sees the last minute of batches.
-- false_positives: Service discovery and health checking agents, load testers.
-- suppress: 10m
-- window: 60s
-- dedup: pid

SELECT min(time) AS time, array_agg(event_id) AS event_ids,
       node, namespace, pod, pod_uid, workload_kind, workload, container_id, image, pid, exe,
       count(DISTINCT remote_ip) AS peers, count(DISTINCT remote_port) AS ports
FROM network_activity
WHERE kind = 'net_connect' AND container_id IS NOT NULL AND family IN ('inet', 'inet6')
GROUP BY node, namespace, pod, pod_uid, workload_kind, workload, container_id, image, pid, exe,
         date_bin(INTERVAL '1 minute', time)
HAVING count(DISTINCT remote_ip) >= 20 OR count(DISTINCT remote_port) >= 20
