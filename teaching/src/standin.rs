//! TEMPORARY STAND-IN for `vmm_x86::teach`, which the x86 workload helper writes
//! (vmm-x86/src/teach.rs). Same names and signatures, so that `backend.rs` switches to the real
//! module by changing its `use` line; this file is then deleted. The phase names follow the contract in the issue.
#![allow(dead_code)]

pub mod x86 {
    use std::time::Duration;

    /// (workload, phase names after the baseline phase 0).
    pub const WORKLOADS: &[(&str, &[&str])] = &[
        ("console-out", &["out 0xf1"]),
        ("priv-reg", &["cpuid", "cr read+write", "rdmsr"]),
        ("page-touch", &["first touch", "second touch"]),
        ("timer", &["timer interrupt"]),
        ("syscall", &["syscall+sysret"]),
        ("mmio", &["mmio read"]),
        ("compute", &["compute"]),
    ];

    /// Extra `vmm run` arguments a workload needs.
    pub fn run_args(_workload: &str) -> Vec<String> {
        Vec::new()
    }

    /// The compute kernel's instructions in this process (a stand-in loop).
    pub fn native_compute(iterations: u64) -> Duration {
        super::stand_in_kernel(iterations)
    }
}

fn stand_in_kernel(iterations: u64) -> std::time::Duration {
    let start = std::time::Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x);
    start.elapsed()
}
