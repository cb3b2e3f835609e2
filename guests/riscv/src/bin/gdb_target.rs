//! The gdb tests' guest (tests/gdb_riscv.rs): calls a named function three times and keeps a
//! named counter, so gdb can break at `gdb_tick` by symbol, read `GDB_COUNTER` and a0, step,
//! and let it run to the end (it prints the sum and powers off with status 0).
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut};
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

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    println!("gdb guest: start");
    for n in 1..=3 {
        gdb_tick(n);
    }
    // SAFETY: as in gdb_tick.
    let total = unsafe { addr_of!(GDB_COUNTER).read_volatile() };
    println!("gdb guest: counter {total}");
    sbi::legacy_shutdown()
}
