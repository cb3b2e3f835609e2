//! Lab hosts: when this machine cannot run a backend itself (RISC-V on an x86 machine; x86
//! full-boot on a host without VMX/SVM), vmm runs a build of itself inside a small Linux under
//! QEMU that can, and relays the console both ways. The architectures differ only in the
//! [`LabHost`] they describe (QEMU machine, kernel, the inner vmm); everything else is here.
//!
//! - [`cpio`]: the initramfs writer (the inner vmm as /init, its command line, the guest's files).
//! - [`frame`]: how init and the outer vmm talk over the one serial line.
//! - `host` / `qemu`: describe a lab, pack the initramfs, boot it, relay, return the inner exit.
//! - `init`: PID 1 of the lab host (the same vmm binary, started by the lab's kernel).
pub mod cpio;
pub mod frame;
mod host;
mod init;
mod qemu;

pub use host::{inner_path, run_inner, LabHost};

/// When this binary is PID 1 of a lab host's Linux, act as its init (runs the guest, reports
/// the exit status, ends the machine) and never return. Otherwise return at once.
pub fn maybe_run_as_init() {
    init::run_if_lab_init();
}
