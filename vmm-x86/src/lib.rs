//! The x86 backend of vmm: guests on /dev/kvm, driven by KVM_RUN exits.
//!
//! - [`kvm`] - opening /dev/kvm with clear errors.
//! - [`memory`] - guest RAM (vm-memory) registered with KVM.
//! - [`modes`] - flat binaries at 0x1000 in real, protected or long mode; GDT and page-table helpers.
//! - [`exits`] - pure exit dispatch, and applying its result to the PIO/MMIO buses.
//! - [`disks`] - `--disk`: virtio-blk over virtio-mmio, irqfd, announced on the command line.
//! - [`diag`] - one-line diagnostics for dead guests (RIP, instruction bytes).
//! - [`watchdog`] - kicking the vCPU out of KVM_RUN: --timeout and Ctrl-A x.
//! - [`gdb`] - `--gdb`: the gdb remote stub's x86 target and its run-loop hooks.
//! - [`jail`] - the seccomp allowlists of the vCPU and console threads.
//! - [`vm`] - the VM, its vCPU and the run loop.
//! - [`trace`] - `--trace`: what an exit touched, from kvm_run.
//! - [`info`] - `vmm info`.
//! - [`lab`] - `--lab`: the same run inside a Linux on an emulated AMD-V CPU (QEMU TCG).
//! - [`bench`] - `vmm bench --arch x86`.
//! - [`linux`] - booting Linux (issue 3).
//! - [`teach`] - the teaching lab's x86 workloads: their run arguments, native compute, lab devices.
//! - [`kvm_stats`] - KVM's binary statistics of the vCPU (what KVM handled without vmm).
pub mod bench;
pub mod coalesced;
pub mod config;
pub mod diag;
pub mod disks;
pub mod exits;
pub mod gdb;
pub mod info;
pub mod irq;
pub mod jail;
pub mod kvm;
pub mod kvm_stats;
pub mod lab;
pub mod linux;
pub mod memory;
pub mod modes;
pub mod teach;
pub mod trace;
pub mod vm;
pub mod watchdog;

pub use config::{EntryMode, LinuxOptions, X86Config};

use common::vm::VirtualMachine;
use common::Result;

/// A KVM virtual machine configured by `config`. The image is loaded by `load`.
pub fn new_vm(config: X86Config) -> Result<Box<dyn VirtualMachine>> {
    Ok(Box::new(vm::X86Vm::new(config)?))
}

/// What `vmm info` prints about this host's KVM.
pub fn info() -> Result<String> {
    info::report()
}
