//! The SBI calls the guests make: `ecall` with the extension id in a7, the function id in a6,
//! arguments in a0..a5; the SBI answers with an error code in a0 and a value in a1.
//! Legacy (v0.1) calls take their id in a7 alone and return one value in a0.
use core::arch::asm;

// Legacy extensions (one function each).
pub const LEGACY_SET_TIMER: usize = 0;
pub const LEGACY_CONSOLE_PUTCHAR: usize = 1;
pub const LEGACY_CONSOLE_GETCHAR: usize = 2;
pub const LEGACY_SHUTDOWN: usize = 8;

// Extension ids (ASCII names, except BASE).
pub const EXT_BASE: usize = 0x10;
pub const EXT_TIME: usize = 0x5449_4D45; // "TIME"
pub const EXT_SRST: usize = 0x5352_5354; // "SRST"
pub const EXT_DBCN: usize = 0x4442_434E; // "DBCN"

// BASE functions.
pub const BASE_GET_SPEC_VERSION: usize = 0;
pub const BASE_GET_IMPL_ID: usize = 1;
pub const BASE_GET_IMPL_VERSION: usize = 2;
pub const BASE_PROBE_EXTENSION: usize = 3;
pub const BASE_GET_MVENDORID: usize = 4;
pub const BASE_GET_MARCHID: usize = 5;
pub const BASE_GET_MIMPID: usize = 6;

// DBCN functions.
pub const DBCN_WRITE: usize = 0;
pub const DBCN_READ: usize = 1;
pub const DBCN_WRITE_BYTE: usize = 2;

// SRST types and reasons.
pub const RESET_SHUTDOWN: usize = 0;
pub const REASON_NONE: usize = 0;
pub const REASON_SYSTEM_FAILURE: usize = 1;

// Standard error codes.
pub const SUCCESS: isize = 0;
pub const ERR_NOT_SUPPORTED: isize = -2;

/// What an SBI v0.2+ call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbiRet {
    pub error: isize,
    pub value: usize,
}

/// One SBI call with up to three arguments.
pub fn call(ext: usize, fid: usize, a0: usize, a1: usize, a2: usize) -> SbiRet {
    let (error, value);
    // SAFETY: ecall transfers to the SBI, which only reads these registers and writes a0/a1.
    unsafe {
        asm!("ecall",
            inlateout("a0") a0 => error,
            inlateout("a1") a1 => value,
            in("a2") a2,
            in("a6") fid,
            in("a7") ext,
            options(nostack));
    }
    SbiRet { error, value }
}

/// A legacy (v0.1) call: id in a7, one argument in a0, result in a0.
pub fn legacy_call(id: usize, a0: usize) -> isize {
    let ret;
    // SAFETY: as in `call`; legacy calls may clobber a1 too.
    unsafe {
        asm!("ecall",
            inlateout("a0") a0 => ret,
            lateout("a1") _,
            in("a7") id,
            options(nostack));
    }
    ret
}

pub fn legacy_console_putchar(byte: u8) {
    legacy_call(LEGACY_CONSOLE_PUTCHAR, byte as usize);
}

pub fn legacy_shutdown() -> ! {
    legacy_call(LEGACY_SHUTDOWN, 0);
    unreachable_after_poweroff()
}

/// SRST system_reset; returns only if the SBI refused.
pub fn system_reset(kind: usize, reason: usize) -> ! {
    call(EXT_SRST, 0, kind, reason, 0);
    // SRST failed: fall back to the legacy shutdown.
    legacy_shutdown()
}

/// The SBI did not power off: there is nothing left to do but spin.
fn unreachable_after_poweroff() -> ! {
    loop {
        core::hint::spin_loop();
    }
}
