//! Signal plumbing: the handler entry stub, the alternate signal stack, installing and
//! restoring handlers, and the one signal that starts the guest.
//!
//! Every handler enters through `urvirt_signal_entry`, a few instructions of assembly in
//! the monitor's code that:
//! - reload `gp` and `tp` with the monitor's values: the guest owns all 31 registers, and
//!   Rust code needs gp (linker relaxation) and tp (thread-locals, errno) to be ours;
//! - call the Rust dispatcher with (signal, siginfo, ucontext), on the sigaltstack;
//! - return with its own `li a7, 139; ecall` (rt_sigreturn). This is our private sigreturn
//!   path: riscv64 Linux ignores sa_restorer and would return through the vDSO's trampoline,
//!   which lies outside the code range syscall user dispatch allows, and which we do not want
//!   to depend on. The stub is inside the monitor's code, so seccomp and SUD let it through.
//!
//! Only the thread that runs the guest may ever run these handlers: a handler loads the
//! interrupted registers into the guest hart. Threads the engine spawns (the console reader)
//! start with [`HANDLED`] blocked ([`block_handled`] before spawning; a new thread inherits
//! the mask), and `dispatch` checks that it is on the guest thread's own signal stack before
//! doing anything else, so a signal that lands elsewhere never touches the hart.
use std::sync::atomic::{AtomicU64, Ordering};

/// The monitor's gp and tp, captured before entering the guest.
static MONITOR_GP: AtomicU64 = AtomicU64::new(0);
static MONITOR_TP: AtomicU64 = AtomicU64::new(0);

/// The signals URVirt handles. SIGUSR1 is the one that swaps the monitor for the guest.
pub const HANDLED: [libc::c_int; 7] =
    [libc::SIGILL, libc::SIGSEGV, libc::SIGBUS, libc::SIGSYS, libc::SIGTRAP, libc::SIGALRM, libc::SIGUSR1];
pub const ENTER_SIGNAL: libc::c_int = libc::SIGUSR1;

std::arch::global_asm!(
    ".pushsection .text.urvirt_signal_entry, \"ax\", @progbits",
    ".globl urvirt_signal_entry",
    ".p2align 2",
    "urvirt_signal_entry:",
    // No relaxation here: it could turn these address computations into gp-relative ones,
    // and gp is still the guest's.
    ".option push",
    ".option norelax",
    "    lla t0, {gp}",
    "    ld gp, 0(t0)",
    "    lla t0, {tp}",
    "    ld tp, 0(t0)",
    ".option pop",
    "    addi sp, sp, -16",
    "    sd ra, 8(sp)",
    "    call {dispatch}",
    "    addi sp, sp, 16",
    // sp points at the kernel's rt_sigframe again: return through rt_sigreturn.
    "    li a7, 139",
    "    ecall",
    ".popsection",
    gp = sym MONITOR_GP,
    tp = sym MONITOR_TP,
    dispatch = sym dispatch,
);

extern "C" {
    fn urvirt_signal_entry();
}

/// The guest thread's alternate signal stack, [low, high); both 0 when there is none.
static GUEST_STACK_LOW: AtomicU64 = AtomicU64::new(0);
static GUEST_STACK_HIGH: AtomicU64 = AtomicU64::new(0);

/// Called by the stub with the monitor's gp/tp in place.
extern "C" fn dispatch(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let sp: u64;
    // SAFETY: reading sp has no side effects.
    unsafe { std::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack)) };
    if !on_guest_thread(sp) {
        // Another thread (tp is not even its own here: touch no thread-locals). A timer or
        // poke is simply dropped; a fault is that thread's own bug and must kill us as usual.
        if sig != libc::SIGALRM && sig != ENTER_SIGNAL {
            reset_to_default(sig);
        }
        return;
    }
    // SAFETY: the kernel passed these pointers for the signal being handled, on this thread.
    unsafe { super::run::on_signal(sig, info, uc as *mut libc::ucontext_t) };
}

/// Whether a handler whose stack pointer is `sp` runs on the guest thread: only that thread
/// has our alternate stack, and every handler runs on it there (SA_ONSTACK).
fn on_guest_thread(sp: u64) -> bool {
    (GUEST_STACK_LOW.load(Ordering::Relaxed)..GUEST_STACK_HIGH.load(Ordering::Relaxed)).contains(&sp)
}

