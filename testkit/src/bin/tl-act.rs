//! Activity generator for the end-to-end tests: does one kind of thing the
//! sensor must see, from a process that is not the sensor's own.
//!
//! tl-act open-flood PATH N      open+close PATH N times (O_RDONLY)
//! tl-act write-rename DIR       create DIR/new, write, chmod, chown, rename to DIR/renamed, unlink it
//! tl-act tcp                    listen on 127.0.0.1, connect, accept; prints "port=P client=C"
//! tl-act priv                   unshare(CLONE_NEWUTS), finit_module attempt, then setuid(65534)
//! tl-act threads N              create N threads
//! tl-act exit CODE              exit with CODE
//! tl-act memfd-exec             copy /bin/true into a memfd and execute it (fileless)
//! tl-act connect-flood PORT N   N TCP connects to 127.0.0.1:PORT (refused or not)
//! tl-act udp PORT               one datagram to 127.0.0.1:PORT with sendto (a DNS query's shape)

use std::ffi::CString;
use std::io::Write;
use std::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| die("missing argument"));
    match arg(1) {
        "open-flood" => {
            let path = CString::new(arg(2)).unwrap_or_else(|_| die("path has NUL"));
            let n: u64 = arg(3).parse().unwrap_or_else(|_| die("N"));
            for _ in 0..n {
                // SAFETY: path is a valid C string; the fd is closed right away.
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                if fd < 0 {
                    die("open failed");
                }
                // SAFETY: fd was just opened by us.
                unsafe { libc::close(fd) };
            }
        }
        "write-rename" => {
            let dir = std::path::Path::new(arg(2));
            let mut f = std::fs::File::create(dir.join("new")).unwrap_or_else(|e| die(&e.to_string()));
            f.write_all(b"x").unwrap_or_else(|e| die(&e.to_string()));
            drop(f);
            let c = CString::new(dir.join("new").into_os_string().into_encoded_bytes()).unwrap_or_else(|_| die("NUL"));
            // SAFETY: c is a valid C string.
            if unsafe { libc::chmod(c.as_ptr(), 0o600) } != 0 || unsafe { libc::chown(c.as_ptr(), 0, 0) } != 0 {
                die("chmod/chown failed");
            }
            std::fs::rename(dir.join("new"), dir.join("renamed")).unwrap_or_else(|e| die(&e.to_string()));
            std::fs::remove_file(dir.join("renamed")).unwrap_or_else(|e| die(&e.to_string()));
        }
        "tcp" => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| die(&e.to_string()));
            let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| die(&e.to_string()));
            let client = c.local_addr().map(|a| a.port()).unwrap_or(0);
            let (s, _) = l.accept().unwrap_or_else(|e| die(&e.to_string()));
            println!("port={port} client={client}");
            drop(c);
            drop(s);
        }
        "priv" => {
            // SAFETY: plain syscalls on this process.
            unsafe {
                if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    die("unshare failed");
                }
                // No module support in every kernel: the attempt is what matters.
                libc::syscall(libc::SYS_finit_module, -1, c"tl_param=1".as_ptr(), 0);
                if libc::setuid(65534) != 0 {
                    die("setuid failed");
                }
            }
        }
        "threads" => {
            let n: usize = arg(2).parse().unwrap_or_else(|_| die("N"));
            for _ in 0..n {
                std::thread::spawn(|| {}).join().unwrap_or_else(|_| die("thread"));
            }
        }
        "memfd-exec" => {
            let image = std::fs::read("/bin/true").unwrap_or_else(|e| die(&e.to_string()));
            // SAFETY: plain syscalls with valid C strings and buffers we own.
            unsafe {
                let fd = libc::memfd_create(c"tl-fileless".as_ptr(), 0);
                if fd < 0 || libc::write(fd, image.as_ptr().cast(), image.len()) != image.len() as isize {
                    die("memfd");
                }
                let argv = [c"fileless".as_ptr(), std::ptr::null()];
                let envp: [*const libc::c_char; 1] = [std::ptr::null()];
                libc::syscall(libc::SYS_execveat, fd, c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH);
            }
            die("execveat failed");
        }
        "connect-flood" => {
            let port: u16 = arg(2).parse().unwrap_or_else(|_| die("PORT"));
            let n: u32 = arg(3).parse().unwrap_or_else(|_| die("N"));
            for _ in 0..n {
                let _ = TcpStream::connect(("127.0.0.1", port));
            }
        }
        "udp" => {
            let port: u16 = arg(2).parse().unwrap_or_else(|_| die("PORT"));
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| die(&e.to_string()));
            s.send_to(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", ("127.0.0.1", port))
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        "exit" => std::process::exit(arg(2).parse().unwrap_or_else(|_| die("CODE"))),
        other => die(&format!("unknown action {other}")),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("tl-act: {msg}");
    std::process::exit(100)
}
