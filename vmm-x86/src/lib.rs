//! The x86 backend of vmm: guests on /dev/kvm, driven by KVM_RUN exits.
pub mod config;
pub mod linux;

pub use config::{EntryMode, LinuxOptions, X86Config};

use common::vm::VirtualMachine;
use common::{Error, Result};

/// A KVM virtual machine configured by `config` (placeholder until the backend lands).
pub fn new_vm(_config: X86Config) -> Result<Box<dyn VirtualMachine>> {
    Err(Error::bad_input("the x86 backend is not built yet"))
}

/// What `vmm info` prints about this host's KVM.
pub fn info() -> Result<String> {
    Err(Error::bad_input("the x86 backend is not built yet"))
}
