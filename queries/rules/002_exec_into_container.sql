-- id: TL-K8S-002
-- title: Process exec'd into a running container
-- severity: medium
-- tactic: Execution
-- technique: Exec into container
-- mitre: T1609
-- tables: process_activity
-- description: A process entered a running container through the runtime (kubectl exec, crictl exec,
--   ctr task exec): its parent is the OCI runtime started with `exec` (runc/crun exec), itself a child of
--   the runtime shim (containerd-shim*, conmon). The entrypoint is excluded: the runtime that starts it
--   runs `create`/`start`/`init`, never `exec`.
-- false_positives: Liveness/readiness probes of type exec, operators that exec into pods.
-- suppress: 10m
-- dedup: cmdline

SELECT * FROM process_activity
WHERE kind = 'exec'
  AND container_id IS NOT NULL
  AND regexp_like(parent_exe, '/(runc|crun|youki)$')
  AND regexp_like(parent_cmdline, '(^|\s)exec(\s|$)')
