-- id: TL-K8S-015
-- title: Host device or filesystem mounted from a container
-- severity: critical
-- tactic: Privilege escalation
-- technique: hostPath mount
-- mitre: T1611
-- tables: kernel_activity
-- description: A process in a container mounted a block device or a disk filesystem (ext4, xfs, btrfs),
--   i.e. the node's disk: from there the host's files are writable. The runtime's own mounts while
--   setting up the container (runc init) are excluded.
-- false_positives: CSI node plugins and storage agents running privileged.
-- suppress: 30m
-- dedup: target

SELECT * FROM kernel_activity
WHERE kind = 'mount'
  AND container_id IS NOT NULL
  AND comm NOT LIKE 'runc%'
  AND (source LIKE '/dev/%' AND source NOT IN ('/dev/null', '/dev/pts', '/dev/shm', '/dev/mqueue')
       OR fstype IN ('ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'vfat', 'ntfs', 'zfs'))
