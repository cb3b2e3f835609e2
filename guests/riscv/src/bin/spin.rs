//! A runaway guest for `--timeout`: says so, then loops forever without trapping.
#![no_std]
#![no_main]

use riscv_guests::print;

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    print("spinning forever\n");
    loop {
        core::hint::spin_loop();
    }
}
