//! Lab workload mmio: N loads of the UART's line status register (LSR, 0x10000005). No RAM
//! is there: under URVirt each load faults (SIGSEGV) and the monitor performs it on its UART.
//! Phase 0, the baseline: the same loads from a byte of RAM.
#![no_std]
#![no_main]

use core::ptr::{addr_of, read_volatile};
use riscv_guests::{lab, lab_params};

lab_params!(10_000);
const NAME: &str = "mmio";
const LSR: usize = 0x1000_0005;
/// LSR bit 5: the transmit holding register is empty (always, on an emulated UART at rest).
const LSR_THRE: u8 = 0x20;
static SOURCE: u8 = LSR_THRE;

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    let n = lab::iterations(&LAB_PARAMS, NAME, 1 << 24);
    let mut seen = 0u8;
    lab::mark(0);
    for _ in 0..n {
        // SAFETY: a load from our own static.
        seen |= unsafe { read_volatile(addr_of!(SOURCE)) };
    }
    lab::mark(1);
    for _ in 0..n {
        // SAFETY: the UART's LSR at its fixed physical address (satp is Bare).
        seen &= unsafe { read_volatile(LSR as *const u8) };
    }
    lab::mark(2);
    if seen & LSR_THRE == 0 {
        lab::fail(NAME, format_args!("the UART's LSR never said THR empty ({seen:#x})"));
    }
    lab::done(NAME, n)
}
