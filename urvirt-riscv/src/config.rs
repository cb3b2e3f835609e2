//! What `vmm run --arch riscv` passes to URVirt, whether it runs here or inside the lab host.
use common::vm::VmConfig;

/// How a guest `ecall` is made to trap instead of becoming a host syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcallTrap {
    /// Syscall user dispatch if the host kernel has it (Linux >= 6.4), else seccomp.
    Auto,
    /// A classic-BPF seccomp filter on the instruction pointer: SECCOMP_RET_TRAP -> SIGSYS.
    Seccomp,
    /// prctl(PR_SET_SYSCALL_USER_DISPATCH): the kernel sends SIGSYS for syscalls outside the monitor.
    Sud,
}

impl EcallTrap {
    pub fn as_str(self) -> &'static str {
        match self {
            EcallTrap::Auto => "auto",
            EcallTrap::Seccomp => "seccomp",
            EcallTrap::Sud => "sud",
        }
    }
}

#[derive(Clone)]
pub struct RiscvConfig {
    pub vm: VmConfig,
    pub ecall_trap: EcallTrap,
    /// Print the trap statistics table after the run (the lab host passes this through).
    pub stats: bool,
}

/// Guest RAM size when `--mem` is not given.
pub const DEFAULT_MEM: u64 = 128 << 20;
