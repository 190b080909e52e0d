-- id: TL-K8S-022
-- title: Crypto miner executed
-- severity: high
-- tactic: Impact
-- technique: Resource hijacking
-- mitre: T1496
-- tables: process_activity
-- description: A known miner (xmrig, cpuminer, ...) was executed, or a command line names a stratum pool
--   (stratum+tcp://, stratum+ssl://) or miner options.
-- false_positives: Hardly any in production clusters.
-- suppress: 1h

SELECT * FROM process_activity
WHERE kind IN ('exec', 'process_snapshot')
  AND (comm IN ('xmrig', 'xmr-stak', 'minerd', 'cpuminer', 'ethminer', 'nbminer', 't-rex', 'lolminer',
                'phoenixminer', 'ccminer', 'cgminer', 'bfgminer', 'nanominer', 'teamredminer', 'gminer')
       OR cmdline LIKE '%stratum+tcp://%' OR cmdline LIKE '%stratum+ssl://%' OR cmdline LIKE '%stratum2+tcp://%'
       OR cmdline LIKE '%--donate-level%' OR cmdline LIKE '%--cpu-max-threads-hint%')
