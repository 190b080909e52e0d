-- Rare processes per workload over the last 7 days: executables a workload ran in at most 2 containers
-- and 3 times, with when they were first and last seen. Start of most drift hunts.
SELECT namespace, workload_kind, workload, exe, count(*) AS execs,
       count(DISTINCT container_id) AS containers, min(time) AS first_seen, max(time) AS last_seen,
       first_value(cmdline ORDER BY time) AS example_cmdline
FROM process_activity
WHERE kind = 'exec'
  AND container_id IS NOT NULL
  AND time >= now() - INTERVAL '7 days'
  AND date >= to_char(now() - INTERVAL '7 days', '%Y-%m-%d')
GROUP BY namespace, workload_kind, workload, exe
HAVING count(*) <= 3 AND count(DISTINCT container_id) <= 2
ORDER BY first_seen DESC
LIMIT 200
