-- id: TL-K8S-008
-- title: Container connects to the Kubernetes API server
-- severity: low
-- tactic: Discovery
-- technique: Access the K8S API server
-- mitre: T1613
-- tables: network_activity
-- description: A container connected to port 6443, or to port 443 of the first address of a private
--   service range (x.y.0.1, where clusters put the `kubernetes` service: 10.96.0.1, 10.0.0.1,
--   172.20.0.1...). Copy this rule with your cluster's API service IP for an exact match.
-- false_positives: Operators, controllers, CI and service meshes talk to the API server.
-- suppress: 1h

SELECT * FROM network_activity
WHERE kind = 'net_connect'
  AND container_id IS NOT NULL
  AND family IN ('inet', 'inet6')
  AND (remote_port = 6443
       OR (remote_port = 443
           AND regexp_like(remote_ip, '^(10\.[0-9]+|172\.(1[6-9]|2[0-9]|3[01])|192\.168)\.0\.1$')))
