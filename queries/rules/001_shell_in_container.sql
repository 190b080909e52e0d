-- id: TL-K8S-001
-- title: Shell started in a container
-- severity: medium
-- tactic: Execution
-- technique: bash or cmd inside container
-- mitre: T1059.004
-- tables: process_activity
-- description: An interactive or scripted shell was executed inside a container. Attackers who gain code
--   execution (RCE, exec access) usually start a shell first. comm is the name the program was started
--   as, so busybox applets (sh -> busybox) are named as the shell.
-- false_positives: Images whose entrypoint or health checks are shell scripts; debugging sessions.
-- suppress: 10m
-- dedup: cmdline

SELECT * FROM process_activity
WHERE kind = 'exec'
  AND container_id IS NOT NULL
  AND comm IN ('sh', 'bash', 'dash', 'ash', 'zsh', 'ksh', 'mksh', 'csh', 'tcsh', 'fish')
