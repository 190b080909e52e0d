//! Kernel overhead of tracelake as a ratio, measured side by side in one run.
//!
//! A child process opens and closes one regular file in a loop for a fixed
//! time while each configuration is in place. Configurations alternate for
//! several rounds and the median is kept, so drift (frequency, neighbours on
//! the host) hits all of them alike. The loop is a child, not a thread,
//! because the sensor never traces its own process.
//!
//! Caveat: once audit has been enabled (config f), the kernel gives every
//! process forked afterwards an audit context until reboot, so later loops
//! pay audit bookkeeping on each syscall even with auditing off again. For
//! the cleanest a-e figures run `--only abcde` on a freshly booted machine.
//!
//! As root: `cargo run --release -p tracelake-benches --bin overhead -- [--rounds N] [--secs S] [--only abcdefghijk]`
//! (defaults: 5 rounds of 2 s of configurations a-f, about 2 minutes; g and h,
//! which isolate the module-load fallback hook, and i-k, the exec storm, run
//! only when named).
//!
//! The exec storm (i-k) is a second loop child that spawns `/bin/true` and waits
//! for it, over and over: every iteration is a fork, an exec and an exit, the
//! process events a sensor records in full (path walk, argv, cwd, terminal,
//! session, standard fds). Its ratios are to its own baseline (i) and floor (j).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tracelake_model::{Event, Kind};
use tracelake_sensor::{EventHandler, Sensor, SensorConfig, SensorStats, loader};

// Not src/bin/tools.rs: cargo would take that for a second binary.
#[path = "overhead/tools.rs"]
mod tools;
use tools::{Audit, Bpftrace};
#[path = "overhead/report.rs"]
mod report;

/// argv[1] of the re-executed harness when it is the loop child.
const LOOP_ARG: &str = "__open_close_loop";
/// argv[1] of the re-executed harness when it is the exec storm child.
const EXEC_ARG: &str = "__exec_loop";
/// What the exec storm runs.
const EXEC_TARGET: &str = "/bin/true";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    Baseline,
    Floor,
    Tracelake,
    TracelakeWatched,
    Bpftrace,
    Auditd,
    FloorNoFallback,
    TracelakeNoFallback,
    ExecBaseline,
    ExecFloor,
    ExecTracelake,
}

impl Config {
    const ALL: [Config; 11] = [
        Config::Baseline,
        Config::Floor,
        Config::Tracelake,
        Config::TracelakeWatched,
        Config::Bpftrace,
        Config::Auditd,
        Config::FloorNoFallback,
        Config::TracelakeNoFallback,
        Config::ExecBaseline,
        Config::ExecFloor,
        Config::ExecTracelake,
    ];
    /// g and h only isolate the module-load fallback; run them with --only.
    const DEFAULT: usize = 6;

    fn index(self) -> usize {
        Config::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }

    /// Indices of the baseline and floor its ratios are taken to: the exec storm has its own.
    fn reference(self) -> (usize, usize) {
        match self {
            Config::ExecBaseline | Config::ExecFloor | Config::ExecTracelake => {
                (Config::ExecBaseline.index(), Config::ExecFloor.index())
            }
            Config::Baseline
            | Config::Floor
            | Config::Tracelake
            | Config::TracelakeWatched
            | Config::Bpftrace
            | Config::Auditd
            | Config::FloorNoFallback
            | Config::TracelakeNoFallback => (Config::Baseline.index(), Config::Floor.index()),
        }
    }

    fn letter(self) -> char {
        char::from(b'a' + self.index() as u8)
    }

    fn label(self) -> &'static str {
        match self {
            Config::Baseline => "baseline (no tracer)",
            Config::Floor => "floor (no-op programs, same hooks)",
            Config::Tracelake => "tracelake default, unwatched file",
            Config::TracelakeWatched => "tracelake, file under watch_reads",
            Config::Bpftrace => "bpftrace count per comm",
            Config::Auditd => "auditd -S openat",
            Config::FloorNoFallback => "floor, module_load_fallback off",
            Config::TracelakeNoFallback => "c with module_load_fallback off",
            Config::ExecBaseline => "exec storm: baseline (no tracer)",
            Config::ExecFloor => "exec storm: floor (no-op programs)",
            Config::ExecTracelake => "exec storm: tracelake default",
        }
    }
}

