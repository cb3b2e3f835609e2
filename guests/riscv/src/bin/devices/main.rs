//! Devices at QEMU virt's addresses: prints through the 16550 UART at 0x10000000 (MMIO), then
//! through the SBI console, checks a UART register round trip and the PLIC's registers, and
//! takes the UART's receive interrupt through the PLIC (S-mode context 1, source 10): the
//! test types a line once it reads "waiting for a key"; the trap handler claims source 10,
//! drains the FIFO and completes; then it polls the UART for a second line, and reaches the
//! devices through Sv39. Prints the same lines under URVirt and under
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

/// An Sv39 root table of three gigapages.
#[repr(C, align(4096))]
struct Table([u64; 512]);
static mut ROOT: Table = Table([0; 512]);
/// Where the devices' gigapage (physical 0..1 GiB) appears with Sv39 on.
const DEVICES_VA: usize = 0x4000_0000;

/// The same devices through a guest virtual address: VA 0x4000_0000 maps physical 0 (so the
/// UART is at VA 0x5000_0000), VA 0x8000_0000 maps RAM, where this kernel runs.
fn sv39() {
    const V: u64 = 1;
    const R: u64 = 2;
    const W: u64 = 4;
    const X: u64 = 8;
    const A: u64 = 1 << 6;
    const D: u64 = 1 << 7;
    // SAFETY: the table is ours; satp then points at it, and everything this kernel touches
    // (its code, data and stack in RAM, the devices) is mapped.
    unsafe {
        let root = &mut *core::ptr::addr_of_mut!(ROOT);
        root.0[1] = V | R | W | A | D; // PPN 0
        root.0[2] = ((0x8000_0000u64 >> 12) << 10) | V | R | W | X | A | D;
        let satp = (8usize << 60) | (root as *const Table as usize >> 12);
        core::arch::asm!("csrw satp, {}", "sfence.vma", in(reg) satp);
    }
    let uart_va = DEVICES_VA + uart::BASE;
    for b in b"devices: through Sv39, the UART at VA 0x50000000\n" {
        // SAFETY: device registers through the mapping above.
        unsafe {
            while core::ptr::read_volatile((uart_va + 5) as *const u8) & 0x20 == 0 {}
            core::ptr::write_volatile(uart_va as *mut u8, *b);
        }
    }
    let plic_va = DEVICES_VA + 0x0c00_0000;
    // SAFETY: as above: source 10's priority, and context 1's threshold.
    let (priority, threshold) = unsafe {
        core::ptr::write_volatile((plic_va + 0x20_1000) as *mut u32, 3);
        (core::ptr::read_volatile((plic_va + 4 * 10) as *const u32), core::ptr::read_volatile((plic_va + 0x20_1000) as *const u32))
    };
    // SAFETY: back to Bare, where the kernel's physical addresses are its addresses.
    unsafe { core::arch::asm!("csrw satp, zero", "sfence.vma") };
    uart::println(format_args!(
        "devices: through Sv39, PLIC source 10 priority {priority}, threshold written {threshold}, at its physical address {}",
        plic::threshold()
    ));
    plic::set_threshold(0);
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

    // The same UART polled, its interrupt off: a driver that reads the line status register.
    uart::disable_interrupts();
    uart::println(format_args!("devices: polling for a key"));
    let mut polled = [0u8; 64];
    let mut n = 0;
    while n < polled.len() {
        if let Some(b) = uart::try_read() {
            polled[n] = b;
            n += 1;
            if b == b'\n' {
                break;
            }
        }
    }
    let text = core::str::from_utf8(&polled[..n]).unwrap_or("(not UTF-8)").trim_end();
    uart::println(format_args!("devices: polling the line status brought {text:?}"));
    sv39();
    riscv_guests::print("devices: done\n");
    sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_NONE);
}
