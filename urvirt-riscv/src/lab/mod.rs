//! The lab host: on a machine that is not riscv64 Linux, `vmm run --arch riscv` runs the
//! riscv64 build of vmm inside a small riscv64 Linux under qemu-system-riscv64.
//!
//! - [`cpio`]: the initramfs writer (the riscv64 vmm as /init, the guest, the inner command line).
//! - [`frame`]: how init and the outer vmm talk over the one serial line; [`keys`]: the
//!   keys going the other way, with Ctrl-A x passed on to the inner vmm.
//! - `host` / `qemu` (not on riscv64): find the lab, boot it, relay the console, return the exit.
//! - `init` (riscv64 only): PID 1 of the lab host.
pub mod cpio;
pub mod frame;
pub mod keys;

#[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
mod host;
#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
mod init;
#[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
mod qemu;

#[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
pub use host::{run_inner, Lab, LabHostVm};

/// Tests only: with this variable set, the outer vmm adds [`SIGNAL_STORM_FILE`] to the
/// initramfs, and init then sends the inner vmm a stream of process-directed SIGALRMs while
/// the guest runs (a real test of which thread URVirt's handlers may run on).
pub const SIGNAL_STORM_ENV: &str = "VMM_LAB_TEST_SIGNAL_STORM";
pub const SIGNAL_STORM_FILE: &str = "/vmm-signal-storm";

/// When this binary is PID 1 of the lab host's riscv64 Linux, act as its init (runs the guest,
/// reports the exit status, powers off) and never return. Otherwise return at once.
pub fn maybe_run_as_init() {
    #[cfg(all(target_arch = "riscv64", target_os = "linux"))]
    init::run_if_pid1();
}
