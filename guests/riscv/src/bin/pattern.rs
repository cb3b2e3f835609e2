//! Writes a known pattern at a known guest-physical address, for the --mem-file tests (the
//! file must hold it after the run): bytes 0, 1, ..., 255 at 0x8080_0000 (8 MiB into RAM),
//! then "PATTERN!". Prints "ok" and shuts down.
#![no_std]
#![no_main]

use riscv_guests::{print, sbi};

/// 8 MiB past the start of RAM (0x8000_0000): file offset 0x80_0000.
const PATTERN_ADDR: usize = 0x8080_0000;

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    let base = PATTERN_ADDR as *mut u8;
    for i in 0..256 {
        // SAFETY: PATTERN_ADDR + 0x108 lies in guest RAM (the tests give 16 MiB), away from
        // this guest's image and stack.
        unsafe { base.add(i).write_volatile(i as u8) };
    }
    for (i, b) in b"PATTERN!".iter().enumerate() {
        // SAFETY: as above.
        unsafe { base.add(0x100 + i).write_volatile(*b) };
    }
    print("ok\n");
    sbi::legacy_shutdown()
}
