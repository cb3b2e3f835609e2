//! The x86 seccomp allowlists (applied through common::jail): what the vCPU thread and the
//! console input thread may call once the VM is set up, and nothing more. Found by running
//! hello, the flat guests, the Linux kernel and the pty tests with the jail on (a blocked call
//! prints its name). Everything before (opening /dev/kvm, mapping RAM, reading images) and
//! after (diagnostics, --stats' RSS from /proc) runs on the main thread, outside the jail.

/// The vCPU thread: KVM_RUN (and KVM_GET_REGS for a diagnostic), console output, the lock
/// and allocator the run loop's devices and statistics use, the watchdog's thread, the kick
/// signal's return, and ending the thread.
pub const VCPU: &[i64] = &[
    libc::SYS_ioctl,
    libc::SYS_write,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_munmap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
];

/// The console input thread: reading stdin, handing keys to the UART (its lock, its irqfd
/// write, a short sleep while the FIFO is full), Ctrl-A x's kick (pthread_kill), and ending.
pub const CONSOLE: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_futex,
    libc::SYS_clock_nanosleep,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_rt_sigprocmask,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_munmap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
];
