-- id: TL-K8S-017
-- title: Container runtime socket used from a container
-- severity: critical
-- tactic: Privilege escalation
-- technique: Writable hostPath mount
-- mitre: T1611
-- tables: network_activity
-- description: A process in a container connected to the Docker, containerd or CRI-O socket: with it one
--   starts a privileged container on the node.
-- false_positives: Monitoring agents and CI (docker-in-docker) that mount the runtime socket on purpose.
-- suppress: 30m

SELECT * FROM network_activity
WHERE kind = 'net_connect'
  AND container_id IS NOT NULL
  AND family = 'unix'
  AND regexp_like(unix_path, '(docker|containerd|crio|cri-dockerd|podman)\.sock$')
