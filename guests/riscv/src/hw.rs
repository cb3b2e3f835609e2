//! QEMU virt's devices as a kernel drives them (volatile loads and stores at their physical
//! addresses, satp Bare), and a trap entry for kernels that take interrupts.
use core::ptr::{read_volatile, write_volatile};

// The trap entry: saves every register but sp on the interrupted stack, calls the binary's
// `extern "C" fn on_trap()`, restores them and returns with sret. `trap::install` points
// stvec at it.
core::arch::global_asm!(
    ".section .text",
    ".balign 4",
    ".globl trap_entry",
    // Weak: only binaries that install the trap entry define on_trap.
    ".weak on_trap",
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

/// Interrupts for kernels that define `#[no_mangle] extern "C" fn on_trap()`.
pub mod trap {
    use core::arch::asm;

    pub const SUPERVISOR_EXTERNAL: usize = (1 << 63) | 9;
    const SIE_SEIE: usize = 1 << 9;

    extern "C" {
        fn trap_entry();
    }

    /// stvec = the trap entry (direct mode); sie.SEIE on. sstatus.SIE stays off.
    pub fn install() {
        // SAFETY: trap_entry is a valid direct-mode handler.
        unsafe {
            asm!("csrw stvec, {}", in(reg) trap_entry as *const () as usize);
            asm!("csrs sie, {}", in(reg) SIE_SEIE);
        }
    }

    /// Sleeps until an interrupt is pending, then takes it. wfi wakes on a pending interrupt
    /// even with SIE off; the interrupt is taken between csrsi and csrci, so it can never slip
    /// in just before a wfi and leave it asleep.
    pub fn wait() {
        // SAFETY: wfi and toggling SIE around one instruction.
        unsafe { asm!("wfi", "csrsi sstatus, 2", "nop", "csrci sstatus, 2") };
    }

    pub fn scause() -> usize {
        let v: usize;
        // SAFETY: reading a CSR has no side effects.
        unsafe { asm!("csrr {}, scause", out(reg) v) };
        v
    }

    pub fn sepc() -> usize {
        let v: usize;
        // SAFETY: as above.
        unsafe { asm!("csrr {}, sepc", out(reg) v) };
        v
    }
}

fn r8(a: usize) -> u8 {
    // SAFETY: a device register at a fixed physical address (satp is Bare).
    unsafe { read_volatile(a as *const u8) }
}

fn w8(a: usize, v: u8) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u8, v) }
}

fn r32(a: usize) -> u32 {
    // SAFETY: as above.
    unsafe { read_volatile(a as *const u32) }
}

fn w32(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

/// The 16550 at 0x10000000: byte registers, reg-shift 0.
pub mod uart {
    use super::*;
    use core::fmt::{self, Write};

    pub const BASE: usize = 0x1000_0000;
    pub const IRQ: u32 = 10;
    const THR: usize = BASE;
    const IER: usize = BASE + 1;
    const FCR: usize = BASE + 2;
    const LCR: usize = BASE + 3;
    const LSR: usize = BASE + 5;
    const SCR: usize = BASE + 7;

    pub fn init() {
        w8(IER, 0);
        w8(LCR, 0x03); // 8 bits, no parity, one stop bit
        w8(FCR, 0x01); // FIFOs on
    }

    pub fn lsr() -> u8 {
        r8(LSR)
    }

    fn put(b: u8) {
        while lsr() & 0x20 == 0 {}
        w8(THR, b);
    }

    pub fn try_read() -> Option<u8> {
        (lsr() & 1 != 0).then(|| r8(THR))
    }

    pub fn enable_receive_interrupt() {
        w8(IER, 0x01);
    }

    pub fn disable_interrupts() {
        w8(IER, 0);
    }

    /// Writes `v` to the scratch register and reads it back sign- and zero-extended.
    pub fn scratch_round_trip(v: u8) -> (i8, u8) {
        w8(SCR, v);
        // SAFETY: as for r8; an i8 load is `lb`.
        let signed = unsafe { read_volatile(SCR as *const i8) };
        (signed, r8(SCR))
    }

    struct Uart;
    impl Write for Uart {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            s.bytes().for_each(put);
            Ok(())
        }
    }

    pub fn println(args: fmt::Arguments) {
        let _ = Uart.write_fmt(args);
        put(b'\n');
    }
}

/// A virtio-mmio slot's registers (32 bits each).
pub fn mmio_read(base: usize, offset: usize) -> u32 {
    r32(base + offset)
}

pub fn mmio_write(base: usize, offset: usize, v: u32) {
    w32(base + offset, v)
}

/// The PLIC at 0x0c000000, context 1 (hart 0, S-mode).
pub mod plic {
    use super::*;

    const BASE: usize = 0x0c00_0000;
    const S_ENABLE: usize = BASE + 0x2080;
    const S_THRESHOLD: usize = BASE + 0x20_1000;
    const S_CLAIM: usize = BASE + 0x20_1004;

    pub fn set_priority(source: u32, p: u32) {
        w32(BASE + 4 * source as usize, p);
    }
    pub fn priority(source: u32) -> u32 {
        r32(BASE + 4 * source as usize)
    }
    pub fn enable(source: u32) {
        w32(S_ENABLE, r32(S_ENABLE) | 1 << source);
    }
    pub fn enable_word() -> u32 {
        r32(S_ENABLE)
    }
    pub fn set_threshold(t: u32) {
        w32(S_THRESHOLD, t);
    }
    pub fn threshold() -> u32 {
        r32(S_THRESHOLD)
    }
    pub fn claim() -> u32 {
        r32(S_CLAIM)
    }
    pub fn complete(source: u32) {
        w32(S_CLAIM, source);
    }
}
