//! The x86 seccomp allowlists (applied through common::jail): what the vCPU thread and the
//! console input thread may call once the VM is set up, and nothing more. Found by running
//! hello, the flat guests, the Linux kernel and the pty tests with the jail on (a blocked call
//! prints its name). Everything before (opening /dev/kvm, mapping RAM, reading images) and
//! after (diagnostics, --stats' RSS from /proc) runs on the main thread, outside the jail.
//!
//! Both lists also carry what the runtime may need without the code asking: the allocator
//! (brk, mmap, mprotect to grow a thread's heap, munmap, madvise), clock_gettime (a real
//! system call where the host's clock source has no vDSO path), and ending a thread
//! (rt_sigprocmask, sigaltstack, munmap, madvise, exit). The vCPU thread's `ioctl` is limited to
//! [`VCPU_IOCTLS`] (and TCSETS, which every jailed thread may use to restore the terminal).

/// The vCPU thread: KVM_RUN (and KVM_GET_REGS for a diagnostic), console output, the lock
/// and allocator the run loop's devices and statistics use, the watchdog's thread, the kick
/// signal's return, and ending the thread.
pub const VCPU: &[i64] = &[
    libc::SYS_write,
    libc::SYS_mremap,
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

/// What the vCPU thread also calls with --stats or --stats-json: a mark reads KVM's
/// statistics (pread64) and the thread's page faults (getrusage); see teach.rs, kvm_stats.rs.
/// Without them no mark reads anything, so a plain run's thread may not.
pub const COUNTING: &[i64] = &[libc::SYS_pread64, libc::SYS_getrusage];

/// `_IOR(KVMIO, nr, T)`, as linux/kvm.h spells the KVM ioctl requests.
const fn kvm_ior(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (0xAE << 8) | nr
}

/// `_IOW(KVMIO, nr, T)` and `_IOWR(KVMIO, nr, T)`.
const fn kvm_iow(nr: u64, size: usize) -> u64 {
    (1 << 30) | ((size as u64) << 16) | (0xAE << 8) | nr
}
const fn kvm_iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (0xAE << 8) | nr
}

/// What the vCPU thread also asks with --gdb (gdb.rs): KVM_SET_REGS, KVM_GET_SREGS,
/// KVM_TRANSLATE (virtual addresses), KVM_GET_FPU, KVM_SET_FPU, KVM_SET_GUEST_DEBUG.
pub const GDB_IOCTLS: &[u64] = &[
    kvm_iow(0x82, std::mem::size_of::<kvm_bindings::kvm_regs>()),
    kvm_ior(0x83, std::mem::size_of::<kvm_bindings::kvm_sregs>()),
    kvm_iowr(0x85, std::mem::size_of::<kvm_bindings::kvm_translation>()),
    kvm_ior(0x8c, std::mem::size_of::<kvm_bindings::kvm_fpu>()),
    kvm_iow(0x8d, std::mem::size_of::<kvm_bindings::kvm_fpu>()),
    kvm_iow(0x9b, std::mem::size_of::<kvm_bindings::kvm_guest_debug>()),
];

/// What the vCPU thread also asks for a Linux guest whose UART writes KVM queues (coalesced.rs):
/// KVM_REGISTER_COALESCED_MMIO and KVM_UNREGISTER_COALESCED_MMIO, on the THR port only.
pub const QUEUE_IOCTLS: &[u64] = &[
    kvm_iow(0x67, std::mem::size_of::<kvm_bindings::kvm_coalesced_mmio_zone>()),
    kvm_iow(0x68, std::mem::size_of::<kvm_bindings::kvm_coalesced_mmio_zone>()),
];

/// The vCPU thread's ioctl requests: KVM_RUN (`_IO(KVMIO, 0x80)`) and KVM_GET_REGS (the RIP of
/// a failed exit's message).
pub const VCPU_IOCTLS: &[u64] = &[0xAE80, kvm_ior(0x81, std::mem::size_of::<kvm_bindings::kvm_regs>())];

/// The console input thread: reading stdin, handing keys to the UART (its lock, its irqfd
/// write, a short sleep while the FIFO is full), Ctrl-A x's kick (pthread_kill), and ending.
/// A fatal signal (SIGTERM...) may land on this thread; its handler restores the terminal
/// (TCSETS, always allowed), then resets the action and raises the signal again (rt_sigaction,
/// gettid, getpid, tgkill, rt_sigprocmask).
pub const CONSOLE: &[i64] = &[
    libc::SYS_read,
    libc::SYS_mremap,
    libc::SYS_write,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep, // musl's sleep (std before Rust 1.95 calls nanosleep())
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_tkill, // musl's pthread_kill
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
    fn kvm_requests_match_linux_kvm_h() {
        assert_eq!(VCPU_IOCTLS, &[0xAE80, 0x8090_AE81]);
        // KVM_SET_REGS, KVM_GET_SREGS, KVM_TRANSLATE, KVM_GET_FPU, KVM_SET_FPU, KVM_SET_GUEST_DEBUG
        assert_eq!(GDB_IOCTLS, &[0x4090_AE82, 0x8138_AE83, 0xC018_AE85, 0x81A0_AE8C, 0x41A0_AE8D, 0x4048_AE9B]);
        // KVM_REGISTER_COALESCED_MMIO, KVM_UNREGISTER_COALESCED_MMIO
        assert_eq!(QUEUE_IOCTLS, &[0x4010_AE67, 0x4010_AE68]);
    }

    #[test]
    fn counters_are_readable_only_when_counting() {
        for gdb in [false, true] {
            let (plain, _) = crate::gdb::jail_lists(gdb, false, false);
            let (counting, _) = crate::gdb::jail_lists(gdb, true, false);
            for nr in COUNTING {
                assert!(!plain.contains(nr) && counting.contains(nr), "{}", common::jail::syscall_name(*nr));
            }
        }
    }

    #[test]
    fn queue_ioctls_only_for_a_queued_uart() {
        let (_, plain) = crate::gdb::jail_lists(false, false, false);
        let (_, queued) = crate::gdb::jail_lists(false, false, true);
        for request in QUEUE_IOCTLS {
            assert!(!plain.contains(request) && queued.contains(request), "{request:#x}");
        }
    }

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
