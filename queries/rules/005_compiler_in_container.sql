-- id: TL-K8S-005
-- title: Compiler run in a running container
-- severity: medium
-- tactic: Execution
-- technique: Application exploit (RCE)
-- mitre: T1027.004
-- tables: process_activity
-- description: A compiler or assembler ran in a container: attackers compile exploits and implants on the
--   target to evade image scanning (compile after delivery).
-- false_positives: Build containers (CI runners, kaniko), JIT-less language runtimes calling cc.
-- suppress: 30m

SELECT * FROM process_activity
WHERE kind = 'exec'
  AND container_id IS NOT NULL
  AND comm IN ('cc', 'gcc', 'g++', 'c++', 'clang', 'clang++', 'tcc', 'cc1', 'as', 'ld', 'go', 'rustc')
