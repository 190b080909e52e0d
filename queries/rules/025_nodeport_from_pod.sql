-- id: TL-K8S-025
-- title: Connection to a NodePort from inside the cluster
-- severity: low
-- tactic: Lateral movement
-- technique: Cluster internal networking
-- mitre: T1210
-- tables: network_activity
-- description: A container connected to a port of the NodePort range (30000-32767). Pods normally reach
--   services by their ClusterIP and port; NodePorts from inside the cluster are how one reaches services
--   that network policies meant to keep apart, or probes exposed services.
-- false_positives: Clients configured with a node address and NodePort; ingress controllers in some setups.
-- suppress: 10m
-- dedup: remote_port

SELECT * FROM network_activity
WHERE kind = 'net_connect'
  AND container_id IS NOT NULL
  AND family IN ('inet', 'inet6')
  AND remote_port BETWEEN 30000 AND 32767
