//! The lab host: on a machine that is not riscv64 Linux, `vmm run --arch riscv` runs the
//! riscv64 build of vmm inside a small riscv64 Linux under qemu-system-riscv64.
//!
//! - [`cpio`]: the initramfs writer (the riscv64 vmm as /init, the guest, the inner command line).
//! - [`frame`]: how init and the outer vmm talk over the one serial line.
//! - `host` / `qemu` (not on riscv64): find the lab, boot it, relay the console, return the exit.
//! - `init` (riscv64 only): PID 1 of the lab host.
pub mod cpio;
pub mod frame;

#[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
mod host;
#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
mod init;
#[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
mod qemu;

#[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
pub use host::{run_inner, Lab, LabHostVm};

/// When this binary is PID 1 of the lab host's riscv64 Linux, act as its init (runs the guest,
/// reports the exit status, powers off) and never return. Otherwise return at once.
pub fn maybe_run_as_init() {
    #[cfg(all(target_arch = "riscv64", target_os = "linux"))]
    init::run_if_pid1();
}