#[derive(Debug)]
struct Opts {
    rounds: usize,
    secs: f64,
    only: Vec<Config>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts { rounds: 5, secs: 2.0, only: Config::ALL[..Config::DEFAULT].to_vec() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--rounds" => o.rounds = value()?.parse().context("--rounds")?,
                "--secs" => o.secs = value()?.parse().context("--secs")?,
                "--only" => {
                    let letters = value()?;
                    o.only = Config::ALL.into_iter().filter(|c| letters.contains(c.letter())).collect();
                }
                other => bail!("unknown argument {other:?} (use --rounds N, --secs S, --only abcdefghijk)"),
            }
        }
        ensure!(o.rounds > 0 && o.secs > 0.0 && !o.only.is_empty(), "nothing to measure");
        Ok(o)
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(LOOP_ARG) {
        return open_close_loop(&args[1..]);
    }
    if args.first().map(String::as_str) == Some(EXEC_ARG) {
        return exec_loop(&args[1..]);
    }
    let opts = Opts::parse(&args)?;
    // SAFETY: geteuid has no preconditions.
    ensure!(unsafe { libc::geteuid() } == 0, "run as root: eBPF, bpftrace and auditd need it");
    catch_interrupts();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    run(&rt, &opts)
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C must not kill the harness outright: bpftrace would survive as an
/// orphan and auditd with our rule would go on slowing the machine. The loop
/// child gets the same SIGINT and dies, which fails the measurement, and the
/// guards clean up on the way out.
fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe);
        // exec restores the default disposition in children.
        unsafe { libc::signal(sig, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn cpu_time_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The child: open+close `path` until `secs` have passed, then print
/// "iterations wall_ns cpu_ns".
fn open_close_loop(args: &[String]) -> Result<()> {
    let [path, secs] = args else { bail!("usage: {LOOP_ARG} PATH SECS") };
    let path = CString::new(path.as_bytes())?;
    let secs: f64 = secs.parse()?;
    let start = Instant::now();
    let cpu0 = cpu_time_ns();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut iters: u64 = 0;
    while Instant::now() < deadline {
        // Reading the clock once per batch keeps it out of the measured cost
        // even where clock_gettime is a real syscall.
        for _ in 0..256 {
            // SAFETY: path is a NUL-terminated string that outlives the call.
            let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
            ensure!(fd >= 0, "open {path:?}: {}", std::io::Error::last_os_error());
            // SAFETY: fd was opened just above and is closed exactly once.
            unsafe { libc::close(fd) };
        }
        iters += 256;
    }
    println!("{iters} {} {}", start.elapsed().as_nanos(), cpu_time_ns() - cpu0);
    Ok(())
}

/// The exec storm child: spawn `path` and wait for it until `secs` have passed, then print as
/// `open_close_loop` does. posix_spawn (vfork semantics) keeps the loop's own cost small and constant.
fn exec_loop(args: &[String]) -> Result<()> {
    let [path, secs] = args else { bail!("usage: {EXEC_ARG} PATH SECS") };
    let path = CString::new(path.as_bytes())?;
    let secs: f64 = secs.parse()?;
    let argv = [path.as_ptr().cast_mut(), std::ptr::null_mut()];
    let envp = [std::ptr::null_mut()];
    let start = Instant::now();
    let cpu0 = cpu_time_ns();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut iters: u64 = 0;
    while Instant::now() < deadline {
        let mut pid: libc::pid_t = 0;
        // SAFETY: path, argv and envp are NUL-terminated and outlive the call; no file actions or attributes.
        let err = unsafe {
            libc::posix_spawn(&mut pid, path.as_ptr(), std::ptr::null(), std::ptr::null(), argv.as_ptr(), envp.as_ptr())
        };
        ensure!(err == 0, "posix_spawn {path:?}: {}", std::io::Error::from_raw_os_error(err));
        let mut status = 0;
        // SAFETY: pid is our child; status is a valid, writable int.
        ensure!(unsafe { libc::waitpid(pid, &mut status, 0) } == pid, "waitpid: {}", std::io::Error::last_os_error());
        iters += 1;
    }
    // The children's CPU is charged to them, not to us: wall time is the measure here.
    println!("{iters} {} {}", start.elapsed().as_nanos(), cpu_time_ns() - cpu0);
    Ok(())
}

#[derive(Clone, Copy, Debug)]
struct LoopRun {
    iters: u64,
    secs: f64,
    cpu_secs: f64,
    /// CPU time the hypervisor gave to other guests during the run, summed
    /// over all CPUs: a noise indicator.
    steal_secs: f64,
    /// Tracing programs of other tools loaded throughout the run.
    foreign: usize,
}

impl LoopRun {
    fn rate(&self) -> f64 {
        self.iters as f64 / self.secs
    }

    /// Iterations per second of the loop's own CPU time: kernel work done
    /// in its syscalls (BPF programs, audit) is charged to it, time lost to
    /// other tenants of this shared VM is not. Time it spends blocked (an
    /// audit backlog wait) is not charged either, so wall time stays primary.
    fn cpu_rate(&self) -> f64 {
        self.iters as f64 / self.cpu_secs
    }
}

/// Tracing programs loaded on this machine, by id. Another tracer present
/// during a run (a test lab's sensor, say) slows the loop as well, so runs
/// that overlap one are flagged.
fn tracing_programs() -> BTreeMap<u32, String> {
    // kprobe, tracepoint, perf_event, raw_tracepoint, raw_tracepoint_writable, tracing, lsm
    const TYPES: [u32; 7] = [2, 5, 7, 17, 24, 26, 29];
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| TYPES.contains(&(p.program_type() as u32)))
        .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_string()))
        .collect()
}

