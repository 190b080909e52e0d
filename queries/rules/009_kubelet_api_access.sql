-- id: TL-K8S-009
-- title: Container connects to a kubelet API
-- severity: high
-- tactic: Discovery
-- technique: Access Kubelet API
-- mitre: T1613
-- tables: network_activity
-- description: A container connected to a kubelet's API (10250, read-only 10255): with weak kubelet
--   authorization this lists pods and runs commands in any container of the node.
-- false_positives: Metrics collectors (metrics-server, Prometheus node scraping) do this on purpose.
-- suppress: 1h
-- dedup: remote_ip

SELECT * FROM network_activity
WHERE kind = 'net_connect'
  AND container_id IS NOT NULL
  AND remote_port IN (10250, 10255)
