//! Benchmarks and the kernel-overhead harness.
