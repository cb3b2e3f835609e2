//! The two devices, as a kernel drives them: volatile loads and stores at QEMU virt's
//! addresses.
use core::ptr::{read_volatile, write_volatile};

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
