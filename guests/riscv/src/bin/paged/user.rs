//! The user tasks: position-independent RISC-V code (only pc-relative references), kept in the
//! kernel image and copied by the kernel to a fresh page at [`USER_BASE`] in each task's own
//! address space. System calls: a7 = number, a0..a2 = arguments, a0 = result.
use core::arch::global_asm;

pub const USER_BASE: usize = 0x1_0000;
/// The user stack page: [USER_STACK - PAGE, USER_STACK), with an unmapped page below the code's
/// neighbour so a stack overflow faults.
pub const USER_STACK: usize = 0x1_3000;
/// How long the spinner spins without a system call: five timer periods.
pub const SPIN_TICKS: usize = 5 * crate::trap::TICK;

// `print label`: write(1, label, strlen(label)) through the blob's own `strlen`.
global_asm!(
    ".macro user_print label",
    "    lla a0, \\label",
    "    jal ra, 8f",
    "    mv a2, a0",
    "    lla a1, \\label",
    "    li a0, 1",
    "    li a7, 64",
    "    ecall",
    ".endm",
    // strlen(a0) -> a0; the one helper every blob carries, at local label 8.
    ".macro user_strlen",
    "8:  mv t0, a0",
    "9:  lbu t1, 0(t0)",
    "    beqz t1, 7f",
    "    addi t0, t0, 1",
    "    j 9b",
    "7:  sub a0, t0, a0",
    "    ret",
    ".endm",
    ".macro user_yield",
    "    li a7, 124",
    "    ecall",
    ".endm",
    ".macro user_exit code",
    "    li a0, \\code",
    "    li a7, 93",
    "    ecall",
    ".endm",
);

// Task 1: three lines with a yield after each, one refused write, exit 0.
global_asm!(
    ".section .rodata.user, \"a\"",
    ".balign 8",
    ".globl user_writer, user_writer_end",
    "user_writer:",
    "    user_print 1f",
    "    user_yield",
    "    user_print 2f",
    "    user_yield",
    // A kernel address is not user memory: write must refuse it.
    "    li a0, 1",
    "    li a1, 0x80200000",
    "    li a2, 4",
    "    li a7, 64",
    "    ecall",
    "    bgez a0, 5f",
    "    user_print 4f",
    "5:  user_print 3f",
    "    user_exit 0",
    "    user_strlen",
    "1:  .asciz \"writer: line 1\\n\"",
    "2:  .asciz \"writer: line 2\\n\"",
    "3:  .asciz \"writer: line 3\\n\"",
    "4:  .asciz \"writer: write from a kernel address refused\\n\"",
    "user_writer_end:",
    ".text",
);

// Task 2: spins SPIN_TICKS without a system call (so only the timer can take the CPU away),
// storing to its stack all the while, then exits 7.
global_asm!(
    ".section .rodata.user, \"a\"",
    ".balign 8",
    ".globl user_spinner, user_spinner_end",
    "user_spinner:",
    "    user_print 1f",
    "    rdtime s0",
    "    li s1, {spin}",
    "    add s1, s0, s1",
    "    li s2, 0",
    "5:  addi s2, s2, 1",
    "    sd s2, -8(sp)",
    "    rdtime t0",
    "    bltu t0, s1, 5b",
    "    ld t1, -8(sp)",
    "    bne t1, s2, 6f",
    "    user_print 2f",
    "    user_exit 7",
    "6:  user_exit 99",
    "    user_strlen",
    "1:  .asciz \"spinner: spinning without system calls\\n\"",
    "2:  .asciz \"spinner: done\\n\"",
    "user_spinner_end:",
    ".text",
    spin = const SPIN_TICKS,
);

// Task 3: loads from the trampoline, which is mapped in its space but not for U-mode.
global_asm!(
    ".section .rodata.user, \"a\"",
    ".balign 8",
    ".globl user_reader, user_reader_end",
    "user_reader:",
    "    user_print 1f",
    "    li t0, -4096",
    "    ld t1, 0(t0)",
    "    user_print 2f",
    "    user_exit 0",
    "    user_strlen",
    "1:  .asciz \"reader: loading from the trampoline page\\n\"",
    "2:  .asciz \"reader: still alive (wrong)\\n\"",
    "user_reader_end:",
    ".text",
);

// Task 4: stores into its own code page, which is mapped R|X.
global_asm!(
    ".section .rodata.user, \"a\"",
    ".balign 8",
    ".globl user_scribbler, user_scribbler_end",
    "user_scribbler:",
    "    user_print 1f",
    "    li t0, {base} + 0x10",
    "    sw zero, 0(t0)",
    "    user_print 2f",
    "    user_exit 0",
    "    user_strlen",
    "1:  .asciz \"scribbler: storing into my code page\\n\"",
    "2:  .asciz \"scribbler: still alive (wrong)\\n\"",
    "user_scribbler_end:",
    ".text",
    base = const USER_BASE,
);

extern "C" {
    static user_writer: u8;
    static user_writer_end: u8;
    static user_spinner: u8;
    static user_spinner_end: u8;
    static user_reader: u8;
    static user_reader_end: u8;
    static user_scribbler: u8;
    static user_scribbler_end: u8;
}

/// Each task's name and code bytes, in task order.
pub fn programs() -> [(&'static str, &'static [u8]); 4] {
    fn blob(start: &u8, end: &u8) -> &'static [u8] {
        let (s, e) = (start as *const u8, end as *const u8);
        // SAFETY: the two labels delimit one blob in the kernel's read-only data.
        unsafe { core::slice::from_raw_parts(s, e as usize - s as usize) }
    }
    // SAFETY: taking the addresses of the blob labels (never read as single bytes).
    unsafe {
        [
            ("writer", blob(&user_writer, &user_writer_end)),
            ("spinner", blob(&user_spinner, &user_spinner_end)),
            ("reader", blob(&user_reader, &user_reader_end)),
            ("scribbler", blob(&user_scribbler, &user_scribbler_end)),
        ]
    }
}
