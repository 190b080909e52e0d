//! Workload identity for events: cgroup, container, pod, workload.
