//! URVirt's seccomp jail: the guest thread's allowlist of the monitor's own system calls.
//!
//! Guest and monitor share one address space, so a guest can jump into monitor code and run
//! its `ecall`s. The ecall trap ([`super::seccomp`], [`super::sud`]) only catches ecalls
//! made from guest RAM (it matches on the instruction pointer, which seccompiler cannot);
//! this allowlist ([`common::jail::apply`]) limits what any code on the guest thread may
//! ask of the host to what the monitor itself does there, from just before the guest is
//! entered to the end of the thread. A call outside it raises SIGSYS, which the engine's
//! handler reports through [`common::jail::report_blocked`] (one line, exit 3).
//!
//! Not in the list (so refused): opening files, sockets, exec, fork/clone, ptrace, kill of
//! other processes, mount, and everything else a monitor in a handler never needs.
use common::Result;

/// The name in the one-line report.
const THREAD: &str = "urvirt guest";

/// What the guest thread calls while and after the guest runs (`write`, `exit_group` and
/// `rt_sigreturn` are always allowed by common::jail).
const ALLOWED: &[i64] = &[
    // Handlers: the SBI timer and --timeout, the console, clocks the vDSO may fall back on;
    // futex for locks and wfi's sleep (engine/devices.rs), which a device interrupt ends.
    libc::SYS_timer_settime,
    libc::SYS_clock_gettime,
    libc::SYS_futex,
    // Entering the guest: the enter signal sent to this thread (and SIGALRM to it when a
    // device's interrupt rises; on this thread that is skipped, gettid tells).
    libc::SYS_tgkill,
    libc::SYS_getpid,
    libc::SYS_gettid,
    // Memory for a statistics kind seen for the first time, or a failure message; and the
    // Sv39 software TLB, which maps, re-protects and reserves guest pages (engine/paging.rs).
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_munmap,
    libc::SYS_madvise,
    libc::SYS_mremap, // realloc of a large buffer
    // After the guest: blocking SIGALRM, turning SUD off, restoring handlers and the signal
    // stack, deleting the timers, and the thread's own exit.
    libc::SYS_rt_sigprocmask,
    libc::SYS_prctl,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_timer_delete,
    libc::SYS_exit,
    libc::SYS_sched_yield,
    // A lab mark reads the host layer's counters (what Linux did without a signal).
    libc::SYS_getrusage,
];

/// Puts the calling (guest) thread in the jail.
pub fn apply() -> Result<()> {
    common::jail::apply(THREAD, ALLOWED)
}