/// Steal time of all CPUs from /proc/stat, in seconds (USER_HZ is 100 on Linux).
fn steal_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    cpu.split_whitespace().nth(8).and_then(|v| v.parse::<f64>().ok()).map_or(0.0, |t| t / 100.0)
}

fn open_close(exe: &Path, file: &Path, secs: f64) -> Result<LoopRun> {
    loop_child(exe, LOOP_ARG, file, secs)
}

/// The open+close loop, or with `EXEC_ARG` the exec storm, as a child process.
fn loop_child(exe: &Path, mode: &str, file: &Path, secs: f64) -> Result<LoopRun> {
    check_interrupted()?;
    let steal0 = steal_secs();
    let out = Command::new(exe)
        .arg(mode)
        .arg(file)
        .arg(secs.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("run the loop child")?;
    check_interrupted()?;
    ensure!(out.status.success(), "loop child failed: {}", out.status);
    let text = String::from_utf8(out.stdout)?;
    let mut it = text.split_whitespace();
    let iters: u64 = it.next().context("loop child printed nothing")?.parse()?;
    let nanos: f64 = it.next().context("loop child printed no duration")?.parse()?;
    let cpu_nanos: f64 = it.next().context("loop child printed no CPU time")?.parse()?;
    Ok(LoopRun { iters, secs: nanos / 1e9, cpu_secs: cpu_nanos / 1e9, steal_secs: steal_secs() - steal0, foreign: 0 })
}

/// The loop file: one in an unwatched directory, one under a prefix added
/// to `file.watch_reads`. Same name lengths, so path lookup costs the same.
#[derive(Debug)]
struct Files {
    _dir: tempfile::TempDir,
    plain: PathBuf,
    watched: PathBuf,
    watch_prefix: String,
}

fn files() -> Result<Files> {
    let dir = tempfile::Builder::new().prefix("tlbench").tempdir().context("create a temp dir")?;
    let mk = |sub: &str| -> Result<PathBuf> {
        let d = dir.path().join(sub);
        std::fs::create_dir(&d)?;
        let f = d.join("target");
        std::fs::write(&f, b"tracelake overhead benchmark\n")?;
        Ok(f)
    };
    let plain = mk("plain")?;
    let watched = mk("watch")?;
    let watch_prefix = format!("{}/watch/", dir.path().display());
    Ok(Files { _dir: dir, plain, watched, watch_prefix })
}

/// The loop child's file opens among the delivered events: kernel counters
/// cover every process on the machine, this shows aggregation on ours alone.
#[derive(Clone, Debug, Default)]
struct LoopOpens {
    comm: String,
    first: u64,
    summaries: u64,
    folded: u64,
    other_events: u64,
}

impl EventHandler for LoopOpens {
    fn handle(&mut self, ev: &Event<'_>) {
        if ev.kind != Kind::FileOpen || ev.subject.comm() != self.comm.as_bytes() {
            self.other_events += 1;
        } else if ev.aggregate.is_some() {
            self.summaries += 1;
            self.folded += ev.count;
        } else {
            self.first += 1;
        }
    }
}

/// Runs the loop while a sensor reads its ring buffer, so what the kernel
/// emits is consumed as in production.
fn with_sensor(
    rt: &tokio::runtime::Runtime,
    cfg: &SensorConfig,
    (exe, mode): (&Path, &'static str),
    file: &Path,
    secs: f64,
) -> Result<(LoopRun, SensorStats, LoopOpens)> {
    rt.block_on(async {
        let mut sensor = Sensor::start(cfg).context("start the sensor")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut opens = LoopOpens { comm: comm_of(exe), ..LoopOpens::default() };
        let (exe, file) = (exe.to_owned(), file.to_owned());
        let work = tokio::task::spawn_blocking(move || {
            let r = loop_child(&exe, mode, &file, secs);
            let _ = tx.send(());
            r
        });
        let summary = sensor
            .run(&mut opens, async {
                let _ = rx.await;
            })
            .await
            .context("sensor run")?;
        let run = work.await.context("loop task")??;
        Ok((run, summary.stats, opens))
    })
}

/// The no-op object on the hooks `cfg` selects, as the sensor would attach them.
fn with_floor(cfg: &SensorConfig, (exe, mode): (&Path, &str), file: &Path, secs: f64) -> Result<LoopRun> {
    let mut ebpf = loader::load_object(tracelake_bpf::noop_object(), cfg).context("load the no-op object")?;
    loader::attach(&mut ebpf, cfg).context("attach the no-op object")?;
    let run = loop_child(exe, mode, file, secs);
    drop(ebpf);
    run
}

/// One measurement's side output, printed after the table.
#[derive(Debug)]
enum Detail {
    None,
    Sensor(Box<(SensorStats, LoopOpens)>),
    Bpftrace { counted: Option<u64> },
    Audit { lost: u64 },
}

/// The kernel's comm of a process running `exe`: its file name, cut to 15 bytes.
fn comm_of(exe: &Path) -> String {
    exe.file_name().map(|n| n.to_string_lossy().chars().take(15).collect()).unwrap_or_default()
}

fn run(rt: &tokio::runtime::Runtime, opts: &Opts) -> Result<()> {
    let exe = std::env::current_exe().context("find the harness executable")?;
    let comm = comm_of(&exe);
    let files = files()?;
    let default_cfg = SensorConfig::default();
    let mut watched_cfg = SensorConfig::default();
    watched_cfg.file.watch_reads.push(files.watch_prefix.clone());
    // On kernels without module syscall tracepoints the default puts a
    // program on raw_syscalls:sys_exit, which runs on every syscall.
    let no_fallback_cfg = SensorConfig { module_load_fallback: false, ..SensorConfig::default() };

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "open+close loop on {} for {} s per run, {} round(s); kernel {}, {cpus} CPUs",
        files.plain.display(),
        opts.secs,
        opts.rounds,
        release.trim()
    );

    let (open, spawn) = ((exe.as_path(), LOOP_ARG), (exe.as_path(), EXEC_ARG));
    let target = Path::new(EXEC_TARGET);
    let mut runs: Vec<Vec<LoopRun>> = vec![Vec::new(); Config::ALL.len()];
    let mut unavailable: Vec<Option<String>> = vec![None; Config::ALL.len()];
    let mut details: Vec<(usize, Config, LoopRun, Detail)> = Vec::new();
    for round in 1..=opts.rounds {
        for &cfg in &opts.only {
            let i = cfg.index();
            if unavailable[i].is_some() {
                continue;
            }
            let t0 = Instant::now();
            let before = tracing_programs();
            let (mut run, detail) = match cfg {
                Config::Baseline => (open_close(&exe, &files.plain, opts.secs)?, Detail::None),
                Config::Floor => (with_floor(&default_cfg, open, &files.plain, opts.secs)?, Detail::None),
                Config::FloorNoFallback => (with_floor(&no_fallback_cfg, open, &files.plain, opts.secs)?, Detail::None),
                Config::TracelakeNoFallback => {
                    let (run, stats, opens) = with_sensor(rt, &no_fallback_cfg, open, &files.plain, opts.secs)?;
                    (run, Detail::Sensor(Box::new((stats, opens))))
                }
                Config::Tracelake => {
                    let (run, stats, opens) = with_sensor(rt, &default_cfg, open, &files.plain, opts.secs)?;
                    (run, Detail::Sensor(Box::new((stats, opens))))
                }
                Config::TracelakeWatched => {
                    let (run, stats, opens) = with_sensor(rt, &watched_cfg, open, &files.watched, opts.secs)?;
                    (run, Detail::Sensor(Box::new((stats, opens))))
                }
                Config::ExecBaseline => (loop_child(&exe, EXEC_ARG, target, opts.secs)?, Detail::None),
                Config::ExecFloor => (with_floor(&default_cfg, spawn, target, opts.secs)?, Detail::None),
                Config::ExecTracelake => {
                    let (run, stats, opens) = with_sensor(rt, &default_cfg, spawn, target, opts.secs)?;
                    (run, Detail::Sensor(Box::new((stats, opens))))
                }
                Config::Bpftrace => {
                    let bt = match Bpftrace::start() {
                        Ok(bt) => bt,
                        Err(e) => {
                            unavailable[i] = Some(format!("{e:#}"));
                            continue;
                        }
                    };
                    let run = open_close(&exe, &files.plain, opts.secs)?;
                    (run, Detail::Bpftrace { counted: bt.stop(&comm)? })
                }
                Config::Auditd => {
                    let audit = match Audit::start() {
                        Ok(a) => a,
                        Err(e) => {
                            unavailable[i] = Some(format!("{e:#}"));
                            continue;
                        }
                    };
                    let run = open_close(&exe, &files.plain, opts.secs)?;
                    let lost = audit.lost_since_start();
                    drop(audit);
                    (run, Detail::Audit { lost })
                }
            };
            // Ours are unloaded by now: what was there before and after is foreign.
            let after = tracing_programs();
            let mut foreign: Vec<&str> =
                before.iter().filter(|(id, _)| after.contains_key(id)).map(|(_, n)| n.as_str()).collect();
            run.foreign = foreign.len();
            if run.foreign > 0 {
                foreign.sort_unstable();
                foreign.dedup();
                eprintln!(
                    "warning: {} other tracing programs loaded during this run: {}",
                    run.foreign,
                    foreign.join(" ")
                );
            }
            eprintln!(
                "round {round} {} {:<36} {:>12.0} iterations/s (config total {:.1} s)",
                cfg.letter(),
                cfg.label(),
                run.rate(),
                t0.elapsed().as_secs_f64()
            );
            runs[i].push(run);
            details.push((round, cfg, run, detail));
        }
    }
    check_interrupted()?;
    println!("{}", report::table(opts, &runs, &unavailable));
    println!("{}", report::details(&details, &comm));
    Ok(())
}
