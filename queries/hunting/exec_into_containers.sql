-- Every process exec'd into a container through the runtime in the last day (kubectl exec and alike),
-- with the command and who was on the node.
SELECT time, node, namespace, pod, workload, container_id, pid, exe, cmdline, parent_exe, parent_cmdline
FROM process_activity
WHERE kind = 'exec' AND container_id IS NOT NULL
  AND regexp_like(parent_exe, '/(runc|crun|youki)$') AND regexp_like(parent_cmdline, '(^|\s)exec(\s|$)')
  AND time >= now() - INTERVAL '1 day'
  AND date >= to_char(now() - INTERVAL '1 day', '%Y-%m-%d')
ORDER BY time DESC
LIMIT 500
