//! Traps from user tasks: the trampoline (entry and exit, switching satp), the trap context,
//! system calls, timer preemption and page faults, and the round-robin scheduler.
//!
//! The kernel keeps no state on a kernel stack between traps: every trap starts at the top of
//! the task's kernel stack, handles the trap, and leaves through [`run`] into some task.
use crate::mm::{self, TRAMPOLINE, TRAP_CONTEXT};
use crate::{csr_read, kernel, State};
use core::arch::{asm, global_asm};
use riscv_guests::sbi;

pub const SYS_WRITE: usize = 64;
pub const SYS_EXIT: usize = 93;
pub const SYS_YIELD: usize = 124;

const ECALL_FROM_U: usize = 8;
const TIMER_INTERRUPT: usize = (1 << 63) | 5;
/// Timer period in `time` ticks (10 ms at QEMU virt's 10 MHz).
pub const TICK: usize = 100_000;
const SIE_STIE: usize = 1 << 5;
const SSTATUS_SPIE: usize = 1 << 5;

/// What the trampoline saves and loads, at [`TRAP_CONTEXT`] in the task's address space.
#[repr(C)]
pub struct TrapContext {
    pub x: [usize; 32],
    pub sstatus: usize,
    pub sepc: usize,
    pub kernel_satp: usize,
    pub kernel_sp: usize,
    pub trap_handler: usize,
}

impl TrapContext {
    /// A fresh user context: U-mode (SPP = 0) at `entry` with stack `sp`.
    pub fn user(entry: usize, sp: usize, kernel_satp: usize, kernel_sp: usize) -> Self {
        let mut x = [0; 32];
        x[2] = sp;
        TrapContext {
            x,
            sstatus: SSTATUS_SPIE,
            sepc: entry,
            kernel_satp,
            kernel_sp,
            trap_handler: trap_handler as *const () as usize,
        }
    }
}

// The trampoline: one page of its own, mapped at TRAMPOLINE (R|X, not U) in every address
// space. sscratch holds TRAP_CONTEXT while a task runs.
global_asm!(
    ".section .text.trampoline, \"ax\"",
    ".balign 4096",
    ".globl __alltraps",
    "__alltraps:",
    "    csrrw sp, sscratch, sp",
    "    sd x1, 1*8(sp)",
    "    sd x3, 3*8(sp)",
    "    sd x4, 4*8(sp)",
    "    sd x5, 5*8(sp)",
    "    sd x6, 6*8(sp)",
    "    sd x7, 7*8(sp)",
    "    sd x8, 8*8(sp)",
    "    sd x9, 9*8(sp)",
    "    sd x10, 10*8(sp)",
    "    sd x11, 11*8(sp)",
    "    sd x12, 12*8(sp)",
    "    sd x13, 13*8(sp)",
    "    sd x14, 14*8(sp)",
    "    sd x15, 15*8(sp)",
    "    sd x16, 16*8(sp)",
    "    sd x17, 17*8(sp)",
    "    sd x18, 18*8(sp)",
    "    sd x19, 19*8(sp)",
    "    sd x20, 20*8(sp)",
    "    sd x21, 21*8(sp)",
    "    sd x22, 22*8(sp)",
    "    sd x23, 23*8(sp)",
    "    sd x24, 24*8(sp)",
    "    sd x25, 25*8(sp)",
    "    sd x26, 26*8(sp)",
    "    sd x27, 27*8(sp)",
    "    sd x28, 28*8(sp)",
    "    sd x29, 29*8(sp)",
    "    sd x30, 30*8(sp)",
    "    sd x31, 31*8(sp)",
    "    csrr t0, sstatus",
    "    csrr t1, sepc",
    "    sd t0, 32*8(sp)",
    "    sd t1, 33*8(sp)",
    "    csrr t2, sscratch",
    "    sd t2, 2*8(sp)",
    "    ld t0, 34*8(sp)",
    "    ld t1, 36*8(sp)",
    "    ld sp, 35*8(sp)",
    "    csrw satp, t0",
    "    sfence.vma",
    "    jr t1",
    // a0 = TRAP_CONTEXT, a1 = the task's satp.
    ".globl __restore",
    "__restore:",
    "    csrw satp, a1",
    "    sfence.vma",
    "    csrw sscratch, a0",
    "    mv sp, a0",
    "    ld t0, 32*8(sp)",
    "    ld t1, 33*8(sp)",
    "    csrw sstatus, t0",
    "    csrw sepc, t1",
    "    ld x1, 1*8(sp)",
    "    ld x3, 3*8(sp)",
    "    ld x4, 4*8(sp)",
    "    ld x5, 5*8(sp)",
    "    ld x6, 6*8(sp)",
    "    ld x7, 7*8(sp)",
    "    ld x8, 8*8(sp)",
    "    ld x9, 9*8(sp)",
    "    ld x10, 10*8(sp)",
    "    ld x11, 11*8(sp)",
    "    ld x12, 12*8(sp)",
    "    ld x13, 13*8(sp)",
    "    ld x14, 14*8(sp)",
    "    ld x15, 15*8(sp)",
    "    ld x16, 16*8(sp)",
    "    ld x17, 17*8(sp)",
    "    ld x18, 18*8(sp)",
    "    ld x19, 19*8(sp)",
    "    ld x20, 20*8(sp)",
    "    ld x21, 21*8(sp)",
    "    ld x22, 22*8(sp)",
    "    ld x23, 23*8(sp)",
    "    ld x24, 24*8(sp)",
    "    ld x25, 25*8(sp)",
    "    ld x26, 26*8(sp)",
    "    ld x27, 27*8(sp)",
    "    ld x28, 28*8(sp)",
    "    ld x29, 29*8(sp)",
    "    ld x30, 30*8(sp)",
    "    ld x31, 31*8(sp)",
    "    ld sp, 2*8(sp)",
    "    sret",
    ".balign 4096",
    ".text",
);

