//! The x86 seccomp allowlists (applied through common::jail): what the vCPU thread and the
//! console input thread may call once the VM is set up, and nothing more. Found by running
//! hello, the flat guests, the Linux kernel and the pty tests with the jail on (a blocked call
//! prints its name). Everything before (opening /dev/kvm, mapping RAM, reading images) and
//! after (diagnostics, --stats' RSS from /proc) runs on the main thread, outside the jail.
//!
//! Both lists also carry what the runtime may need without the code asking: the allocator
//! (brk, mmap, mprotect to grow a thread's heap, munmap, madvise), clock_gettime (a real
//! system call where the host's clock source has no vDSO path), and ending a thread
//! (rt_sigprocmask, sigaltstack, munmap, madvise, exit). `ioctl` is allowed with any request:
//! common::jail filters by call number only; the vCPU thread's own are KVM_RUN and KVM_GET_REGS.

/// The vCPU thread: KVM_RUN (and KVM_GET_REGS for a diagnostic), console output, the lock
/// and allocator the run loop's devices and statistics use, the watchdog's thread, the kick
/// signal's return, and ending the thread.
pub const VCPU: &[i64] = &[
    libc::SYS_ioctl,
    libc::SYS_write,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
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
/// A fatal signal (SIGTERM...) may land on this thread; its handler restores the terminal
/// (TCSETS, always allowed), then resets the action and raises the signal again (rt_sigaction,
/// gettid, getpid, tgkill, rt_sigprocmask).
pub const CONSOLE: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_munmap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_thread_may_open_files_start_programs_or_use_the_network() {
        let forbidden = [
            libc::SYS_open,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_ptrace,
            libc::SYS_process_vm_writev,
            libc::SYS_seccomp,
            libc::SYS_prctl,
        ];
        for (name, list) in [("vcpu", VCPU), ("console", CONSOLE)] {
            for nr in forbidden {
                assert!(!list.contains(&nr), "{name} allows {}", common::jail::syscall_name(nr));
            }
        }
    }
}
