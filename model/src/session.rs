//! What a new program was started with besides its argv: its controlling terminal and session, and what its
//! standard fds are. An interactive shell has a tty and leads its session; a script has neither; a reverse
//! shell has a socket for stdin and stdout, whoever made the connection.

use std::fmt;

use crate::Endpoint;

/// How a program was started besides its argv (exec events, the /proc walk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    pub session: Session,
    /// fds 0, 1 and 2. The /proc walk knows their types only (no socket peers).
    pub stdio: Stdio,
}

/// The controlling terminal and session of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// Controlling tty as a kernel `dev_t` (`major << 20 | minor`); 0: none.
    pub tty: u32,
    /// Session id, in the initial pid namespace (as `pid` is).
    pub sid: u32,
    /// The process leads its session (`sid == pid`): a login shell, a terminal's shell, a daemon after setsid.
    pub leader: bool,
}

impl Session {
    /// The controlling terminal, if any.
    pub fn tty(&self) -> Option<Tty> {
        (self.tty != 0).then_some(Tty(self.tty))
    }
}

/// A terminal device by number; `Display` names it as `ps` does (`pts/3`, `tty1`, `ttyS0`, `console`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tty(pub u32);

impl Tty {
    pub fn major(self) -> u32 {
        self.0 >> 20
    }

    pub fn minor(self) -> u32 {
        self.0 & 0xf_ffff
    }

    /// From `/proc/<pid>/stat`'s `tty_nr` (the kernel's `new_encode_dev`).
    pub fn from_proc(tty_nr: u32) -> Tty {
        let major = (tty_nr >> 8) & 0xfff;
        let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xf_ff00);
        Tty(major << 20 | minor)
    }

    /// Whether a character device of this number is a terminal: the majors of devices/tty/ (virtual
    /// consoles, serial lines, pseudo-terminals) in Documentation/admin-guide/devices.txt.
    pub fn is_terminal(self) -> bool {
        matches!(self.major(), 3 | 4 | 5 | 136..=143 | 166 | 188 | 204 | 229)
    }
}

impl fmt::Display for Tty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = (self.major(), self.minor());
        match (major, minor) {
            // Unix98 pty slaves: the kernel numbers them MKDEV(136, 0) + index.
            (136..=143, _) => write!(f, "pts/{}", (major - 136) * 256 + minor),
            (4, 0..=63) => write!(f, "tty{minor}"),
            (4, _) => write!(f, "ttyS{}", minor - 64),
            (5, 0) => f.write_str("tty"),
            (5, 1) => f.write_str("console"),
            (5, 2) => f.write_str("ptmx"),
            (188, _) => write!(f, "ttyUSB{minor}"),
            (166, _) => write!(f, "ttyACM{minor}"),
            (229, _) => write!(f, "hvc{minor}"),
            _ => write!(f, "{major}:{minor}"),
        }
    }
}

/// What one standard fd is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FdType {
    /// Not open.
    #[default]
    None,
    Socket,
    /// A pipe or a FIFO.
    Pipe,
    /// A terminal (see `Tty::is_terminal`).
    Tty,
    /// Another character device (`/dev/null`).
    Char,
    /// A regular file.
    File,
    /// A directory, block device, anonymous inode, ...
    Other,
}

impl FdType {
    /// The name in JSON and in the lake's `std*_type` columns.
    pub fn name(self) -> &'static str {
        match self {
            FdType::None => "none",
            FdType::Socket => "socket",
            FdType::Pipe => "pipe",
            FdType::Tty => "tty",
            FdType::Char => "char",
            FdType::File => "file",
            FdType::Other => "other",
        }
    }

    pub const ALL: [FdType; 7] =
        [FdType::None, FdType::Socket, FdType::Pipe, FdType::Tty, FdType::Char, FdType::File, FdType::Other];

    /// Wire id (Kafka records): the position in `ALL`.
    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn from_id(id: u8) -> Option<FdType> {
        FdType::ALL.get(usize::from(id)).copied()
    }
}

/// One standard fd at exec. `family`, `protocol` and `remote` are set for sockets (`remote` is the peer the
/// socket is connected to, zero when it is not), `rdev` for terminals and character devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fd {
    pub fd_type: FdType,
    pub family: u16,
    pub protocol: u16,
    pub remote: Endpoint,
    pub rdev: u32,
}

impl Fd {
    /// An IPv4 or IPv6 socket with a peer (a connected TCP or UDP socket).
    pub fn has_peer(&self) -> bool {
        self.fd_type == FdType::Socket
            && matches!(self.family, 2 | 10)
            && (self.remote.port != 0 || self.remote.addr != [0; 16])
    }
}

/// fds 0, 1 and 2 (stdin, stdout, stderr).
pub type Stdio = [Fd; 3];

/// Names of the standard fds, in order.
pub const STDIO_NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];

/// The first of stdin, stdout, stderr that is an IP socket with a peer: the address a shell on a socket talks
/// to.
pub fn stdio_peer(stdio: &Stdio) -> Option<&Fd> {
    stdio.iter().find(|fd| fd.has_peer())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_are_named_as_ps_names_them() {
        let dev = |major: u32, minor: u32| Tty(major << 20 | minor);
        assert_eq!(dev(136, 3).to_string(), "pts/3");
        assert_eq!(dev(136, 300).to_string(), "pts/300");
        assert_eq!(dev(4, 1).to_string(), "tty1");
        assert_eq!(dev(4, 64).to_string(), "ttyS0");
        assert_eq!(dev(5, 1).to_string(), "console");
        assert_eq!(dev(254, 7).to_string(), "254:7");
        assert!(dev(136, 3).is_terminal() && !dev(1, 3).is_terminal(), "/dev/null is no terminal");
        // tty_nr of /dev/pts/300: minor's low byte, major, minor's high bits above bit 20.
        let tty_nr = (300 & 0xff) | (136 << 8) | ((300 & !0xff) << 12);
        assert_eq!(Tty::from_proc(tty_nr), dev(136, 300));
        assert_eq!(Session { tty: 0, sid: 1, leader: true }.tty(), None);
    }

    #[test]
    fn fd_type_ids_round_trip() {
        for t in FdType::ALL {
            assert_eq!(FdType::from_id(t.id()), Some(t));
        }
        assert_eq!(FdType::from_id(7), None);
    }

    #[test]
    fn the_peer_is_the_first_ip_socket_with_one() {
        let unix = Fd { fd_type: FdType::Socket, family: 1, ..Fd::default() };
        let listening = Fd { fd_type: FdType::Socket, family: 2, ..Fd::default() };
        let mut tcp = Fd { fd_type: FdType::Socket, family: 2, protocol: 6, ..Fd::default() };
        tcp.remote.port = 4444;
        assert_eq!(stdio_peer(&[unix, listening, tcp]), Some(&tcp));
        assert_eq!(stdio_peer(&[unix, listening, Fd::default()]), None);
    }
}
