//! What the teaching lab's workload guests (`lab-<workload>.bin`, src/bin/lab_*.rs) share:
//! the parameter block `vmm lab --iterations` patches, marks, the timer, a look into the
//! device tree, and the line every workload ends with.
//!
//! A workload makes marks 0, 1, 2, ...; phase 0 (mark 0 to 1) is the baseline loop, each later
//! phase does N events of one kind (see common/src/marks.rs for the contract).
pub mod page_touch;

use crate::sbi;
use core::arch::asm;
use core::ptr::{addr_of, read_volatile};

/// The SBI extension of a mark (common::marks::RISCV_MARK_EID; this crate is no_std and
/// stands apart from the workspace, so the number is repeated here).
pub const MARK_EID: usize = 0x0956_4d4d;

/// The 16-byte parameter block: `VMMLABN\0` then N, little-endian. Each workload defines it
/// with [`lab_params!`]; `vmm lab --iterations N` rewrites N in a copy of the image.
#[repr(C, align(8))]
pub struct Params {
    pub magic: [u8; 8],
    pub n: u64,
}

/// Defines the workload's parameter block with the default N baked into the image.
#[macro_export]
macro_rules! lab_params {
    ($n:expr) => {
        #[used]
        #[no_mangle]
        #[link_section = ".data.lab_params"]
        static LAB_PARAMS: $crate::lab::Params = $crate::lab::Params { magic: *b"VMMLABN\0", n: $n };
    };
}

/// N, read from the image's parameter block `params` (the binary's LAB_PARAMS) with a
/// volatile load: the patched value, never the default the compiler saw. Refused (the run
/// fails with a clear line) if it is 0 or above `max`.
pub fn iterations(params: &'static Params, workload: &str, max: u64) -> u64 {
    // SAFETY: a plain aligned load from a static.
    let n = unsafe { read_volatile(addr_of!(params.n)) };
    if n == 0 || n > max {
        fail(workload, format_args!("N={n} is out of range 1..={max}"));
    }
    n
}

/// Makes mark `id`: the monitor notes the time and its counters.
#[inline(always)]
pub fn mark(id: usize) {
    // SAFETY: an SBI call that only returns a0/a1.
    unsafe {
        asm!("ecall", inlateout("a0") id => _, lateout("a1") _, in("a6") 0usize, in("a7") MARK_EID,
             options(nostack));
    }
}

/// The last line of every workload, then power off with status 0.
pub fn done(workload: &str, n: u64) -> ! {
    crate::println!("lab {workload} done N={n}");
    sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_NONE);
}

/// A workload that cannot go on: one line, power off with a failure.
pub fn fail(workload: &str, why: core::fmt::Arguments) -> ! {
    crate::println!("lab {workload} failed: {why}");
    sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_SYSTEM_FAILURE);
}

/// The `time` counter.
#[inline(always)]
pub fn now() -> u64 {
    let t: u64;
    // SAFETY: reading the time counter has no side effects.
    unsafe { asm!("rdtime {}", out(reg) t) };
    t
}

/// SBI TIME set_timer: the next timer interrupt at `deadline` (u64::MAX: none).
pub fn set_timer(deadline: u64) {
    sbi::call(sbi::EXT_TIME, 0, deadline as usize, 0, 0);
}

pub const TIMER_INTERRUPT: usize = (1 << 63) | 5;
const SIE_STIE: usize = 1 << 5;

/// Timer interrupts on (sie.STIE), with the trap entry of [`crate::hw::trap`] installed.
pub fn enable_timer_interrupt() {
    crate::hw::trap::install();
    // SAFETY: enabling one interrupt source; the binary defines on_trap.
    unsafe { asm!("csrs sie, {}", in(reg) SIE_STIE) };
}

/// sstatus.SIE on or off: whether interrupts are taken in S-mode.
pub fn interrupts(on: bool) {
    // SAFETY: toggling SIE; the trap entry is installed.
    unsafe {
        if on {
            asm!("csrsi sstatus, 2")
        } else {
            asm!("csrci sstatus, 2")
        }
    }
}

/// The timebase (time ticks per second) from the device tree at `dtb`; QEMU virt's 10 MHz
/// if it is not there.
pub fn timebase(dtb: usize) -> u64 {
    fdt_prop(dtb, "cpus", "timebase-frequency").map_or(10_000_000, |(p, _)| be32(p) as u64)
}

/// The end of guest RAM (base + size of the first memory node), if the device tree says.
pub fn ram_end(dtb: usize) -> Option<usize> {
    let (p, len) = fdt_prop(dtb, "memory@", "reg")?;
    if len < 16 {
        return None;
    }
    let base = (be32(p) as usize) << 32 | be32(p + 4) as usize;
    let size = (be32(p + 8) as usize) << 32 | be32(p + 12) as usize;
    Some(base + size)
}

fn be32(p: usize) -> u32 {
    // SAFETY: inside the device tree blob, 4-byte aligned (all FDT tokens and cells are).
    u32::from_be(unsafe { read_volatile(p as *const u32) })
}

/// The bytes of the NUL-terminated string at `p`.
fn cstr(p: usize) -> &'static [u8] {
    let mut len = 0;
    // SAFETY: strings in the device tree blob are NUL-terminated.
    while unsafe { read_volatile((p + len) as *const u8) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` bytes just read.
    unsafe { core::slice::from_raw_parts(p as *const u8, len) }
}

/// Property `prop` of the first node whose name starts with `node`: (address, length).
/// A walk over the flattened tree's tokens (begin node 1, end node 2, property 3, nop 4, end 9).
fn fdt_prop(dtb: usize, node: &str, prop: &str) -> Option<(usize, usize)> {
    if dtb == 0 || be32(dtb) != 0xd00d_feed {
        return None;
    }
    let (structs, strings) = (dtb + be32(dtb + 8) as usize, dtb + be32(dtb + 12) as usize);
    let align4 = |n: usize| (n + 3) & !3;
    let (mut p, mut inside) = (structs, false);
    loop {
        match be32(p) {
            1 => {
                let name = cstr(p + 4);
                inside = !name.is_empty() && name.starts_with(node.as_bytes());
                p += 4 + align4(name.len() + 1);
            }
            2 => {
                inside = false;
                p += 4;
            }
            3 => {
                let (len, name) = (be32(p + 4) as usize, be32(p + 8) as usize);
                if inside && cstr(strings + name) == prop.as_bytes() {
                    return Some((p + 12, len));
                }
                p += 12 + align4(len);
            }
            4 => p += 4,
            _ => return None,
        }
    }
}
