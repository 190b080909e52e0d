-- id: TL-K8S-019
-- title: Kernel module loaded
-- severity: high
-- tactic: Persistence
-- technique: Privileged container
-- mitre: T1547.006
-- tables: kernel_activity
-- description: A kernel module load was attempted (init_module / finit_module). From a container this is an
--   escape; on the node outside boot it is a rootkit signal.
-- false_positives: Node boot, CNI plugins and storage drivers loading their modules (kube-proxy ipvs,
--   iptables helpers), modprobe by the kernel's request.
-- suppress: 1h
-- dedup: comm

SELECT * FROM kernel_activity
WHERE kind = 'module_load'
