//! The busybox root filesystem every lab container runs on.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::{BUSYBOX_CANDIDATES, LabError, Shared, io_err};

pub(super) fn build_rootfs(s: &Shared, rootfs: &Path, id: &str) -> Result<(), LabError> {
    let err = |what: &str| io_err(format!("building rootfs {}: {what}", rootfs.display()));
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "usr", "var/tmp"] {
        fs::create_dir_all(rootfs.join(d)).map_err(err(d))?;
    }
    fs::hard_link(&s.busybox, rootfs.join("bin/busybox")).map_err(err("bin/busybox"))?;
    for applet in s.applets.iter().filter(|a| a.as_str() != "busybox") {
        symlink("busybox", rootfs.join("bin").join(applet)).map_err(err(applet))?;
    }
    // Scripts and tests use absolute paths like /usr/bin/env or /sbin/ip.
    for (link, target) in [("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin")] {
        symlink(target, rootfs.join(link)).map_err(err(link))?;
    }
    let files = [
        ("etc/hostname", format!("{id}\n")),
        ("etc/hosts", format!("127.0.0.1\tlocalhost {id}\n::1\tlocalhost\n")),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".into()),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".into()),
    ];
    for (name, body) in files {
        fs::write(rootfs.join(name), body).map_err(err(name))?;
    }
    Ok(())
}

/// The container has no libc, so only a statically linked busybox works.
pub(super) fn find_busybox() -> Result<PathBuf, String> {
    let path = BUSYBOX_CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file());
    let path = path.ok_or_else(|| format!("no busybox binary at {}", BUSYBOX_CANDIDATES.join(", ")))?;
    let elf = fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let dynamic = || format!("{} is dynamically linked; install busybox-static", path.display());
    if has_interp(&elf) { Err(dynamic()) } else { Ok(path) }
}

/// True if a 64-bit little-endian ELF has a PT_INTERP program header.
fn has_interp(elf: &[u8]) -> bool {
    let le = |at: usize, n: usize| elf[at..at + n].iter().rev().fold(0usize, |acc, b| acc << 8 | *b as usize);
    elf.len() >= 64 && elf.starts_with(b"\x7fELF\x02\x01") && {
        let (phoff, phentsize, phnum) = (le(0x20, 8), le(0x36, 2), le(0x38, 2));
        let pt_interp = |o: usize| elf.get(o..o.saturating_add(4)) == Some(&[3, 0, 0, 0][..]);
        (0..phnum).any(|i| pt_interp(phoff.saturating_add(i * phentsize)))
    }
}
