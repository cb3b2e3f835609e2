//! The first light: print one line with legacy console_putchar, then legacy shutdown.
#![no_std]
#![no_main]

use riscv_guests::{print, sbi};

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    print("I wrote this with SBI calls\n");
    sbi::legacy_shutdown()
}
