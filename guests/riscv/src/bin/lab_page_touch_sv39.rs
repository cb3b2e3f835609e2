//! Page-touch with the guest's own Sv39 paging on (not one of `vmm lab`'s workloads; see
//! riscv_guests::lab::page_touch). N stays within URVirt's 2048-page software TLB.
#![no_std]
#![no_main]

use riscv_guests::{lab, lab_params};

lab_params!(1024);

#[no_mangle]
extern "C" fn guest_main(_hart: usize, dtb: usize) -> ! {
    lab::page_touch::run(&LAB_PARAMS, "page-touch-sv39", true, dtb)
}
