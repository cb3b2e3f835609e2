//! Lab workload priv-reg: N reads (csrr) then N writes (csrw) of the S-mode CSR sscratch.
//! URVirt runs the guest kernel in U-mode, so each is an illegal instruction (SIGILL) that
//! the monitor emulates on its virtual CSR file. Phase 0, the baseline: a nop in their place.
#![no_std]
#![no_main]

use core::arch::asm;
use riscv_guests::{lab, lab_params};

lab_params!(10_000);
const NAME: &str = "priv-reg";

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    let n = lab::iterations(&LAB_PARAMS, NAME, 1 << 24);
    lab::mark(0);
    for _ in 0..n {
        // SAFETY: a nop.
        unsafe { asm!("nop") };
    }
    lab::mark(1);
    for _ in 0..n {
        // SAFETY: reading sscratch changes nothing.
        unsafe { asm!("csrr {}, sscratch", out(reg) _) };
    }
    lab::mark(2);
    for i in 0..n as usize {
        // SAFETY: sscratch is the kernel's own scratch register; nothing here uses it.
        unsafe { asm!("csrw sscratch, {}", in(reg) i) };
    }
    lab::mark(3);
    let back: usize;
    // SAFETY: as above.
    unsafe { asm!("csrr {}, sscratch", out(reg) back) };
    if back != n as usize - 1 {
        lab::fail(NAME, format_args!("sscratch read back {back}, want {}", n - 1));
    }
    lab::done(NAME, n)
}
