-- id: TL-K8S-013
-- title: nsenter or setns from a container
-- severity: high
-- tactic: Privilege escalation
-- technique: Privileged container
-- mitre: T1611
-- tables: kernel_activity
-- description: A process in a container called setns(2) (entering other namespaces, with nsenter or
--   directly): in a privileged container with the host pid namespace this is how one escapes to the host.
--   The runtime's own setns while starting a container or an exec (runc init) is excluded.
-- false_positives: Privileged node agents (CNI plugins, CSI drivers) that enter the host namespaces.
-- suppress: 30m

SELECT * FROM kernel_activity
WHERE kind = 'setns'
  AND container_id IS NOT NULL
  AND comm NOT LIKE 'runc%'
  AND NOT regexp_like(coalesce(exe, ''), '/(runc|crun|youki)$')
