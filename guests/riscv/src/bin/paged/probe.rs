//! MMU probes from S-mode, in the kernel's address space, before any task runs: each probe is
//! one access with stvec pointing at a label right after it, so a fault lands there with
//! scause/stval and the kernel carries on.
use crate::mm::{self, A, D, R, U, W, X};
use crate::{set_kernel_trap_vector, Kernel};
use core::arch::asm;

const SSTATUS_SUM: usize = 1 << 18;
const SSTATUS_MXR: usize = 1 << 19;
/// `jr t0`: what a probe page holds for a fetch that (wrongly) succeeds.
const JR_T0: u32 = 0x0002_8067;

const P_USER: usize = 0x4000_0000;
const P_XONLY: usize = 0x4000_1000;
const P_RO: usize = 0x4000_2000;
const P_AD: usize = 0x4000_3000;
const P_REMAP: usize = 0x4000_4000;
const P_NX: usize = 0x4000_5000;

type Probe = Result<usize, (usize, usize)>;

fn outcome(value: usize, cause: usize, tval: usize) -> Probe {
    set_kernel_trap_vector();
    if cause == 0 {
        Ok(value)
    } else {
        Err((cause, tval))
    }
}

fn load(va: usize) -> Probe {
    let (value, cause, tval): (usize, usize, usize);
    // SAFETY: a load that may fault; the fault goes to label 3 with the kernel still in S-mode.
    unsafe {
        asm!(
            "la {t}, 3f",
            "csrw stvec, {t}",
            "li {cause}, 0",
            "li {tval}, 0",
            "ld {value}, 0({va})",
            "j 4f",
            ".balign 4",
            "3: csrr {cause}, scause",
            "csrr {tval}, stval",
            "li {value}, 0",
            "4:",
            va = in(reg) va, value = out(reg) value, cause = out(reg) cause, tval = out(reg) tval, t = out(reg) _,
        );
    }
    outcome(value, cause, tval)
}

fn store(va: usize, v: usize) -> Probe {
    let (cause, tval): (usize, usize);
    // SAFETY: as for load.
    unsafe {
        asm!(
            "la {t}, 3f",
            "csrw stvec, {t}",
            "li {cause}, 0",
            "li {tval}, 0",
            "sd {v}, 0({va})",
            "j 4f",
            ".balign 4",
            "3: csrr {cause}, scause",
            "csrr {tval}, stval",
            "4:",
            va = in(reg) va, v = in(reg) v, cause = out(reg) cause, tval = out(reg) tval, t = out(reg) _,
        );
    }
    outcome(0, cause, tval)
}

/// Jumps to `va`, which holds `jr t0` if it is fetched at all.
fn fetch(va: usize) -> Probe {
    let (cause, tval): (usize, usize);
    // SAFETY: as for load; a fetch that succeeds comes straight back through t0.
    unsafe {
        asm!(
            "la {t}, 3f",
            "csrw stvec, {t}",
            "li {cause}, 0",
            "li {tval}, 0",
            "jalr t0, 0({va})",
            "j 4f",
            ".balign 4",
            "3: csrr {cause}, scause",
            "csrr {tval}, stval",
            "4:",
            va = in(reg) va, cause = out(reg) cause, tval = out(reg) tval, t = out(reg) _, out("t0") _,
        );
    }
    outcome(0, cause, tval)
}

fn set_sstatus(bits: usize) {
    // SAFETY: SUM and MXR only change what S-mode loads may reach.
    unsafe { asm!("csrs sstatus, {0}", in(reg) bits) };
}

fn clear_sstatus(bits: usize) {
    // SAFETY: as above.
    unsafe { asm!("csrc sstatus, {0}", in(reg) bits) };
}

/// A fresh frame holding `value` at offset 0 and `jr t0` at offset 8.
fn frame_with(k: &mut Kernel, value: usize) -> usize {
    let f = k.frames.alloc();
    // SAFETY: a fresh identity-mapped frame.
    unsafe {
        (f as *mut usize).write(value);
        ((f + 8) as *mut u32).write(JR_T0);
        asm!("fence.i");
    }
    f
}

fn pte(k: &Kernel, va: usize) -> usize {
    mm::walk(k.root, va).map(|(pte, _)| pte).unwrap_or(0)
}

/// A page of identity-mapped RAM nothing else uses, and how often the probe below faults on it.
const REFAULT_PAGE: usize = 0x8400_0000;
const REFAULTS: usize = 10_240;

