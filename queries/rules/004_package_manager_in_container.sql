-- id: TL-K8S-004
-- title: Package manager run in a running container
-- severity: medium
-- tactic: Persistence
-- technique: Backdoor container
-- mitre: T1105
-- tables: process_activity
-- description: A package manager ran inside a container after it started: containers are immutable, so
--   installing software at run time is drift, often an attacker fetching tools.
-- false_positives: Images that install packages in their entrypoint (bad practice, but seen); CI runners.
-- suppress: 30m

SELECT * FROM process_activity
WHERE kind = 'exec'
  AND container_id IS NOT NULL
  AND comm IN ('apt', 'apt-get', 'dpkg', 'yum', 'dnf', 'rpm', 'microdnf', 'apk', 'zypper', 'pacman',
               'pip', 'pip3', 'npm', 'gem', 'cargo')
