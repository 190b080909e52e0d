//! Compiles the eBPF programs with clang (CO-RE, BTF) into OUT_DIR.
//!
//! vmlinux.h is generated from the running kernel's BTF with bpftool unless
//! `TRACELAKE_VMLINUX_H` names one; CO-RE relocations make the object load on
//! other kernels than the one it was built on.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const OBJECTS: &[&str] = &["tracelake", "noop"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-env-changed=TRACELAKE_VMLINUX_H");
    println!("cargo:rerun-if-env-changed=CLANG");

    let vmlinux_dir = out.join("vmlinux");
    std::fs::create_dir_all(&vmlinux_dir).expect("create OUT_DIR/vmlinux");
    let vmlinux_h = vmlinux_dir.join("vmlinux.h");
    match env::var_os("TRACELAKE_VMLINUX_H") {
        Some(given) => {
            std::fs::copy(&given, &vmlinux_h).unwrap_or_else(|e| panic!("copy TRACELAKE_VMLINUX_H {given:?}: {e}"));
        }
        None => generate_vmlinux(&vmlinux_h),
    }

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-19".to_string());
    for name in OBJECTS {
        let src = manifest.join("src").join(format!("{name}.bpf.c"));
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-g", "-O2", "-Wall", "-Werror", "-target", "bpf", "-D__TARGET_ARCH_x86"])
            .arg("-I")
            .arg(manifest.join("include"))
            .arg("-I")
            .arg(&vmlinux_dir)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {clang} (install clang-19, or set CLANG): {e}"));
        assert!(status.success(), "{clang} failed on {}", src.display());
    }
}

fn generate_vmlinux(dest: &Path) {
    let btf = "/sys/kernel/btf/vmlinux";
    let output =
        Command::new("bpftool").args(["btf", "dump", "file", btf, "format", "c"]).output().unwrap_or_else(|e| {
            panic!("cannot run bpftool to generate vmlinux.h (install bpftool, or set TRACELAKE_VMLINUX_H): {e}")
        });
    assert!(output.status.success(), "bpftool btf dump {btf} failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::write(dest, output.stdout).expect("write vmlinux.h");
}
