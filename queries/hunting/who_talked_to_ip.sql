-- Who talked to a given IP, and which workload owned that IP at the time (network_activity joined with
-- ip_owners, the current version of each ip_ownership interval, on the time range the address was held).
-- Replace 10.1.2.3 with the address.
SELECT n.time, n.node, n.namespace, n.pod, n.workload, n.container_id, n.pid, n.exe, n.kind,
       n.remote_ip, n.remote_port,
       o.namespace AS owner_namespace, o.pod AS owner_pod, o.workload_kind AS owner_workload_kind,
       o.workload AS owner_workload
FROM network_activity n
LEFT JOIN ip_owners o
  ON o.ip = n.remote_ip AND n.time >= o.valid_from AND n.time < coalesce(o.valid_to, now())
WHERE n.remote_ip = '10.1.2.3'
ORDER BY n.time
LIMIT 1000
