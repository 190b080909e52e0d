-- id: TL-K8S-003
-- title: SSH server started in a container
-- severity: high
-- tactic: Execution
-- technique: SSH server running inside container
-- mitre: T1021.004
-- tables: process_activity
-- description: An SSH daemon (OpenSSH sshd, dropbear) was executed in a container: a backdoor that
--   survives losing the original foothold.
-- false_positives: Bastion or git-over-ssh images that run sshd on purpose.
-- suppress: 1h

SELECT * FROM process_activity
WHERE kind IN ('exec', 'process_snapshot')
  AND container_id IS NOT NULL
  AND (comm IN ('sshd', 'dropbear') OR regexp_like(exe, '/(sshd|dropbear)$'))
