//! Loads an object with aya, fills its configuration maps, attaches hooks.

use std::os::unix::fs::MetadataExt;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use tracelake_bpf::abi;

use crate::SensorError;
use crate::config::{ClassName, FileAction, Scope, SensorConfig};
use crate::hooks::{Attach, HOOKS, Hook, MODULE_FALLBACK};
use crate::tracefs;

/// What got attached, and what this kernel lacks (reported, not fatal).
#[derive(Debug, Default)]
pub struct Attached {
    pub hooks: Vec<String>,
    pub missing: Vec<String>,
}

/// Loads `object` (the sensor, or the no-op floor) with map sizes from cfg.
pub fn load_object(object: &[u8], cfg: &SensorConfig) -> Result<Ebpf, SensorError> {
    tracefs::ensure_mounted()?;
    raise_memlock_on_old_kernels();
    let mut loader = EbpfLoader::new();
    loader.map_max_entries("tl_events", cfg.ring_buffer_bytes);
    loader.map_max_entries("tl_agg_a", cfg.aggregation.table_entries);
    loader.map_max_entries("tl_agg_b", cfg.aggregation.table_entries);
    loader.load(object).map_err(|e| SensorError::Load(Box::new(e)))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (later ones to the memory cgroup): there the limit is
/// raised, which needs CAP_SYS_RESOURCE. The agent's DaemonSet does not grant it, as the kernels it targets do
/// not need it; on an older kernel the warning says what to add.
fn raise_memlock_on_old_kernels() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (5, 11) {
        return;
    }
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::warn!(
            kernel = release.trim(),
            error = %std::io::Error::last_os_error(),
            "this kernel charges BPF maps to RLIMIT_MEMLOCK and the limit cannot be raised: grant CAP_SYS_RESOURCE \
             if loading fails (docs/deploy.md)"
        );
    }
}

/// The kernel-side configuration record for cfg.
pub fn kernel_config(cfg: &SensorConfig) -> Result<abi::Config, SensorError> {
    let classes = cfg.classes.iter().fold(0, |acc, c| {
        acc | match c {
            ClassName::Process => abi::CLASS_PROCESS,
            ClassName::File => abi::CLASS_FILE,
            ClassName::Network => abi::CLASS_NETWORK,
            ClassName::Privilege => abi::CLASS_PRIVILEGE,
        }
    });
    // init's namespace is the host's; where /proc/1 is out of reach (some
    // sandboxes), the sensor's own is, since it runs on the host.
    let host_mntns = std::fs::metadata("/proc/1/ns/mnt")
        .or_else(|_| std::fs::metadata("/proc/self/ns/mnt"))
        .map_err(|source| SensorError::Io { what: "stat /proc/self/ns/mnt", source })?
        .ino() as u32;
    Ok(abi::Config {
        classes,
        scope: match cfg.scope {
            Scope::All => abi::SCOPE_ALL,
            Scope::Containers => abi::SCOPE_CONTAINERS,
            Scope::Cgroups => abi::SCOPE_CGROUPS,
        },
        self_tgid: std::process::id(),
        host_mntns,
        argv_max: cfg.argv_max,
        aggregate: u32::from(cfg.aggregation.enabled),
        generation: 0,
        file_default: file_action(cfg.file.default),
        read_watch: u32::from(!cfg.file.watch_reads.is_empty() || cfg.file.default == FileAction::Reads),
        _pad0: 0,
    })
}

fn file_action(a: FileAction) -> u32 {
    match a {
        FileAction::Ignore => abi::FILE_IGNORE,
        FileAction::Writes => abi::FILE_WRITES,
        FileAction::Reads => abi::FILE_READS,
    }
}

/// Fills tl_config_map, tl_prefixes and tl_cgroups.
pub fn configure(ebpf: &mut Ebpf, cfg: &SensorConfig, kcfg: &abi::Config) -> Result<(), SensorError> {
    let mut config: Array<_, abi::Config> = map_mut(ebpf, "tl_config_map")?;
    config.set(0, kcfg, 0).map_err(|e| SensorError::map("tl_config_map", e))?;

    let mut prefixes: LpmTrie<_, [u8; abi::PREFIX_MAX], u32> = map_mut(ebpf, "tl_prefixes")?;
    let lists = [
        (&cfg.file.watch_writes, FileAction::Writes),
        (&cfg.file.watch_reads, FileAction::Reads),
        (&cfg.file.ignore, FileAction::Ignore),
    ];
    for (list, action) in lists {
        for p in list.iter() {
            let mut data = [0u8; abi::PREFIX_MAX];
            data[..p.len()].copy_from_slice(p.as_bytes());
            let key = Key::new((p.len() * 8) as u32, data);
            prefixes.insert(&key, file_action(action), 0).map_err(|e| SensorError::map("tl_prefixes", e))?;
        }
    }

    let mut cgroups: BpfHashMap<_, u64, u8> = map_mut(ebpf, "tl_cgroups")?;
    for id in &cfg.cgroup_ids {
        cgroups.insert(id, 1, 0).map_err(|e| SensorError::map("tl_cgroups", e))?;
    }
    Ok(())
}