/// Blocks (`libc::SIG_BLOCK`) or unblocks (`libc::SIG_UNBLOCK`) `signals` on the calling thread.
pub fn mask(how: libc::c_int, signals: &[libc::c_int]) {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset; pthread_sigmask only
    // changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Blocks every signal URVirt handles on the calling thread: call before spawning a thread,
/// which inherits the mask, and unblock afterwards.
pub fn block_handled() {
    mask(libc::SIG_BLOCK, &HANDLED);
}

/// Runs `f` (which spawns threads) with every signal URVirt handles blocked, then puts the
/// calling thread's mask back as it was: the new threads keep them blocked.
pub fn with_handled_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset/pthread_sigmask; only this
    // thread's mask changes, and it is restored below.
    unsafe {
        let (mut set, mut old): (libc::sigset_t, libc::sigset_t) = (std::mem::zeroed(), std::mem::zeroed());
        libc::sigemptyset(&mut set);
        for &s in &HANDLED {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// The address of the stub: inside the monitor's executable mapping.
pub fn entry_address() -> u64 {
    urvirt_signal_entry as *const () as u64
}

/// Records the current thread's gp and tp for the stub.
pub fn capture_monitor_registers() {
    let (gp, tp): (u64, u64);
    // SAFETY: reading two registers has no side effects.
    unsafe {
        std::arch::asm!("mv {}, gp", out(reg) gp, options(nomem, nostack));
        std::arch::asm!("mv {}, tp", out(reg) tp, options(nomem, nostack));
    }
    MONITOR_GP.store(gp, Ordering::SeqCst);
    MONITOR_TP.store(tp, Ordering::SeqCst);
}

/// An alternate signal stack for this thread, removed on drop. Handlers must not run on the
/// guest's stack: the guest's sp is whatever the guest kernel made it.
pub struct AltStack {
    mem: Vec<u8>,
    old: libc::stack_t,
}

const ALT_STACK_SIZE: usize = 256 << 10;

impl AltStack {
    pub fn install() -> std::io::Result<Self> {
        let mut mem = vec![0u8; ALT_STACK_SIZE];
        let st = libc::stack_t { ss_sp: mem.as_mut_ptr() as *mut libc::c_void, ss_flags: 0, ss_size: mem.len() };
        // SAFETY: stack_t is plain data.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `mem` lives as long as the AltStack, which removes the stack before freeing it.
        if unsafe { libc::sigaltstack(&st, &mut old) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let low = mem.as_ptr() as u64;
        GUEST_STACK_LOW.store(low, Ordering::SeqCst);
        GUEST_STACK_HIGH.store(low + mem.len() as u64, Ordering::SeqCst);
        Ok(AltStack { mem, old })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        GUEST_STACK_LOW.store(0, Ordering::SeqCst);
        GUEST_STACK_HIGH.store(0, Ordering::SeqCst);
        // SAFETY: put back the previous setting before `mem` is freed.
        unsafe { libc::sigaltstack(&self.old, std::ptr::null_mut()) };
        let _ = self.mem.len();
    }
}

/// Our handlers, installed for every signal in [`HANDLED`]; the old ones come back on drop.
pub struct Handlers {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl Handlers {
    pub fn install() -> std::io::Result<Self> {
        // SAFETY: sigaction and sigset_t are plain data; the set is filled by sigemptyset.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = entry_address() as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: sa_mask is ours to fill. Block our signals inside any handler, so a timer
        // tick never lands in the middle of emulating an instruction. Not SIGSYS: inside a
        // handler it can only be the jail refusing a call of the handler's own, and a blocked
        // seccomp SIGSYS would kill the process without the jail's one-line report.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            for s in HANDLED.into_iter().filter(|&s| s != libc::SIGSYS) {
                libc::sigaddset(&mut sa.sa_mask, s);
            }
        }
        let mut h = Handlers { old: Vec::new() };
        for s in HANDLED {
            // SAFETY: zeroed sigaction to receive the old one.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SIGSYS also stays deliverable inside its own handler (an SBI call's), for the
            // same reason as above.
            let mut action = sa;
            if s == libc::SIGSYS {
                action.sa_flags |= libc::SA_NODEFER;
            }
            // SAFETY: a valid signal number and valid sigaction pointers.
            if unsafe { libc::sigaction(s, &action, &mut old) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            h.old.push((s, old));
        }
        Ok(h)
    }
}

impl Drop for Handlers {
    fn drop(&mut self) {
        for (s, old) in &self.old {
            // SAFETY: restoring what sigaction gave us.
            unsafe { libc::sigaction(*s, old, std::ptr::null_mut()) };
        }
    }
}

/// Sends the enter signal to this thread. Its handler swaps the interrupted monitor context
/// for the guest's; when the guest ends, a handler swaps the monitor context back and this
/// call returns as if the signal had been a no-op.
pub fn enter_guest() {
    // SAFETY: tgkill to ourselves with a signal we handle.
    unsafe {
        libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), ENTER_SIGNAL);
    }
}

/// Sets `sig` back to its default action (used when a fault is the monitor's own: returning
/// re-runs the faulting instruction, which then kills the process as it should).
pub fn reset_to_default(sig: libc::c_int) {
    // SAFETY: SIG_DFL for a valid signal number.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Sends SIGALRM to thread `tid` of this process (used by the console's Ctrl-A x).
pub fn poke(tid: libc::pid_t) {
    // SAFETY: tgkill with a handled signal.
    unsafe {
        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGALRM);
    }
}
