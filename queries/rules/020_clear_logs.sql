-- id: TL-K8S-020
-- title: Log files cleared
-- severity: medium
-- tactic: Defense evasion
-- technique: Clear container logs
-- mitre: T1070.002
-- tables: file_activity
-- description: A file under /var/log was deleted, or opened with O_TRUNC (truncated to zero, e.g.
--   `> /var/log/auth.log`), outside log rotation.
-- false_positives: logrotate, journald vacuuming, kubelet rotating container logs.
-- suppress: 10m

SELECT * FROM file_activity
WHERE path LIKE '/var/log/%'
  AND (kind = 'file_unlink' OR (kind = 'file_open' AND (open_flags & 512) != 0))
  AND comm NOT IN ('logrotate', 'systemd-journal', 'journalctl', 'kubelet', 'containerd')
