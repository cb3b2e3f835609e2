//! Lab workload page-touch, paging off: a first then a second write to N fresh pages (see
//! riscv_guests::lab::page_touch for what each costs under URVirt).
#![no_std]
#![no_main]

use riscv_guests::{lab, lab_params};

lab_params!(8192);

#[no_mangle]
extern "C" fn guest_main(_hart: usize, dtb: usize) -> ! {
    lab::page_touch::run(&LAB_PARAMS, "page-touch", false, dtb)
}
