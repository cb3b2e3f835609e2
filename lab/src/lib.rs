//! Lab hosts: when this machine cannot run a backend itself (RISC-V on an x86 machine; x86
//! full-boot on a host without VMX/SVM), vmm runs a build of itself inside a small Linux under
//! QEMU that can, and relays the console both ways. The architectures differ only in the
//! [`LabHost`] they describe (QEMU machine, kernel, the inner vmm); everything else is here.
//!
//! - [`cpio`]: the initramfs writer (the inner vmm as /init, its command line, the guest's files).
//! - [`frame`]: how init and the outer vmm talk over the one serial line; [`keys`]: the keys
//!   going the other way, with Ctrl-A x passed on to the inner vmm.
//! - `host` / `qemu`: describe a lab, pack the initramfs, boot it, relay, return the inner exit.
//! - `init`: PID 1 of the lab host (the same vmm binary, started by the lab's kernel).
//! - [`passthrough`]: the `--trace` and `--mem-file` files, which stay on the outer machine.
pub mod cpio;
pub mod frame;
pub mod gdb_relay;
mod host;
mod init;
pub mod keys;
pub mod passthrough;
mod qemu;

pub use host::{inner_disk_args, inner_path, run_inner, LabHost, DISK_LINK};

/// Tests only: with this variable set, the outer vmm adds [`SIGNAL_STORM_FILE`] to the
/// initramfs, and init then sends the inner vmm a stream of process-directed SIGALRMs while
/// the guest runs (a real test of which thread a backend's signal handlers may run on).
pub const SIGNAL_STORM_ENV: &str = "VMM_LAB_TEST_SIGNAL_STORM";
pub const SIGNAL_STORM_FILE: &str = "/vmm-signal-storm";
/// Tests only: with this variable set, the outer vmm adds [`JAIL_PROBE_FILE`], and the inner
/// vmm's handler of the guest's first SBI call tries `openat` (the jail must report it from
/// inside a handler too).
pub const JAIL_PROBE_ENV: &str = "VMM_LAB_TEST_JAIL_PROBE_HANDLER";
pub const JAIL_PROBE_FILE: &str = "/vmm-jail-probe-handler";
/// Tests only: with this variable set, the outer vmm adds [`MONITOR_ECALL_FILE`], and URVirt
/// starts the guest with a2 = an address in the monitor's own code just before an `ecall`
/// (its signal-return stub), so a guest can jump into monitor code wherever the loader put it.
pub const MONITOR_ECALL_ENV: &str = "VMM_LAB_TEST_MONITOR_ECALL";
pub const MONITOR_ECALL_FILE: &str = "/vmm-monitor-ecall";

/// When this binary is PID 1 of a lab host's Linux, act as its init (runs the guest, reports
/// the exit status, ends the machine) and never return. Otherwise return at once.
pub fn maybe_run_as_init() {
    init::run_if_lab_init();
}
