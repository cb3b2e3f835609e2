//! What every RISC-V test guest shares: the entry point, the panic handler, console output and
//! the SBI calls ([`sbi`]), QEMU virt's devices and a trap entry ([`hw`]). A guest binary
//! defines `guest_main` (and `on_trap` if it installs [`hw::trap`]).
#![no_std]

pub mod hw;
pub mod lab;
pub mod sbi;

use core::fmt::{self, Write};

// The entry: a0 = hart id, a1 = device tree address (left untouched for guest_main).
// Sets the stack, zeroes .bss (a raw binary does not carry it), then calls guest_main.
core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".globl _start",
    "_start:",
    "    la sp, __stack_top",
    "    la t0, __bss_start",
    "    la t1, __bss_end",
    "1:  bgeu t0, t1, 2f",
    "    sd zero, 0(t0)",
    "    addi t0, t0, 8",
    "    j 1b",
    "2:  call guest_main",
    // guest_main never returns; if it does, power off reporting a failure.
    "    call returned_from_main",
);

// Each guest binary defines `#[no_mangle] extern "C" fn guest_main(hart: usize, dtb: usize) -> !`,
// which the entry above calls.

#[no_mangle]
extern "C" fn returned_from_main() -> ! {
    print("guest_main returned\n");
    sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_SYSTEM_FAILURE);
}

/// Writes `s` to the console with the legacy console_putchar call, one byte per call.
pub fn print(s: &str) {
    for b in s.bytes() {
        sbi::legacy_console_putchar(b);
    }
}

/// The console as a `core::fmt::Write`, for `write!`-style formatting.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        print(s);
        Ok(())
    }
}

/// `println!` for guests: formats to the SBI console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Console, $($arg)*);
    }};
}

/// Counts PASS/FAIL lines of a self-checking guest and powers off with the verdict.
pub struct Checks {
    pub passed: u32,
    pub failed: u32,
}

impl Checks {
    pub const fn new() -> Self {
        Checks { passed: 0, failed: 0 }
    }

    /// Prints `PASS name` or `FAIL name: got .. want ..`.
    pub fn eq(&mut self, name: &str, got: u64, want: u64) {
        if got == want {
            self.pass(name);
        } else {
            self.fail(name, format_args!("got {got:#x} want {want:#x}"));
        }
    }

    /// Prints `PASS name` if `ok`, else `FAIL name: why`.
    pub fn check(&mut self, name: &str, ok: bool, why: fmt::Arguments) {
        if ok {
            self.pass(name);
        } else {
            self.fail(name, why);
        }
    }

    pub fn pass(&mut self, name: &str) {
        self.passed += 1;
        println!("PASS {name}");
    }

    pub fn fail(&mut self, name: &str, why: fmt::Arguments) {
        self.failed += 1;
        println!("FAIL {name}: {why}");
    }

    /// Prints the summary line and shuts down through SRST: no reason if all passed, else
    /// system failure.
    pub fn finish(&self, guest: &str) -> ! {
        if self.failed == 0 {
            println!("{guest}: all {} checks passed", self.passed);
            sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_NONE);
        } else {
            println!("{guest}: {} of {} checks failed", self.failed, self.passed + self.failed);
            sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_SYSTEM_FAILURE);
        }
    }
}

impl Default for Checks {
    fn default() -> Self {
        Self::new()
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("guest panic: {info}");
    sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_SYSTEM_FAILURE);
}
