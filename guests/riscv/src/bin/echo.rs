//! Console input: says it is ready, then echoes what it reads with legacy console_getchar
//! until it reads `q`, then shuts down. Tests that input reaches the guest.
#![no_std]
#![no_main]

use riscv_guests::{print, sbi};

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    print("echo: ready\n");
    loop {
        // -1 while there is no input; poll again.
        let c = sbi::legacy_call(sbi::LEGACY_CONSOLE_GETCHAR, 0);
        if c < 0 {
            continue;
        }
        if c as u8 == b'q' {
            print("echo: bye\n");
            sbi::legacy_shutdown();
        }
        sbi::legacy_console_putchar(c as u8);
    }
}
