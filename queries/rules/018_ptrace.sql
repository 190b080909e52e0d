-- id: TL-K8S-018
-- title: ptrace attach or memory write in a container
-- severity: high
-- tactic: Privilege escalation
-- technique: Process injection (ptrace)
-- mitre: T1055.008
-- tables: kernel_activity
-- description: A process in a container attached to another process (PTRACE_ATTACH, PTRACE_SEIZE) or
--   wrote its memory (PTRACE_POKETEXT/POKEDATA/POKEUSER): code injection, credential theft from memory,
--   or escape through a host process when the pid namespace is shared.
-- false_positives: Debuggers and profilers (gdb, strace, py-spy) in debug containers.
-- suppress: 30m

SELECT * FROM kernel_activity
WHERE kind = 'ptrace'
  AND container_id IS NOT NULL
  AND ptrace_request IN (4, 5, 6, 16, 16902)
