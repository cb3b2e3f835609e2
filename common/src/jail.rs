//! The seccomp jail: each of vmm's threads, once its set-up is done, runs under an allowlist of
//! exactly the system calls it needs (as Firecracker does). Anything else raises SIGSYS, and
//! vmm ends with one line naming the call and exit code 3 ([`EXIT_JAIL`]).
//!
//! Lists are built with seccompiler, one filter per thread (a filter cannot be removed, so it
//! is applied on the thread that runs it, after that thread's own set-up). `--no-seccomp`
//! turns the jail off; backends check `VmConfig::jail` before calling [`apply`].
use crate::error::EXIT_JAIL;
use crate::{Error, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::cell::Cell;
use std::collections::BTreeMap;

thread_local! {
    /// The calling thread's jail name, for the message. A const thread-local with no
    /// destructor: reading it from a signal handler is a plain TLS load.
    static THREAD: Cell<&'static str> = const { Cell::new("") };
}

/// Calls every jailed thread may make: the reporter's own `write` and `exit_group`, and
/// returning from a signal handler.
const ALWAYS: [i64; 3] = [libc::SYS_write, libc::SYS_exit_group, libc::SYS_rt_sigreturn];

/// Puts the calling thread under an allowlist: the calls in `allowed` (any arguments), the
/// [`ALWAYS`] set, and `ioctl(TCSETS)` so the reporter can restore the terminal. Everything
/// else raises SIGSYS (SECCOMP_RET_TRAP).
pub fn apply(thread: &'static str, allowed: &[i64]) -> Result<()> {
    apply_with_ioctls(thread, allowed, &[])
}

/// As [`apply`], and `ioctl` with exactly the requests in `ioctls` (KVM_RUN, ...) besides
/// TCSETS. Listing `SYS_ioctl` in `allowed` instead allows every request.
pub fn apply_with_ioctls(thread: &'static str, allowed: &[i64], ioctls: &[u64]) -> Result<()> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| Error::bad_input(format!("seccomp jail ({thread}): {what}: {e}"));
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in allowed.iter().chain(ALWAYS.iter()) {
        rules.insert(nr, Vec::new()); // an empty rule list matches any arguments
    }
    if !allowed.contains(&libc::SYS_ioctl) {
        // One rule per request; the rules of a call are alternatives. The request is compared
        // as 32 bits, as the kernel reads it.
        #[allow(clippy::unnecessary_cast)] // an int in musl, an unsigned long in glibc
        let requests = std::iter::once(libc::TCSETS as u64).chain(ioctls.iter().copied());
        let by_request = requests
            .map(|request| {
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
                    .and_then(|c| SeccompRule::new(vec![c]))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| fail("ioctl rule", &e))?;
        rules.insert(libc::SYS_ioctl, by_request);
    }
    let arch = std::env::consts::ARCH.try_into().map_err(|e| fail("architecture", &e))?;
    let filter =
        SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, arch).map_err(|e| fail("filter", &e))?;
    let program: BpfProgram = filter.try_into().map_err(|e| fail("compile", &e))?;
    THREAD.with(|t| t.set(thread));
    seccompiler::apply_filter(&program).map_err(|e| fail("install", &e))
}

/// Installs the process-wide SIGSYS handler that reports a blocked call. Backends with a
/// SIGSYS handler of their own (URVirt's) call [`report_blocked`] from it instead.
pub fn install_reporter() -> Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid empty action.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: the handler only calls async-signal-safe functions (write, tcsetattr, _exit).
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(Error::bad_input(format!(
            "seccomp jail: cannot install the SIGSYS handler: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// The system call number a seccomp SIGSYS reports (`si_syscall`).
///
/// # Safety
/// `info` must be the kernel's siginfo for a SIGSYS.
pub unsafe fn blocked_syscall(info: *const libc::siginfo_t) -> i64 {
    // The SIGSYS member of the siginfo union: void *call_addr; int syscall; unsigned arch.
    #[repr(C)]
    struct SigsysInfo {
        signo: libc::c_int,
        errno: libc::c_int,
        code: libc::c_int,
        call_addr: *mut libc::c_void,
        syscall: libc::c_int,
        arch: libc::c_uint,
    }
    // SAFETY: the caller passes a SIGSYS siginfo, whose layout starts as SigsysInfo.
    unsafe { (*(info as *const SigsysInfo)).syscall as i64 }
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    // SAFETY: the kernel passed the siginfo of this SIGSYS.
    report_blocked(unsafe { blocked_syscall(info) })
}

/// Writes `vmm: seccomp jail (<thread>): blocked system call <name> (<nr>)` to stderr,
/// restores the terminal and ends the process with [`EXIT_JAIL`]. Async-signal-safe: it
/// formats into a stack buffer and makes only `write`, `ioctl(TCSETS)` and `exit_group`.
pub fn report_blocked(nr: i64) -> ! {
    crate::console::restore_terminal();
    let mut line = Line::default();
    line.push(b"vmm: seccomp jail (");
    line.push(THREAD.with(|t| t.get()).as_bytes());
    line.push(b"): blocked system call ");
    line.push(syscall_name(nr).as_bytes());
    line.push(b" (");
    line.push_number(nr);
    line.push(b"); --no-seccomp turns the jail off\n");
    // SAFETY: writing our own buffer to stderr, then ending the process without unwinding.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.buf.as_ptr() as *const libc::c_void, line.len);
        libc::_exit(EXIT_JAIL)
    }
}

/// A fixed buffer for building the message without allocating.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Line { buf: [0; 160], len: 0 }
    }
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.push(b"-");
        }
        self.push(&digits[i..]);
    }
}

