//! Lab workload console-out: N bytes to the console, first by the SBI legacy putchar (an
//! ecall: SIGSYS under URVirt), then by stores to the UART's transmit register (MMIO: SIGSEGV).
//! Phase 0, the baseline: the same loop storing the byte to RAM.
#![no_std]
#![no_main]

use core::ptr::{addr_of_mut, write_volatile};
use riscv_guests::{lab, lab_params, sbi};

lab_params!(10_000);
const NAME: &str = "console-out";
/// The UART's transmit holding register.
const THR: usize = 0x1000_0000;
static mut SINK: u8 = 0;

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    let n = lab::iterations(&LAB_PARAMS, NAME, 1 << 24);
    lab::mark(0);
    for _ in 0..n {
        // SAFETY: a store to our own static.
        unsafe { write_volatile(addr_of_mut!(SINK), b'.') };
    }
    lab::mark(1);
    for _ in 0..n {
        sbi::legacy_console_putchar(b'.');
    }
    lab::mark(2);
    for _ in 0..n {
        // SAFETY: the UART's THR at its fixed physical address (satp is Bare).
        unsafe { write_volatile(THR as *mut u8, b'.') };
    }
    lab::mark(3);
    riscv_guests::print("\n");
    lab::done(NAME, n)
}
