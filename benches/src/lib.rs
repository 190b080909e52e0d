//! Benchmarks and the kernel-overhead harness.
//!
//! `records` builds ring-buffer records byte for byte as the kernel programs
//! lay them out, so the decode benchmark measures the reader on realistic
//! input without a kernel. The overhead harness is `src/bin/overhead.rs`.

pub mod lake;
pub mod records;