fn map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, SensorError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or(SensorError::MissingMap(name))?;
    T::try_from(map).map_err(|e| SensorError::map(name, e))
}

/// The program that records every cgroup v2 directory's path at creation
/// (`tl_cgroup_paths`): attached whatever the classes, since every event's
/// identity stands on it.
pub const CGROUP_RECORD: Hook =
    Hook { program: "tl_cgroup_mkdir", attach: Attach::BtfTracePoint("cgroup_mkdir"), class: ClassName::Process };

/// Attaches [`CGROUP_RECORD`]; false (with a warning) where this kernel lacks it.
pub fn attach_cgroup_record(ebpf: &mut Ebpf) -> Result<bool, SensorError> {
    let btf = Btf::from_sys_fs().map_err(|e| SensorError::Btf(Box::new(e)))?;
    let Attach::BtfTracePoint(name) = CGROUP_RECORD.attach else { return Ok(false) };
    let prog = ebpf.program_mut(CGROUP_RECORD.program).ok_or(SensorError::MissingProgram(CGROUP_RECORD.program))?;
    let tp: &mut BtfTracePoint = prog.try_into().map_err(|e| SensorError::program(CGROUP_RECORD.program, e))?;
    match tp.load(name, &btf).and_then(|()| tp.attach().map(|_| ())) {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::warn!(
                hook = %format!("tp_btf/{name}"),
                error = %e,
                "cannot record cgroup creation: new containers' cgroups resolve only with CAP_DAC_READ_SEARCH or by walking the tree"
            );
            Ok(false)
        }
    }
}

/// Attaches every hook of an enabled class. A hook this kernel lacks is a
/// warning and the rest still runs.
pub fn attach(ebpf: &mut Ebpf, cfg: &SensorConfig) -> Result<Attached, SensorError> {
    let btf = Btf::from_sys_fs().map_err(|e| SensorError::Btf(Box::new(e)))?;
    let mut out = Attached::default();
    let mut hooks: Vec<Hook> = HOOKS.iter().copied().filter(|h| cfg.classes.contains(&h.class)).collect();
    let module_tps = ["sys_exit_init_module", "sys_exit_finit_module"];
    if cfg.classes.contains(&ClassName::Privilege)
        && cfg.module_load_fallback
        && !module_tps.iter().any(|n| tracefs::has_tracepoint("syscalls", n))
    {
        hooks.push(MODULE_FALLBACK);
    }
    for hook in hooks {
        let prog = ebpf.program_mut(hook.program).ok_or(SensorError::MissingProgram(hook.program))?;
        match hook.attach {
            Attach::TracePoints(points) => {
                let tp: &mut TracePoint = prog.try_into().map_err(|e| SensorError::program(hook.program, e))?;
                let present: Vec<_> = points.iter().filter(|(c, n)| tracefs::has_tracepoint(c, n)).collect();
                for (c, n) in points.iter().filter(|(c, n)| !tracefs::has_tracepoint(c, n)) {
                    // Expected for module syscalls on kernels without modules.
                    tracing::debug!(hook = %format!("{c}/{n}"), program = hook.program, "tracepoint not in this kernel");
                    out.missing.push(format!("{c}/{n}"));
                }
                if present.is_empty() {
                    tracing::warn!(
                        program = hook.program,
                        "no tracepoint of this program exists here; its events are off"
                    );
                    continue;
                }
                tp.load().map_err(|e| SensorError::program(hook.program, e))?;
                for (c, n) in present {
                    match tp.attach(c, n) {
                        Ok(_) => out.hooks.push(format!("{c}/{n}")),
                        Err(e) => {
                            tracing::warn!(hook = %format!("{c}/{n}"), error = %e, "cannot attach; continuing without it");
                            out.missing.push(format!("{c}/{n}"));
                        }
                    }
                }
            }
            Attach::BtfTracePoint(name) => {
                let tp: &mut BtfTracePoint = prog.try_into().map_err(|e| SensorError::program(hook.program, e))?;
                let res = tp.load(name, &btf).and_then(|()| tp.attach().map(|_| ()));
                match res {
                    Ok(()) => out.hooks.push(format!("tp_btf/{name}")),
                    Err(e) => {
                        tracing::warn!(hook = %format!("tp_btf/{name}"), error = %e, "cannot attach; continuing without it");
                        out.missing.push(format!("tp_btf/{name}"));
                    }
                }
            }
        }
    }
    Ok(out)
}