/// Names for the calls vmm makes or is likely to be stopped at; others print as "syscall".
macro_rules! names {
    ($($name:ident),* $(,)?) => {
        /// The name of system call `nr` on this architecture ("syscall" when not in the table).
        pub fn syscall_name(nr: i64) -> &'static str {
            $(if nr == libc::$name { return &stringify!($name)[4..]; })*
            "syscall"
        }
    };
}

names!(
    SYS_read,
    SYS_write,
    SYS_openat,
    SYS_close,
    SYS_fstat,
    SYS_lseek,
    SYS_mmap,
    SYS_mprotect,
    SYS_munmap,
    SYS_brk,
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_ioctl,
    SYS_pread64,
    SYS_pwrite64,
    SYS_readv,
    SYS_writev,
    SYS_sched_yield,
    SYS_mremap,
    SYS_madvise,
    SYS_dup,
    SYS_dup3,
    SYS_nanosleep,
    SYS_getpid,
    SYS_socket,
    SYS_connect,
    SYS_accept4,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_bind,
    SYS_listen,
    SYS_clone,
    SYS_clone3,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_wait4,
    SYS_kill,
    SYS_tgkill,
    SYS_tkill,
    SYS_uname,
    SYS_fcntl,
    SYS_flock,
    SYS_fsync,
    SYS_fdatasync,
    SYS_ftruncate,
    SYS_getcwd,
    SYS_chdir,
    SYS_mkdirat,
    SYS_unlinkat,
    SYS_renameat2,
    SYS_fchmod,
    SYS_fchown,
    SYS_umask,
    SYS_gettid,
    SYS_futex,
    SYS_sched_getaffinity,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_timer_create,
    SYS_timer_settime,
    SYS_timer_delete,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_eventfd2,
    SYS_ppoll,
    SYS_pselect6,
    SYS_prctl,
    SYS_seccomp,
    SYS_getrandom,
    SYS_memfd_create,
    SYS_statx,
    SYS_newfstatat,
    SYS_sigaltstack,
    SYS_set_robust_list,
    SYS_rseq,
    SYS_prlimit64,
    SYS_getuid,
    SYS_geteuid,
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_mount,
    SYS_reboot,
    SYS_setsid,
    SYS_pipe2,
    SYS_splice,
    SYS_sendfile,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_libc_table() {
        assert_eq!(syscall_name(libc::SYS_openat), "openat");
        assert_eq!(syscall_name(libc::SYS_write), "write");
        assert_eq!(syscall_name(100_000), "syscall");
    }

    #[test]
    fn numbers_format_without_allocating() {
        let mut l = Line::default();
        l.push_number(0);
        l.push(b" ");
        l.push_number(257);
        l.push(b" ");
        l.push_number(-38);
        assert_eq!(&l.buf[..l.len], b"0 257 -38");
    }

    #[test]
    fn a_long_line_is_cut_not_overflowed() {
        let mut l = Line::default();
        for _ in 0..20 {
            l.push(b"0123456789");
        }
        assert_eq!(l.len, 160);
    }

    /// What the calls a jailed thread needs in order to end: the tests' lists all hold them.
    const THREAD_EXIT: [i64; 6] = [
        libc::SYS_futex,
        libc::SYS_munmap,
        libc::SYS_exit,
        libc::SYS_sigaltstack,
        libc::SYS_madvise,
        libc::SYS_rt_sigprocmask,
    ];

    /// Runs `body` on a new thread under a real filter (`allowed` plus [`THREAD_EXIT`], and
    /// `ioctls`) and returns the first call the jail refused there (0: none). One handler for
    /// every test, recording per thread: the trap is delivered to the thread that made the
    /// call, and tests run in parallel.
    fn refused_on_a_jailed_thread(allowed: &[i64], ioctls: &'static [u64], body: fn()) -> i64 {
        thread_local! {
            static REFUSED: Cell<i64> = const { Cell::new(0) };
        }
        extern "C" fn note(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
            // SAFETY: the kernel's SIGSYS siginfo.
            let nr = unsafe { blocked_syscall(info) };
            REFUSED.with(|r| {
                if r.get() == 0 {
                    r.set(nr)
                }
            });
        }
        let allowed: Vec<i64> = allowed.iter().chain(THREAD_EXIT.iter()).copied().collect();
        std::thread::spawn(move || {
            // SAFETY: a plain SA_SIGINFO handler that only touches a thread-local cell.
            unsafe {
                let mut a: libc::sigaction = std::mem::zeroed();
                a.sa_sigaction = note as *const () as libc::sighandler_t;
                a.sa_flags = libc::SA_SIGINFO;
                libc::sigaction(libc::SIGSYS, &a, std::ptr::null_mut());
            }
            apply_with_ioctls("test", &allowed, ioctls).unwrap();
            body();
            REFUSED.with(|r| r.get())
        })
        .join()
        .unwrap()
    }

    /// An allowed call works; a forbidden one raises SIGSYS instead of running.
    #[test]
    fn a_call_outside_the_list_is_refused() {
        let refused = refused_on_a_jailed_thread(&[libc::SYS_getpid], &[], || {
            // SAFETY: getpid has no preconditions.
            assert!(unsafe { libc::getpid() } > 0);
            // SAFETY: getppid has no preconditions; the jail turns it into SIGSYS (the call
            // does not run; what it "returns" is whatever the register held).
            unsafe { libc::syscall(libc::SYS_getppid) };
        });
        assert_eq!(refused, libc::SYS_getppid);
    }

    /// ioctl is allowed for the listed requests only: FIONREAD passes, FIONBIO is refused.
    #[test]
    fn an_ioctl_outside_the_requests_is_refused() {
        let listed = refused_on_a_jailed_thread(&[], &[libc::FIONREAD as u64], || {
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD on stdin writes one int we own (it may fail with ENOTTY: that
            // it is allowed is what counts).
            unsafe { libc::ioctl(libc::STDIN_FILENO, libc::FIONREAD, &mut n) };
        });
        assert_eq!(listed, 0, "a listed request passes");
        let unlisted = refused_on_a_jailed_thread(&[], &[libc::FIONREAD as u64], || {
            let mut on: libc::c_int = 0;
            // SAFETY: FIONBIO reads one int we own; the jail refuses it before it runs.
            unsafe { libc::ioctl(libc::STDIN_FILENO, libc::FIONBIO, &mut on) };
        });
        assert_eq!(unlisted, libc::SYS_ioctl, "another request is refused");
    }
}
