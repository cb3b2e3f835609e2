//! What `vmm run --arch x86` passes to the KVM backend.
use common::vm::VmConfig;
use std::path::PathBuf;

/// How a flat binary is entered (ignored for Linux kernels, which pick their own entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryMode {
    /// 16-bit real mode, CS base 0, RIP 0x1000: exactly the classic 25-byte demo.
    #[default]
    Real,
    /// 32-bit protected mode with flat 4 GiB segments, paging off.
    Protected,
    /// 64-bit long mode with identity-mapped page tables.
    Long,
}

/// Options for booting a Linux kernel (bzImage or ELF vmlinux).
#[derive(Debug, Clone, Default)]
pub struct LinuxOptions {
    /// Replaces the default command line when given.
    pub cmdline: Option<String>,
    pub initrd: Option<PathBuf>,
}

#[derive(Clone)]
pub struct X86Config {
    pub vm: VmConfig,
    /// The entry mode for a flat binary; None means the default (real). Refused for Linux,
    /// which picks its own entry.
    pub mode: Option<EntryMode>,
    pub linux: LinuxOptions,
    /// Collect the extra --stats notes (final registers, monitor RSS), which cost a /proc read.
    pub stats: bool,
    /// `--lab-devices` (flat binaries): the teaching lab's devices (teach.rs): in-kernel irqchip
    /// and PIT, an exit port, a read-only MMIO register.
    pub lab_devices: bool,
}

/// Guest RAM when `--mem` is not given: enough for a small Linux; KVM maps it lazily, so
/// small guests do not pay for it.
pub const DEFAULT_MEM: u64 = 256 << 20;