/// Stores to one page REFAULTS times from the one `sd` in this loop, with `sfence.vma` on the
/// page after each store, so every store faults afresh: more page faults at one pc than a
/// fault-retry detector may take for a stuck guest, although the guest makes progress.
fn refault_one_page() -> bool {
    // SAFETY: the page is identity-mapped RAM (a megapage) that no one else uses.
    unsafe {
        asm!(
            "1: sd {i}, 0({a})",
            "sfence.vma {a}, zero",
            "addi {i}, {i}, 1",
            "bltu {i}, {n}, 1b",
            a = in(reg) REFAULT_PAGE,
            i = inout(reg) 0usize => _,
            n = in(reg) REFAULTS,
        );
    }
    // SAFETY: as above; reading back the last value stored.
    unsafe { core::ptr::read_volatile(REFAULT_PAGE as *const usize) == REFAULTS - 1 }
}

pub fn all(k: &mut Kernel) {
    let root = k.root;
    let user = frame_with(k, 0x5a5a);
    mm::map(&mut k.frames, root, P_USER, user, 0, R | W | U | A | D);
    let xonly = frame_with(k, 0x1111);
    mm::map(&mut k.frames, root, P_XONLY, xonly, 0, X | A);
    let ro = frame_with(k, 0x2222);
    mm::map(&mut k.frames, root, P_RO, ro, 0, R | A);
    let ad = frame_with(k, 0x3333);
    mm::map(&mut k.frames, root, P_AD, ad, 0, R | W);
    let (one, two) = (frame_with(k, 1), frame_with(k, 2));
    mm::map(&mut k.frames, root, P_REMAP, one, 0, R | W | A | D);
    let nx = frame_with(k, 0);
    mm::map(&mut k.frames, root, P_NX, nx, 0, R | W | A | D);
    // SAFETY: the new mappings were never used; flush anyway before probing them.
    unsafe { asm!("sfence.vma") };

    let c = &mut k.checks;
    let got = load(P_USER);
    c.check("S load from a U page without SUM: load page fault", got == Err((13, P_USER)), format_args!("{got:x?}"));
    set_sstatus(SSTATUS_SUM);
    let got = load(P_USER);
    c.check("S load from a U page with SUM", got == Ok(0x5a5a), format_args!("{got:x?}"));
    let got = store(P_USER, 0x5a5b).and_then(|_| load(P_USER));
    c.check("S store to a U page with SUM", got == Ok(0x5a5b), format_args!("{got:x?}"));
    let got = fetch(P_USER + 8);
    c.check("S fetch from a U page, even with SUM: page fault", got == Err((12, P_USER + 8)), format_args!("{got:x?}"));
    clear_sstatus(SSTATUS_SUM);

    let got = load(P_XONLY);
    c.check("load from an execute-only page: page fault", got == Err((13, P_XONLY)), format_args!("{got:x?}"));
    set_sstatus(SSTATUS_MXR);
    let got = load(P_XONLY);
    c.check("load from an execute-only page with MXR", got == Ok(0x1111), format_args!("{got:x?}"));
    clear_sstatus(SSTATUS_MXR);

    let got = store(P_RO + 16, 1);
    c.check("store to a read-only page: store page fault", got == Err((15, P_RO + 16)), format_args!("{got:x?}"));
    let got = fetch(P_NX + 8);
    c.check("fetch from a non-executable page: page fault", got == Err((12, P_NX + 8)), format_args!("{got:x?}"));
    let got = fetch(P_XONLY + 8);
    c.check("fetch from an execute-only page", got == Ok(0), format_args!("{got:x?}"));

    let got = load(P_AD).map(|_| pte(k, P_AD) & (A | D));
    k.checks.check("a load sets A, not D", got == Ok(A), format_args!("{got:x?}"));
    let got = store(P_AD, 7).map(|_| pte(k, P_AD) & (A | D));
    k.checks.check("a store sets D", got == Ok(A | D), format_args!("{got:x?}"));

    let first = load(P_REMAP);
    mm::map(&mut k.frames, root, P_REMAP, two, 0, R | W | A | D);
    // SAFETY: flushing the one page we remapped.
    unsafe { asm!("sfence.vma {0}, zero", in(reg) P_REMAP) };
    let second = load(P_REMAP);
    mm::map(&mut k.frames, root, P_REMAP, one, 0, R | W | A | D);
    // SAFETY: flushing ASID 0 (the kernel's), every address.
    unsafe { asm!("sfence.vma zero, {0}", in(reg) 0usize) };
    let third = load(P_REMAP);
    let got = (first, second, third);
    let want = (Ok(1), Ok(2), Ok(1));
    k.checks.check("remap seen after sfence.vma by address, then by ASID", got == want, format_args!("{got:x?}"));
    let ok = refault_one_page();
    k.checks.check("10240 faulting stores from one instruction", ok, format_args!("wrong value read back"));
}
