//! The compute workload's native baseline: the same kernel the guest runs, run natively where
//! the guest ran, so that "reaches X of native" compares like with like. On this host for x86
//! on its KVM; inside the x86 lab host for x86-lab; inside the riscv lab host (or on a riscv64
//! host itself) for RISC-V. `vmm lab` runs the hidden `vmm lab-native` as a child, like
//! `vmm run`, and reads its one JSON line (`urvirt_riscv::teach::native_compute_json`).
use crate::backend::{Backend, Kind};
use crate::runner;
use common::{Error, Result};

/// `vmm lab-native [--arch x86|riscv] [--lab] compute N`.
pub fn main(x86: bool, lab: bool, workload: &str, iterations: u64) -> Result<i32> {
    if !x86 {
        if lab {
            return Err(Error::bad_input("lab-native: --lab applies to --arch x86"));
        }
        return urvirt_riscv::teach::lab_native(workload, iterations);
    }
    if workload != "compute" {
        return Err(Error::bad_input(format!(
            "lab-native: no native baseline for workload `{workload}` (only `compute` has one)"
        )));
    }
    x86_native(lab, iterations)
}

#[cfg(target_arch = "x86_64")]
fn x86_native(lab: bool, iterations: u64) -> Result<i32> {
    if lab {
        let inner =
            ["lab-native", "--arch", "x86", "compute"].map(String::from).into_iter().chain([iterations.to_string()]);
        // A lab host that never comes back is stopped (the kernel itself takes well under 1 s).
        let vm = common::vm::VmConfig {
            mem_size: 0,
            timeout: Some(std::time::Duration::from_secs(600)),
            ..common::vm::VmConfig::default()
        };
        return Ok(vmm_x86::lab::run_inner(&vm, &inner.collect::<Vec<_>>(), &[])?.exit_code());
    }
    // Timed here rather than with teach::native_compute, to print the kernel's result too
    // (the guest's compute phase ends with the same value).
    let start = std::time::Instant::now();
    let checksum = std::hint::black_box(vmm_x86::teach::compute_kernel(std::hint::black_box(iterations)));
    let took = start.elapsed();
    println!("{}", urvirt_riscv::teach::native_compute_json(iterations, took, checksum));
    Ok(common::error::EXIT_OK)
}

#[cfg(not(target_arch = "x86_64"))]
fn x86_native(_lab: bool, _iterations: u64) -> Result<i32> {
    Err(Error::bad_input(format!("lab-native --arch x86 needs an x86_64 host; this one is {}", std::env::consts::ARCH)))
}

/// `vmm lab-native ...` for the backend.
pub fn args(backend: &Backend, iterations: u64) -> Vec<String> {
    let mut args: Vec<String> =
        ["lab-native", "--arch", if backend.is_x86() { "x86" } else { "riscv" }].map(String::from).into();
    if backend.kind == Kind::X86Lab {
        args.push("--lab".into());
    }
    args.extend(["compute".into(), iterations.to_string()]);
    args
}

/// How many native runs a backend's baseline is the median of: each run in a lab host boots it.
pub fn runs(backend: &Backend) -> usize {
    if backend.kind == Kind::X86Kvm || cfg!(all(target_arch = "riscv64", target_os = "linux")) {
        3
    } else {
        1
    }
}

/// The native compute time for `iterations` where `backend` runs, in ns.
pub fn native_ns(backend: &Backend, iterations: u64) -> std::result::Result<u64, String> {
    let mut samples = Vec::new();
    for _ in 0..runs(backend) {
        let out = runner::run_child(&args(backend, iterations)).map_err(|e| e.message)?;
        match urvirt_riscv::teach::parse_native_compute(&out.stdout) {
            Some(took) if out.code == Some(0) => samples.push(took.as_nanos() as f64),
            _ => return Err(format!("the native compute baseline failed ({:?}): {}", out.code, out.last_error())),
        }
    }
    Ok(common::stats::median(samples) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_per_backend() {
        let a = |k| args(&Backend::new(k), 500);
        assert_eq!(a(Kind::X86Kvm), ["lab-native", "--arch", "x86", "compute", "500"]);
        assert_eq!(a(Kind::X86Lab), ["lab-native", "--arch", "x86", "--lab", "compute", "500"]);
        assert_eq!(a(Kind::Riscv), ["lab-native", "--arch", "riscv", "compute", "500"]);
    }
}
