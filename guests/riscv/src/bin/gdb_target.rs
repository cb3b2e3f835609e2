//! The gdb tests' guest (tests/gdb_riscv.rs): calls a named function three times and keeps a
//! named counter, so gdb can break at `gdb_tick` by symbol, read `GDB_COUNTER` and a0, step,
//! and let it run to the end (it prints the sum and powers off with status 0). On the way it
//! runs an `ebreak` of its own, which must reach its own trap handler, debugger or not.
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut};
use riscv_guests::hw::trap;
use riscv_guests::{println, sbi};

/// What the ticks added up; gdb reads it by name (volatile, so it lives in memory).
#[no_mangle]
static mut GDB_COUNTER: u64 = 0;

/// Adds `n` to the counter. Not inlined: gdb breaks here.
#[no_mangle]
#[inline(never)]
extern "C" fn gdb_tick(n: u64) {
    // SAFETY: one hart, no interrupts: nothing else touches the counter.
    unsafe { addr_of_mut!(GDB_COUNTER).write_volatile(addr_of!(GDB_COUNTER).read_volatile() + n) };
}

/// Breakpoint exceptions the guest's own handler took.
static mut OWN_BREAKPOINTS: u64 = 0;

/// The trap handler: a breakpoint exception is counted and skipped.
#[no_mangle]
extern "C" fn on_trap() {
    const BREAKPOINT: usize = 3;
    if trap::scause() != BREAKPOINT {
        println!("gdb guest: unexpected trap {:#x}", trap::scause());
        sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_SYSTEM_FAILURE);
    }
    let pc = trap::sepc();
    // SAFETY: sepc is the ebreak we ran, in our own code; one hart, so nothing races the count.
    unsafe {
        let len = if (pc as *const u16).read_volatile() & 3 == 3 { 4 } else { 2 };
        core::arch::asm!("csrw sepc, {}", in(reg) pc + len);
        addr_of_mut!(OWN_BREAKPOINTS).write_volatile(addr_of!(OWN_BREAKPOINTS).read_volatile() + 1);
    }
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    println!("gdb guest: start");
    trap::install();
    for n in 1..=3 {
        gdb_tick(n);
    }
    // SAFETY: an ebreak with our trap handler installed.
    unsafe { core::arch::asm!("ebreak") };
    // SAFETY: as in gdb_tick.
    if unsafe { addr_of!(OWN_BREAKPOINTS).read_volatile() } == 1 {
        println!("gdb guest: own ebreak handled");
    }
    // SAFETY: as in gdb_tick.
    let total = unsafe { addr_of!(GDB_COUNTER).read_volatile() };
    println!("gdb guest: counter {total}");
    sbi::legacy_shutdown()
}
