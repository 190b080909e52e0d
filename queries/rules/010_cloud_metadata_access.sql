-- id: TL-K8S-010
-- title: Container connects to the cloud instance metadata service
-- severity: medium
-- tactic: Credential access
-- technique: Access managed identity credentials
-- mitre: T1552.005
-- tables: network_activity
-- description: A container reached the instance metadata service (169.254.169.254, AWS ECS 169.254.170.2,
--   IPv6 fd00:ec2::254), where node credentials and cloud identity tokens are served.
-- false_positives: Cloud SDKs in pods without workload identity; node agents running in pods.
-- suppress: 1h

SELECT * FROM network_activity
WHERE kind IN ('net_connect', 'net_udp_send')
  AND container_id IS NOT NULL
  AND remote_ip IN ('169.254.169.254', '169.254.170.2', 'fd00:ec2::254')
