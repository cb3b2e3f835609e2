//! URVirt: a trap-and-emulate RISC-V hypervisor that runs in U-mode as an ordinary Linux process.
//!
//! The guest's S-mode kernel runs directly on the CPU in our own (U-mode) process. Privileged
//! instructions raise SIGILL, faults raise SIGSEGV/SIGBUS, and `ecall` (SBI) raises SIGSYS
//! through seccomp or syscall user dispatch; handlers edit the saved context to emulate.
//!
//! **Guest and monitor share one address space: a hostile guest that jumps into monitor code
//! is not contained.** URVirt traps what a cooperating kernel does; see the `engine` module's docs.
//!
//! Pure, host-independent pieces, unit-tested on any host:
//! - [`decode`]: the trapped instruction; [`csr`]: the virtual S-mode CSR file;
//! - [`trap`]: delivery to stvec, sret, interrupt selection; [`sbi`]: the SBI extensions;
//! - [`hart`]: the `Hart` and the handlers the engine calls (`on_illegal`, `on_ecall`, ...);
//! - [`platform`]: what those handlers need from the host, as a trait;
//! - [`guest_timer`]: when to arm the host timer for the SBI deadline; [`stuck`]: a guest retrying a fault forever;
//! - [`fdt`]: the guest's device tree; [`loader`]: raw and ELF kernels; [`bpf`]: the seccomp program.
//! - Devices: [`layout`], the physical map (QEMU virt's); [`mmio`], a guest load or store to a
//!   device performed on the `common::bus::Bus`.
//! - Sv39: [`mmu`], the page-table walk; [`tlb`], what the software TLB maps and what each
//!   satp write, sfence.vma and mode switch takes away; [`interp`] (with [`rvc`]), the
//!   interpreter for what cannot run natively; [`vmem`], the one translate-then-access path.
//!
//! The `engine` (and `bench`) exist only on riscv64 Linux; elsewhere [`lab`] runs the riscv64
//! build of `vmm` inside a riscv64 Linux under qemu-system-riscv64.
#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
pub mod bench;
pub mod bpf;
pub mod config;
pub mod csr;
pub mod decode;
#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
pub mod engine;
pub mod fdt;
pub mod guest_timer;
pub mod hart;
pub mod interp;
pub mod lab;
pub mod layout;
pub mod loader;
pub mod mmio;
pub mod mmu;
pub mod platform;
pub mod rvc;
pub mod sbi;
pub mod stuck;
pub mod teach;
pub mod tlb;
pub mod trap;
pub mod vmem;

pub use config::{EcallTrap, RiscvConfig};

use common::vm::VirtualMachine;
use common::Result;

/// The RISC-V backend for this host: the URVirt engine on riscv64 Linux, the lab host elsewhere.
pub fn new_vm(config: RiscvConfig) -> Result<Box<dyn VirtualMachine>> {
    #[cfg(all(target_arch = "riscv64", target_os = "linux"))]
    {
        Ok(Box::new(engine::UrvirtVm::new(config)?))
    }
    #[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
    {
        Ok(Box::new(lab::LabHostVm::new(config)?))
    }
}
