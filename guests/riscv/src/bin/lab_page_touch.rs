//! Lab workload page-touch: a first write to N fresh 4 KiB pages of guest RAM, then a second
//! write to the same pages. Paging is off (satp Bare), so guest-physical = the address used.
//!
//! What to expect under URVirt: guest RAM is a shared-memory mapping the guest touches
//! directly, so the first write to a page is a page fault the host Linux resolves itself (a
//! "minor fault": it finds or allocates the page and maps it) and URVirt receives no signal
//! at all; the second write costs nothing. The signals column stays 0, the host layer's
//! minor_faults shows N. (Under KVM the same first touch is an EPT/NPT fault KVM handles.)
//! Phase 0, the baseline: the same loop writing N times to one page touched before.
#![no_std]
#![no_main]

use core::ptr::write_volatile;
use riscv_guests::{lab, lab_params};

lab_params!(8192);
const NAME: &str = "page-touch";
const PAGE: usize = 4096;
/// The fresh pages start here, well above the image, its stack and the baseline's page.
const FIRST: usize = 0x8060_0000;

extern "C" {
    static __stack_top: u8;
}

fn touch(page: usize, value: u64) {
    // SAFETY: a page of guest RAM between the image and the device tree (checked below).
    unsafe { write_volatile(page as *mut u64, value) };
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, dtb: usize) -> ! {
    // SAFETY: only the address of the linker symbol is taken.
    let image_end = unsafe { &__stack_top as *const u8 as usize };
    // Fresh pages end below the device tree, which sits in the top 64 KiB of RAM.
    let limit = lab::ram_end(dtb).unwrap_or(0x8800_0000).min(dtb & !(PAGE - 1));
    let max = (limit.saturating_sub(FIRST) / PAGE) as u64;
    let n = lab::iterations(&LAB_PARAMS, NAME, max);
    if image_end + PAGE > FIRST {
        lab::fail(NAME, format_args!("the image ends at {image_end:#x}, past the fresh pages"));
    }
    // The baseline's page: the one just below FIRST, touched once before phase 0.
    let warm = FIRST - PAGE;
    touch(warm, 0);
    lab::mark(0);
    for i in 0..n {
        touch(warm + (i as usize % (PAGE / 8)) * 8, i);
    }
    lab::mark(1);
    for i in 0..n as usize {
        touch(FIRST + i * PAGE, i as u64);
    }
    lab::mark(2);
    for i in 0..n as usize {
        touch(FIRST + i * PAGE, !(i as u64));
    }
    lab::mark(3);
    riscv_guests::println!("lab page-touch: {n} pages at {FIRST:#x}, paging off");
    lab::done(NAME, n)
}
