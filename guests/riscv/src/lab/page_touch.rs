//! The page-touch workload, in two flavours (two images from this one loop):
//!
//! - `lab-page-touch` (paging off, the lab's workload): guest RAM is a shared-memory mapping
//!   the guest touches directly, so the first write to a fresh page is a page fault the host
//!   Linux resolves itself (a "minor fault": it allocates the page and maps it) and URVirt
//!   receives no signal at all; the second write costs nothing. Signals 0, the host layer's
//!   minor_faults N. (Under KVM the same first touch is an EPT/NPT fault KVM handles.)
//! - `lab-page-touch-sv39` (the guest's own Sv39 paging on, one 1 GiB identity page for all of
//!   RAM): URVirt's software TLB maps guest pages into the host lazily, so the first write is
//!   a SIGSEGV ("sigsegv tlb fill": URVirt walks the guest's page table and maps the page),
//!   and then still a minor fault for Linux; the second write costs nothing while the page
//!   stays in the software TLB (2048 pages: a larger N starts it over, and the second touch
//!   faults again). Not one of `vmm lab`'s workloads: run it with `vmm run --stats`.
//!
//! Phase 1: a first write to N fresh 4 KiB pages; phase 2: a second write to the same pages.
//! Phase 0, the baseline: the same loop writing N times to one page touched before.
use crate::lab::{self, Params};
use core::ptr::write_volatile;

const PAGE: usize = 4096;
/// The fresh pages start here, well above the image, its stack and the baseline's page.
const FIRST: usize = 0x8060_0000;

extern "C" {
    static __stack_top: u8;
}

/// Writes to `n` addresses from `first`, `stride` bytes apart: the one loop of every phase,
/// so under Sv39 its code is mapped before phase 0.
#[inline(never)]
fn touch(first: usize, n: u64, stride: usize, value: u64) {
    for i in 0..n as usize {
        // SAFETY: guest RAM between the image and the device tree (checked by `run`).
        unsafe { write_volatile((first + i * stride) as *mut u64, value ^ i as u64) };
    }
}

/// The Sv39 root table: one 1 GiB page maps guest RAM at its own address.
#[repr(C, align(4096))]
struct Table([u64; 512]);
static mut ROOT: Table = Table([0; 512]);

/// Sv39 on: VA 0x8000_0000.. = PA 0x8000_0000.. (R, W, X, with A and D already set).
fn paging_on() {
    const V_R_W_X_A_D: u64 = 0x1 | 0x2 | 0x4 | 0x8 | 0x40 | 0x80;
    // SAFETY: one hart writes the table before paging is on; code, stack and data keep their
    // addresses afterwards.
    unsafe {
        let root = core::ptr::addr_of_mut!(ROOT);
        (*root).0[2] = (0x8000_0000u64 >> 12) << 10 | V_R_W_X_A_D;
        let satp = 8usize << 60 | root as usize >> 12;
        core::arch::asm!("csrw satp, {}", "sfence.vma", in(reg) satp);
    }
}

/// The workload: `name` for its lines, Sv39 on or off.
pub fn run(params: &'static Params, name: &str, sv39: bool, dtb: usize) -> ! {
    // SAFETY: only the address of the linker symbol is taken.
    let image_end = unsafe { &__stack_top as *const u8 as usize };
    // Fresh pages end below the device tree, which sits in the top 64 KiB of RAM.
    let limit = lab::ram_end(dtb).unwrap_or(0x8800_0000).min(dtb & !(PAGE - 1));
    let n = lab::iterations(params, name, (limit.saturating_sub(FIRST) / PAGE) as u64);
    if image_end + PAGE > FIRST {
        lab::fail(name, format_args!("the image ends at {image_end:#x}, past the fresh pages"));
    }
    // The baseline's page, just below FIRST: written n times, 0 bytes apart.
    let warm = FIRST - PAGE;
    if sv39 {
        paging_on();
    }
    // Touched once before the marks (and under Sv39 maps the loop's code, stack and data).
    touch(warm, 1, 0, 0);
    lab::mark(0);
    touch(warm, n, 0, 1);
    lab::mark(1);
    touch(FIRST, n, PAGE, 2);
    lab::mark(2);
    touch(FIRST, n, PAGE, 3);
    lab::mark(3);
    let paging = if sv39 { "Sv39 on" } else { "paging off" };
    crate::println!("lab {name}: {n} pages at {FIRST:#x}, {paging}");
    lab::done(name, n)
}
