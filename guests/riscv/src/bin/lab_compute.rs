//! Lab workload compute: a fixed compute kernel of N iterations (guests/riscv/src/lab/compute.S,
//! which `vmm lab` also runs natively as the baseline) with a 100 Hz guest timer running, so
//! the cost of the ticks is in the figure. Under URVirt the kernel's instructions run on the
//! CPU unchanged; only the ticks trap (SIGALRM, the handler's set_timer and sret).
//! Phase 0 is empty: this workload's baseline is the native run.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use riscv_guests::hw::trap;
use riscv_guests::{lab, lab_params, println};

core::arch::global_asm!(include_str!("../lab/compute.S"));

extern "C" {
    fn lab_compute_kernel(n: u64) -> u64;
}

lab_params!(200_000_000);
const NAME: &str = "compute";
const TICK_HZ: u64 = 100;

static TICKS: AtomicU64 = AtomicU64::new(0);
static PERIOD: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
extern "C" fn on_trap() {
    let cause = trap::scause();
    if cause != lab::TIMER_INTERRUPT {
        lab::fail(NAME, format_args!("unexpected trap, scause {cause:#x} sepc {:#x}", trap::sepc()));
    }
    TICKS.store(TICKS.load(Relaxed) + 1, Relaxed);
    let next = NEXT.load(Relaxed) + PERIOD.load(Relaxed);
    NEXT.store(next, Relaxed);
    lab::set_timer(next);
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, dtb: usize) -> ! {
    let n = lab::iterations(&LAB_PARAMS, NAME, u64::MAX);
    PERIOD.store(lab::timebase(dtb) / TICK_HZ, Relaxed);
    lab::enable_timer_interrupt();
    lab::mark(0);
    lab::mark(1);
    NEXT.store(lab::now() + PERIOD.load(Relaxed), Relaxed);
    lab::set_timer(NEXT.load(Relaxed));
    lab::interrupts(true);
    // SAFETY: the kernel follows the C ABI and touches only temporaries.
    let checksum = unsafe { lab_compute_kernel(n) };
    lab::interrupts(false);
    lab::mark(2);
    lab::set_timer(u64::MAX);
    println!("lab compute: checksum {checksum:#x}, {} timer ticks at {TICK_HZ} Hz", TICKS.load(Relaxed));
    lab::done(NAME, n)
}
