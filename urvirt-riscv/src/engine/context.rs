//! Moving the guest's registers between a signal's ucontext and a [`Hart`].
//!
//! On riscv64 Linux `uc_mcontext.__gregs[0]` is the pc and `__gregs[1..32]` are x1..x31; the
//! FP registers follow in `__fpregs`. The kernel restores all of them on rt_sigreturn, so
//! editing the ucontext is how a handler changes what the guest runs next.
use crate::hart::Hart;

/// The parts of a ucontext a run saves and restores: integer and FP registers.
#[derive(Clone, Copy)]
pub struct SavedRegs {
    pub gregs: [u64; 32],
    pub fregs: [u64; 32],
    pub fcsr: u32,
}

impl SavedRegs {
    pub const fn zeroed() -> Self {
        SavedRegs { gregs: [0; 32], fregs: [0; 32], fcsr: 0 }
    }
}

/// Copies pc and x1..x31 from the ucontext into `hart` (x0 stays zero).
///
/// # Safety
/// `uc` must point at the ucontext the kernel passed to the running signal handler.
pub unsafe fn load(hart: &mut Hart, uc: *const libc::ucontext_t) {
    // SAFETY: the caller guarantees `uc` is the live signal frame's ucontext.
    let g = unsafe { &(*uc).uc_mcontext.__gregs };
    hart.pc = g[0];
    hart.x[0] = 0;
    hart.x[1..].copy_from_slice(&g[1..]);
}

/// Writes `hart`'s pc and x1..x31 into the ucontext, so rt_sigreturn resumes the guest there.
///
/// # Safety
/// As for [`load`].
pub unsafe fn store(hart: &Hart, uc: *mut libc::ucontext_t) {
    // SAFETY: the caller guarantees `uc` is the live signal frame's ucontext.
    let g = unsafe { &mut (*uc).uc_mcontext.__gregs };
    g[0] = hart.pc;
    g[1..].copy_from_slice(&hart.x[1..]);
}

/// Saves the integer and FP (D-extension) registers of a ucontext.
///
/// # Safety
/// As for [`load`].
pub unsafe fn save(uc: *const libc::ucontext_t) -> SavedRegs {
    // SAFETY: the caller guarantees `uc` is the live signal frame's ucontext; the D view of
    // the FP union is the one the kernel fills on an RV64GC hart.
    unsafe {
        let m = &(*uc).uc_mcontext;
        SavedRegs { gregs: m.__gregs, fregs: m.__fpregs.__d.__f, fcsr: m.__fpregs.__d.__fcsr }
    }
}

/// Puts saved integer and FP registers back into a ucontext. The rest of the FP area (the
/// kernel's extension headers) is left as the kernel wrote it for this frame.
///
/// # Safety
/// As for [`load`].
pub unsafe fn restore(regs: &SavedRegs, uc: *mut libc::ucontext_t) {
    // SAFETY: as in `save`.
    unsafe {
        let m = &mut (*uc).uc_mcontext;
        m.__gregs = regs.gregs;
        m.__fpregs.__d.__f = regs.fregs;
        m.__fpregs.__d.__fcsr = regs.fcsr;
    }
}
