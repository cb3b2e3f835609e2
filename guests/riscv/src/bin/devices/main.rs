//! Devices at QEMU virt's addresses: prints through the 16550 UART at 0x10000000 (MMIO), then
//! through the SBI console, checks a UART register round trip and the PLIC's registers, and
//! takes the UART's receive interrupt through the PLIC (S-mode context 1, source 10): the
//! test types a line once it reads "waiting for a key"; the trap handler claims source 10,
//! drains the FIFO and completes. Prints the same lines under URVirt and under
//! `qemu-system-riscv64 -M virt -bios default`; shuts down with SRST.
#![no_std]
#![no_main]

mod hw;

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicUsize, Ordering};
use hw::{plic, uart};
use riscv_guests::sbi;

const SUPERVISOR_EXTERNAL: usize = (1 << 63) | 9;
const SIE_SEIE: usize = 1 << 9;

/// What the receive interrupts brought, and how much of it.
static mut LINE: [u8; 64] = [0; 64];
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// Sources claimed other than the UART's (there should be none).
static OTHER_SOURCES: AtomicUsize = AtomicUsize::new(0);

// The trap entry: saves every register but sp on the interrupted stack, calls `on_trap`,
// restores them and returns. Interrupts come only between `csrsi` and `csrci` below.
global_asm!(
    ".section .text",
    ".balign 4",
    ".globl trap_entry",
    "trap_entry:",
    "    addi sp, sp, -256",
    ".irp n,1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    sd x\\n, \\n*8(sp)",
    ".endr",
    "    call on_trap",
    ".irp n,1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    ld x\\n, \\n*8(sp)",
    ".endr",
    "    addi sp, sp, 256",
    "    sret",
);

extern "C" {
    fn trap_entry();
}

#[no_mangle]
extern "C" fn on_trap() {
    let scause: usize;
    // SAFETY: reading scause has no side effects.
    unsafe { asm!("csrr {}, scause", out(reg) scause) };
    if scause != SUPERVISOR_EXTERNAL {
        let sepc: usize;
        // SAFETY: as above.
        unsafe { asm!("csrr {}, sepc", out(reg) sepc) };
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

    // SAFETY: trap_entry is a valid direct-mode handler; SEIE lets the PLIC's output in.
    unsafe {
        asm!("csrw stvec, {}", in(reg) trap_entry as *const () as usize);
        asm!("csrs sie, {}", in(reg) SIE_SEIE);
    }
    uart::enable_receive_interrupt();
    uart::println(format_args!("devices: waiting for a key"));
    // wfi wakes on a pending interrupt even with SIE off; the interrupt is taken between
    // csrsi and csrci, so it can never slip in just before a wfi and leave it asleep.
    while !line().contains(&b'\n') {
        // SAFETY: wfi and toggling SIE around one instruction.
        unsafe { asm!("wfi", "csrsi sstatus, 2", "nop", "csrci sstatus, 2") };
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
