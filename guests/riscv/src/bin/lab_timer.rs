//! Lab workload timer: N timer interrupts at a fixed rate (1 kHz), each taken and returned
//! from, with `wfi` between them. Under URVirt the guest's SBI set_timer arms a host timer;
//! `wfi` is a SIGILL in which the monitor sleeps until the deadline, then delivers the
//! interrupt to the guest's trap entry; the handler's set_timer (SIGSYS) and `sret` (SIGILL)
//! follow. Phase 0, the baseline: the same deadlines waited for by spinning on `time`.
//! The guest also reports how late its handler ran after each deadline (the latency).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use riscv_guests::hw::trap;
use riscv_guests::{lab, lab_params, println};

lab_params!(1000);
const NAME: &str = "timer";
const RATE_HZ: u64 = 1000;

static TICKS: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(0);
static PERIOD: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicU64 = AtomicU64::new(0);
static LATE: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
extern "C" fn on_trap() {
    let now = lab::now();
    let cause = trap::scause();
    if cause != lab::TIMER_INTERRUPT {
        lab::fail(NAME, format_args!("unexpected trap, scause {cause:#x} sepc {:#x}", trap::sepc()));
    }
    let next = NEXT.load(Relaxed);
    LATE.store(LATE.load(Relaxed) + now.saturating_sub(next), Relaxed);
    let ticks = TICKS.load(Relaxed) + 1;
    TICKS.store(ticks, Relaxed);
    if ticks < TARGET.load(Relaxed) {
        // Fixed rate: the next deadline follows the last one, not the time we got here.
        NEXT.store(next + PERIOD.load(Relaxed), Relaxed);
        lab::set_timer(next + PERIOD.load(Relaxed));
    } else {
        // The N-th tick: stop taking them (no more set_timer calls in this phase).
        // SAFETY: clearing sie.STIE only masks the timer.
        unsafe { core::arch::asm!("csrc sie, {}", in(reg) 1usize << 5) };
    }
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, dtb: usize) -> ! {
    let n = lab::iterations(&LAB_PARAMS, NAME, 1 << 24);
    let timebase = lab::timebase(dtb);
    let period = timebase / RATE_HZ;
    PERIOD.store(period, Relaxed);
    TARGET.store(n, Relaxed);
    lab::enable_timer_interrupt();
    lab::mark(0);
    let mut next = lab::now() + period;
    for _ in 0..n {
        while lab::now() < next {}
        next += period;
    }
    lab::mark(1);
    NEXT.store(lab::now() + period, Relaxed);
    lab::set_timer(NEXT.load(Relaxed));
    while TICKS.load(Relaxed) < n {
        trap::wait();
    }
    lab::mark(2);
    lab::set_timer(u64::MAX);
    let late_us = LATE.load(Relaxed) * 1_000_000 / timebase / n;
    println!("lab timer: {n} interrupts at {RATE_HZ} Hz (timebase {timebase} Hz), handler {late_us} us after the deadline on average");
    lab::done(NAME, n)
}
