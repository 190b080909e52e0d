-- Findings of the last 7 days per workload and rule: which workloads to look at first.
SELECT namespace, workload, rule_id, rule_name, max(severity_id) AS severity_id, count(*) AS findings,
       min(time) AS first_seen, max(time) AS last_seen
FROM detection_finding
WHERE time >= now() - INTERVAL '7 days'
GROUP BY namespace, workload, rule_id, rule_name
ORDER BY severity_id DESC, findings DESC
