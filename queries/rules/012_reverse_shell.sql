-- id: TL-K8S-012
-- title: Reverse shell in a container
-- severity: critical
-- tactic: Execution
-- technique: bash or cmd inside container
-- mitre: T1059.004
-- tables: process_activity, network_activity
-- description: Approximation (events carry no file descriptor table): a shell was executed by a process
--   that made an outbound TCP connection within 30 seconds before or after, the process itself (nc -e,
--   bash /dev/tcp redirection: same pid and start time) or its parent (python pty.spawn, socat exec).
--   Live, the rule sees the last 30 seconds of batches.
-- false_positives: Scripts that open TCP connections from shell (/dev/tcp health checks), wrappers that
--   connect and then run a shell script.
-- suppress: 10m
-- window: 30s
-- dedup: pid

SELECT e.time, [e.event_id, c.event_id] AS event_ids, e.node, e.namespace, e.pod, e.pod_uid,
       e.workload_kind, e.workload, e.container_id, e.image, e.pid, e.exe, e.cmdline,
       c.remote_ip || ':' || CAST(c.remote_port AS VARCHAR) AS peer
FROM process_activity e
JOIN network_activity c
  ON c.container_id = e.container_id
 AND ((c.pid = e.pid AND c.proc_start_ns = e.proc_start_ns) OR c.pid = e.ppid)
WHERE e.kind = 'exec'
  AND e.container_id IS NOT NULL
  AND e.comm IN ('sh', 'bash', 'dash', 'ash', 'zsh', 'ksh', 'mksh')
  AND c.kind = 'net_connect'
  AND c.protocol = 'tcp'
  AND c.family IN ('inet', 'inet6')
  AND c.time BETWEEN e.time - INTERVAL '30 seconds' AND e.time + INTERVAL '30 seconds'
