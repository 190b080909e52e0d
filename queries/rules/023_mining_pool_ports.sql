-- id: TL-K8S-023
-- title: Connection to a mining pool port
-- severity: medium
-- tactic: Impact
-- technique: Resource hijacking
-- mitre: T1496
-- tables: network_activity
-- description: A container connected to a port mining pools use for stratum (3333, 4444, 5555, 7777,
--   14444, 45700).
-- false_positives: Other services on those ports (4444 and 5555 are also debug and adb ports).
-- suppress: 1h
-- dedup: remote_ip

SELECT * FROM network_activity
WHERE kind = 'net_connect'
  AND container_id IS NOT NULL
  AND protocol = 'tcp'
  AND remote_port IN (3333, 4444, 5555, 7777, 14444, 45700)
