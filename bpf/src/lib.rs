//! tracelake's eBPF objects and the Rust mirror of their records.
//!
//! The C programs live in `bpf/src/*.bpf.c`; every record that crosses the
//! kernel/user boundary is defined once, in `bpf/include/tracelake.h`. The
//! `abi` module mirrors it with `#[repr(C)]` types, and `tests/layout.rs`
//! checks sizes and offsets against the BTF of the compiled object.

pub mod abi;

/// An object file with the 8-byte alignment the ELF parser expects.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static SENSOR: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/tracelake.bpf.o")));
static NOOP: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/noop.bpf.o")));

/// The sensor object: every program, map and record of tracelake.
pub fn sensor_object() -> &'static [u8] {
    &SENSOR.0
}

/// The benchmark floor: the same program names on the same hooks, each a
/// no-op, so overhead can be compared side by side.
pub fn noop_object() -> &'static [u8] {
    &NOOP.0
}

/// Path of the compiled sensor object, for tools (bpftool) and tests.
pub const SENSOR_OBJECT_PATH: &str = concat!(env!("OUT_DIR"), "/tracelake.bpf.o");
