-- id: TL-K8S-014
-- title: nsenter executed in a container
-- severity: high
-- tactic: Privilege escalation
-- technique: Privileged container
-- mitre: T1611
-- tables: process_activity
-- description: nsenter (or unshare with a target) was executed inside a container, typically
--   `nsenter -t 1 -m -u -i -n sh` from a privileged pod sharing the host pid namespace.
-- false_positives: Node debugging pods (kubectl debug node/...).
-- suppress: 30m

SELECT * FROM process_activity
WHERE kind = 'exec' AND container_id IS NOT NULL AND comm IN ('nsenter', 'chroot')
