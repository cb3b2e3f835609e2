//! Devices at QEMU virt's addresses: prints through the 16550 UART at 0x10000000 (MMIO), then
//! through the SBI console, checks a UART register round trip and the PLIC's registers, and
//! takes the UART's receive interrupt through the PLIC (S-mode context 1, source 10): the
//! test types a line once it reads "waiting for a key"; the trap handler claims source 10,
//! drains the FIFO and completes. Prints the same lines under URVirt and under
//! `qemu-system-riscv64 -M virt -bios default`; shuts down with SRST.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicUsize, Ordering};
use riscv_guests::hw::{plic, trap, uart};
use riscv_guests::sbi;

/// What the receive interrupts brought, and how much of it.
static mut LINE: [u8; 64] = [0; 64];
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// Sources claimed other than the UART's (there should be none).
static OTHER_SOURCES: AtomicUsize = AtomicUsize::new(0);

#[no_mangle]
extern "C" fn on_trap() {
    let (scause, sepc) = (trap::scause(), trap::sepc());
    if scause != trap::SUPERVISOR_EXTERNAL {
        uart::println(format_args!("devices: unexpected trap scause {scause:#x} sepc {sepc:#x}"));
        sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_SYSTEM_FAILURE);
    }
    let source = plic::claim();
    if source == uart::IRQ {
        while let Some(b) = uart::try_read() {
            let n = RECEIVED.load(Ordering::SeqCst);
            if n < 64 {
                // SAFETY: only this handler writes LINE, and it does not nest.
                unsafe { (*core::ptr::addr_of_mut!(LINE))[n] = b };
                RECEIVED.store(n + 1, Ordering::SeqCst);
            }
        }
    } else if source != 0 {
        OTHER_SOURCES.fetch_add(1, Ordering::SeqCst);
    }
    if source != 0 {
        plic::complete(source);
    }
}

/// The received bytes so far.
fn line() -> &'static [u8] {
    let n = RECEIVED.load(Ordering::SeqCst);
    // SAFETY: bytes below n are written before n is published and never again.
    unsafe { &(&*core::ptr::addr_of!(LINE))[..n] }
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    uart::init();
    uart::println(format_args!("devices: hello through the MMIO UART at {:#x}", uart::BASE));
    riscv_guests::print("devices: and this through the SBI console\n");

    let (signed, unsigned) = uart::scratch_round_trip(0xa5);
    uart::println(format_args!("devices: scratch register 0xa5 reads back as {signed} (lb) and {unsigned} (lbu)"));
    uart::println(format_args!("devices: LSR transmitter bits {:#x}", uart::lsr() & 0x60));

    plic::set_priority(uart::IRQ, 1);
    plic::set_priority(uart::IRQ + 1, 9); // WARL: QEMU virt keeps 3 bits
    plic::enable(uart::IRQ);
    plic::set_threshold(0);
    uart::println(format_args!(
        "devices: plic priority {} and {} (9 written), enable word {:#x}, threshold {}",
        plic::priority(uart::IRQ),
        plic::priority(uart::IRQ + 1),
        plic::enable_word(),
        plic::threshold()
    ));
    plic::set_priority(uart::IRQ + 1, 0);

    trap::install();
    uart::enable_receive_interrupt();
    uart::println(format_args!("devices: waiting for a key"));
    while !line().contains(&b'\n') {
        trap::wait();
    }
    let text = core::str::from_utf8(line()).unwrap_or("(not UTF-8)").trim_end();
    uart::println(format_args!("devices: the UART's interrupt brought {text:?}"));
    uart::println(format_args!(
        "devices: other sources claimed {}, left to claim {}",
        OTHER_SOURCES.load(Ordering::SeqCst),
        plic::claim()
    ));
    riscv_guests::print("devices: done\n");
    sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_NONE);
}
