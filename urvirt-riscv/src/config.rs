//! What `vmm run --arch riscv` passes to URVirt, whether it runs here or inside the lab host.
use common::vm::VmConfig;
use common::{Error, Result};
use std::time::{Duration, Instant};

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

/// The smallest guest RAM URVirt accepts. Whether a kernel fits is the loader's question;
/// this keeps the layout (device tree in the top 64 KiB) meaningful.
pub const MIN_MEM: u64 = 1 << 20;
/// The largest: RAM starts at 0x8000_0000 and must end by 4 GiB, the 32-bit physical window
/// the engine keeps free of host mappings.
pub const MAX_MEM: u64 = 0x1_0000_0000 - crate::loader::RAM_BASE;

/// Checks `--mem` for RISC-V: 1 MiB to 2 GiB, in whole 4 KiB pages. Pure, so the lab host
/// refuses a bad size before it boots anything, and the engine refuses it again inside.
pub fn check_mem(mem_size: u64) -> Result<()> {
    if (MIN_MEM..=MAX_MEM).contains(&mem_size) && mem_size.is_multiple_of(4096) {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "--mem {}: URVirt needs between 1 MiB and 2 GiB of guest RAM, in whole 4 KiB pages",
        common::image::human_size(mem_size)
    )))
}

/// `start + after`, or None when that instant cannot be represented (a huge --timeout):
/// then there is no deadline at all, which is what such a timeout means in practice.
pub fn deadline(start: Instant, after: Duration) -> Option<Instant> {
    start.checked_add(after)
}

/// The message when `--timeout` ends a run, in the same words as on x86.
pub fn timeout_message(limit: Duration) -> String {
    format!("guest did not finish within {} s (--timeout)", limit.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_limits() {
        assert!(check_mem(DEFAULT_MEM).is_ok());
        assert!(check_mem(MIN_MEM).is_ok());
        assert!(check_mem(MAX_MEM).is_ok());
        for bad in [0, 8 << 10, MIN_MEM - 4096, MAX_MEM + 4096, (64 << 20) + 1, u64::MAX, 1 << 63] {
            let e = check_mem(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.message.starts_with("--mem ") && !e.message.contains('\n'), "{}", e.message);
        }
    }

    #[test]
    fn huge_timeouts_mean_no_deadline_not_a_panic() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::MAX), None);
        assert_eq!(deadline(now, Duration::from_secs(u64::MAX / 2)), None);
        assert_eq!(deadline(now, Duration::from_secs(1)), Some(now + Duration::from_secs(1)));
        assert_eq!(timeout_message(Duration::from_millis(1500)), "guest did not finish within 1.5 s (--timeout)");
    }
}
