//! Test support for tracelake's end-to-end tests: everything here drives real
//! parts of this machine (containerd, runc, the kernel), nothing is mocked.

pub mod broker;
pub mod cri_lab;
pub mod lab;
