-- id: TL-K8S-024
-- title: Fileless execution
-- severity: high
-- tactic: Defense evasion
-- technique: Application exploit (RCE)
-- mitre: T1620
-- tables: process_activity
-- description: A program was executed from a memfd or from a file deleted while it runs: nothing on disk
--   to scan, the way in-memory implants and droppers run.
-- false_positives: Some runtimes re-exec themselves from a memfd (runc's cloned binary: excluded by name).
-- suppress: 30m

SELECT * FROM process_activity
WHERE kind = 'exec'
  AND (array_has(flags, 'exe_memfd') OR array_has(flags, 'exe_deleted') OR fileless)
  AND comm NOT LIKE 'runc%'