extern "C" {
    fn __alltraps();
    fn __restore();
}

/// The physical page holding the trampoline.
pub fn trampoline_frame() -> usize {
    __alltraps as *const () as usize
}

pub fn set_next_timer() {
    let now: usize = csr_read!("time");
    sbi::call(sbi::EXT_TIME, 0, now + TICK, 0, 0);
}

/// Starts the timer and runs the first task.
pub fn start() -> ! {
    set_next_timer();
    // SAFETY: enabling the timer interrupt; it is taken only in U-mode (SIE stays 0 in S).
    unsafe { asm!("csrs sie, {0}", in(reg) SIE_STIE) };
    run(0)
}

/// Leaves the kernel into task `id` through the trampoline's `__restore`.
pub fn run(id: usize) -> ! {
    let k = kernel();
    k.current = id;
    let satp = k.tasks[id].satp;
    let restore = TRAMPOLINE + (__restore as *const () as usize - __alltraps as *const () as usize);
    // SAFETY: stvec now points at the trampoline for the task's next trap; __restore loads
    // the task's context and srets into U-mode.
    unsafe {
        asm!(
            "csrw stvec, {tv}",
            "jr {restore}",
            tv = in(reg) TRAMPOLINE,
            restore = in(reg) restore,
            in("a0") TRAP_CONTEXT,
            in("a1") satp,
            options(noreturn)
        )
    }
}

/// The next task after `from` that is still ready, round robin.
fn next_ready(from: usize) -> Option<usize> {
    let tasks = &kernel().tasks;
    (1..=tasks.len()).map(|i| (from + i) % tasks.len()).find(|&i| tasks[i].state == State::Ready)
}

fn schedule(from: usize) -> ! {
    match next_ready(from) {
        Some(id) => run(id),
        None => crate::finish(),
    }
}

/// Entered from `__alltraps` in the kernel's address space, on the task's kernel stack.
extern "C" fn trap_handler() -> ! {
    crate::set_kernel_trap_vector();
    let scause: usize = csr_read!("scause");
    let stval: usize = csr_read!("stval");
    let k = kernel();
    let id = k.current;
    let task = &mut k.tasks[id];
    // SAFETY: the trap context frame is RAM identity-mapped in the kernel's space.
    let ctx = unsafe { &mut *(task.ctx_frame as *mut TrapContext) };
    match scause {
        ECALL_FROM_U => {
            ctx.sepc += 4;
            let (a0, a1, a2) = (ctx.x[10], ctx.x[11], ctx.x[12]);
            match ctx.x[17] {
                SYS_WRITE => {
                    ctx.x[10] = task.write(a0, a1, a2);
                    run(id)
                }
                SYS_YIELD => {
                    ctx.x[10] = 0;
                    schedule(id)
                }
                SYS_EXIT => {
                    task.state = State::Exited(a0);
                    schedule(id)
                }
                _ => {
                    ctx.x[10] = usize::MAX;
                    run(id)
                }
            }
        }
        TIMER_INTERRUPT => {
            task.preempted += 1;
            set_next_timer();
            schedule(id)
        }
        _ => {
            // Page faults (12, 13, 15) and anything else a task does wrong: kill it.
            task.state = State::Killed { cause: scause, stval };
            schedule(id)
        }
    }
}

impl crate::Task {
    /// write(fd, buf, len): appends the user's bytes to this task's console buffer, read
    /// through the task's own page table; -1 if the buffer is not readable user memory.
    fn write(&mut self, fd: usize, buf: usize, len: usize) -> usize {
        let out = &mut self.out;
        let mut n = self.out_len;
        let ok = fd == 1
            && mm::copy_from_user(self.root, buf, len, |b| {
                if n < out.len() {
                    out[n] = b;
                    n += 1;
                }
            })
            .is_some();
        if !ok {
            return usize::MAX;
        }
        self.out_len = n;
        len
    }
}
