//! `vmm lab-native` (hidden): the compute workload's kernel run natively, the baseline the
//! guest's compute phase is measured against. It must run where the guest ran: on this host
//! for x86 on its KVM; inside the x86 lab host for `--lab`; inside the riscv lab host (or on a
//! riscv64 host itself) for RISC-V. So `vmm lab` runs it as a child, like `vmm run`, and reads
//! one line per run from its stdout: `native compute N=<n> ns=<ns>`.
use crate::backend;
use clap::{Args, ValueEnum};
use common::vm::VmConfig;
use common::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum NativeArch {
    X86,
    Riscv,
}

#[derive(Args, Debug)]
pub struct NativeArgs {
    /// Whose compute kernel
    #[arg(long, value_enum, default_value = "x86")]
    pub arch: NativeArch,
    /// x86: inside the x86 lab host
    #[arg(long)]
    pub lab: bool,
    /// How many times to run it (one line each)
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// The kernel (only `compute`)
    pub kernel: String,
    /// Iterations
    pub iterations: u64,
}

pub fn main(args: &NativeArgs) -> Result<i32> {
    if args.kernel != "compute" {
        return Err(Error::bad_input(format!("lab-native: unknown kernel '{}' (only compute)", args.kernel)));
    }
    let x86 = args.arch == NativeArch::X86;
    let here = if x86 { cfg!(target_arch = "x86_64") } else { cfg!(all(target_arch = "riscv64", target_os = "linux")) };
    if here && !(x86 && args.lab) {
        for _ in 0..args.runs.max(1) {
            let took = backend::native_compute(x86, args.iterations)?;
            println!("{}", line(args.iterations, took.as_nanos() as u64));
        }
        return Ok(common::error::EXIT_OK);
    }
    // Elsewhere: the same command, without --lab, inside the lab host that has that CPU.
    let inner: Vec<String> = ["lab-native", "--arch", if x86 { "x86" } else { "riscv" }, "--runs"]
        .map(String::from)
        .into_iter()
        .chain([args.runs.to_string(), "compute".into(), args.iterations.to_string()])
        .collect();
    in_lab(x86, &inner)
}

#[cfg(target_arch = "x86_64")]
fn in_lab(x86: bool, inner: &[String]) -> Result<i32> {
    let vm = VmConfig { mem_size: 0, ..VmConfig::default() };
    if x86 {
        return Ok(vmm_x86::lab::run_inner(&vm, inner, &[])?.exit_code());
    }
    let config = urvirt_riscv::RiscvConfig {
        vm: VmConfig { mem_size: urvirt_riscv::config::DEFAULT_MEM, ..VmConfig::default() },
        ecall_trap: urvirt_riscv::EcallTrap::Auto,
        stats: false,
    };
    Ok(urvirt_riscv::lab::run_inner(&config, inner, &[])?.exit_code())
}

#[cfg(not(target_arch = "x86_64"))]
fn in_lab(x86: bool, _inner: &[String]) -> Result<i32> {
    let _ = VmConfig::default;
    Err(Error::bad_input(format!(
        "lab-native --arch {}: no lab host for it on this {} host",
        if x86 { "x86" } else { "riscv" },
        std::env::consts::ARCH
    )))
}

pub fn line(iterations: u64, ns: u64) -> String {
    format!("native compute N={iterations} ns={ns}")
}

/// The ns of every `native compute N=<n> ns=<ns>` line for this N.
pub fn parse_lines(stdout: &str, iterations: u64) -> Vec<u64> {
    let prefix = format!("native compute N={iterations} ns=");
    stdout.lines().filter_map(|l| l.trim().strip_prefix(&prefix)?.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let out = format!("noise\n{}\n{}\nnative compute N=9 ns=1\n", line(1000, 250), line(1000, 260));
        assert_eq!(parse_lines(&out, 1000), [250, 260]);
        assert!(parse_lines("native compute N=1000 ns=x", 1000).is_empty());
    }
}
