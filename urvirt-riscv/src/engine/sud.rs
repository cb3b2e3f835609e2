//! Syscall user dispatch: prctl(PR_SET_SYSCALL_USER_DISPATCH) makes the kernel send SIGSYS
//! (si_code SYS_USER_DISPATCH) for syscalls made outside one allowed code range.
//!
//! The allowed range is the monitor's own executable mapping (our signal-return stub lives
//! there), so the monitor's syscalls always pass. A selector byte covers the rest: the vDSO
//! lies outside that range and may fall back to a real syscall, so the selector says ALLOW
//! while monitor code runs and BLOCK while the guest runs; the signal handlers flip it on
//! entry and before returning to the guest. With BLOCK, every guest `ecall` traps.
//!
//! Needs a kernel whose riscv64 entry code is the generic one (CONFIG_GENERIC_ENTRY, Linux 6.4
//! on): the 6.12 lab kernel has it, Linux 6.1 does not (prctl fails with EINVAL there).
use common::Error;
use std::sync::atomic::{AtomicU8, Ordering};

const PR_SET_SYSCALL_USER_DISPATCH: libc::c_int = 59;
const PR_SYS_DISPATCH_OFF: libc::c_ulong = 0;
const PR_SYS_DISPATCH_ON: libc::c_ulong = 1;
const SYSCALL_DISPATCH_FILTER_ALLOW: u8 = 0;
const SYSCALL_DISPATCH_FILTER_BLOCK: u8 = 1;

/// The selector byte the kernel reads on every syscall of this thread.
static SELECTOR: AtomicU8 = AtomicU8::new(SYSCALL_DISPATCH_FILTER_ALLOW);

/// Turns dispatch on for the calling thread, allowing syscalls from `[start, end)`.
pub fn enable(start: u64, end: u64) -> std::io::Result<()> {
    SELECTOR.store(SYSCALL_DISPATCH_FILTER_ALLOW, Ordering::SeqCst);
    // SAFETY: the selector is a static that outlives the dispatch setting; the range is ours.
    let rc =
        unsafe { libc::prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, start, end - start, SELECTOR.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The first Linux whose riscv64 entry code offers syscall user dispatch.
const FIRST_LINUX_WITH_SUD: &str = "6.4";

/// The error for a forced `--ecall sud` on a kernel without it.
pub fn unavailable(e: &std::io::Error) -> Error {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    unavailable_message(release.trim(), &common::image::io_reason(e))
}

/// The one line for a refused `--ecall sud`: names the kernel, the version it needs and the way out.
fn unavailable_message(release: &str, reason: &str) -> Error {
    let release = if release.is_empty() { "of unknown version" } else { release };
    Error::bad_input(format!(
        "--ecall sud: syscall user dispatch on riscv64 needs Linux >= {FIRST_LINUX_WITH_SUD}, \
         this kernel is {release} ({reason}); use --ecall seccomp or --ecall auto"
    ))
}

pub fn disable() {
    SELECTOR.store(SYSCALL_DISPATCH_FILTER_ALLOW, Ordering::SeqCst);
    // SAFETY: turning dispatch off takes no pointers.
    unsafe { libc::prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0) };
}

/// Monitor code is running: let its (and the vDSO's) syscalls through.
#[inline(always)]
pub fn allow() {
    SELECTOR.store(SYSCALL_DISPATCH_FILTER_ALLOW, Ordering::Relaxed);
}

/// The guest is about to run: every syscall outside the monitor's code traps.
#[inline(always)]
pub fn block() {
    SELECTOR.store(SYSCALL_DISPATCH_FILTER_BLOCK, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_kernel_and_the_version_it_needs() {
        let msg = unavailable_message("6.1.0", "Invalid argument").to_string();
        assert!(msg.contains("needs Linux >= 6.4"), "{msg}");
        assert!(msg.contains("this kernel is 6.1.0 (Invalid argument)"), "{msg}");
        assert!(msg.contains("--ecall seccomp"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(unavailable_message("", "x").to_string().contains("of unknown version"));
    }
}
