-- id: TL-K8S-016
-- title: Write to cgroup release_agent or kernel core_pattern
-- severity: critical
-- tactic: Privilege escalation
-- technique: Privileged container
-- mitre: T1611
-- tables: file_activity
-- description: A process opened for writing a cgroup v1 release_agent / notify_on_release, or
--   /proc/sys/kernel/core_pattern, uevent_helper or modprobe: classic container escapes that make the
--   kernel run a program of the attacker's on the host.
-- false_positives: Node setup agents configuring core dumps (systemd-coredump) at boot.
-- suppress: 30m
-- dedup: path

SELECT * FROM file_activity
WHERE kind = 'file_open'
  AND (open_flags & 3) != 0
  AND (path LIKE '%/release_agent' OR path LIKE '%/notify_on_release'
       OR path LIKE '%/proc/sys/kernel/core_pattern' OR path LIKE '%/sys/kernel/uevent_helper'
       OR path LIKE '%/proc/sys/kernel/modprobe')
