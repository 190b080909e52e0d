//! The built-in rule pack (`queries/rules/`) and hunting queries (`queries/hunting/`), embedded in the binary.

use std::path::Path;

use crate::rule::{Rule, RuleError};

/// (file name, text) of every built-in rule; `builtin_list_matches_the_directory` keeps it complete.
pub const RULES: &[(&str, &str)] = &[
    ("001_shell_in_container.sql", include_str!("../rules/001_shell_in_container.sql")),
    ("002_exec_into_container.sql", include_str!("../rules/002_exec_into_container.sql")),
    ("003_ssh_server_in_container.sql", include_str!("../rules/003_ssh_server_in_container.sql")),
    ("004_package_manager_in_container.sql", include_str!("../rules/004_package_manager_in_container.sql")),
    ("005_compiler_in_container.sql", include_str!("../rules/005_compiler_in_container.sql")),
    ("006_service_account_token_read.sql", include_str!("../rules/006_service_account_token_read.sql")),
    ("007_secrets_read.sql", include_str!("../rules/007_secrets_read.sql")),
    ("008_kubernetes_api_access.sql", include_str!("../rules/008_kubernetes_api_access.sql")),
    ("009_kubelet_api_access.sql", include_str!("../rules/009_kubelet_api_access.sql")),
    ("010_cloud_metadata_access.sql", include_str!("../rules/010_cloud_metadata_access.sql")),
    ("011_network_scan.sql", include_str!("../rules/011_network_scan.sql")),
    ("012_reverse_shell.sql", include_str!("../rules/012_reverse_shell.sql")),
    ("013_nsenter_host_namespaces.sql", include_str!("../rules/013_nsenter_host_namespaces.sql")),
    ("014_nsenter_exec.sql", include_str!("../rules/014_nsenter_exec.sql")),
    ("015_host_device_mount.sql", include_str!("../rules/015_host_device_mount.sql")),
    ("016_release_agent_core_pattern.sql", include_str!("../rules/016_release_agent_core_pattern.sql")),
    ("017_runtime_socket_access.sql", include_str!("../rules/017_runtime_socket_access.sql")),
    ("018_ptrace.sql", include_str!("../rules/018_ptrace.sql")),
    ("019_kernel_module_load.sql", include_str!("../rules/019_kernel_module_load.sql")),
    ("020_clear_logs.sql", include_str!("../rules/020_clear_logs.sql")),
    ("021_mass_deletion.sql", include_str!("../rules/021_mass_deletion.sql")),
    ("022_crypto_miner_process.sql", include_str!("../rules/022_crypto_miner_process.sql")),
    ("023_mining_pool_ports.sql", include_str!("../rules/023_mining_pool_ports.sql")),
    ("024_fileless_execution.sql", include_str!("../rules/024_fileless_execution.sql")),
    ("025_nodeport_from_pod.sql", include_str!("../rules/025_nodeport_from_pod.sql")),
];

/// Ready hunting queries: (file name, text).
pub const HUNTING: &[(&str, &str)] = &[
    ("rare_processes_per_workload.sql", include_str!("../hunting/rare_processes_per_workload.sql")),
    ("first_seen_destinations.sql", include_str!("../hunting/first_seen_destinations.sql")),
    ("who_talked_to_ip.sql", include_str!("../hunting/who_talked_to_ip.sql")),
    ("exec_into_containers.sql", include_str!("../hunting/exec_into_containers.sql")),
    ("findings_by_workload.sql", include_str!("../hunting/findings_by_workload.sql")),
];

/// The built-in rules, parsed (a parse error is a bug caught by the tests).
pub fn rules() -> Result<Vec<Rule>, RuleError> {
    RULES.iter().map(|(name, text)| Rule::parse(&Path::new("builtin").join(name), text)).collect()
}
