-- Outbound destinations first seen in the last 24 hours per workload (never contacted in the 7 days
-- before): new peers of a workload are where exfiltration and C2 show up.
WITH recent AS (
  SELECT namespace, workload, remote_ip, remote_port, min(time) AS first_seen, count(*) AS connects,
         first_value(exe ORDER BY time) AS exe
  FROM network_activity
  WHERE kind = 'net_connect' AND family IN ('inet', 'inet6')
    AND time >= now() - INTERVAL '1 day'
    AND date >= to_char(now() - INTERVAL '1 day', '%Y-%m-%d')
  GROUP BY namespace, workload, remote_ip, remote_port
),
before AS (
  SELECT DISTINCT namespace, workload, remote_ip, remote_port
  FROM network_activity
  WHERE kind = 'net_connect'
    AND time < now() - INTERVAL '1 day' AND time >= now() - INTERVAL '8 days'
    AND date >= to_char(now() - INTERVAL '8 days', '%Y-%m-%d')
)
SELECT r.* FROM recent r
LEFT JOIN before b
  ON (r.namespace IS NOT DISTINCT FROM b.namespace) AND (r.workload IS NOT DISTINCT FROM b.workload)
 AND r.remote_ip = b.remote_ip AND r.remote_port = b.remote_port
WHERE b.remote_ip IS NULL
ORDER BY r.first_seen DESC
LIMIT 500
