//! A paged teaching kernel of the rCore kind: Sv39, the kernel identity-mapped from
//! 0x80200000 to the end of 128 MiB RAM (4 KiB pages for the image, 2 MiB megapages above),
//! a trampoline at the top of every address space that switches satp, each task's trap
//! context on the page below it, kernel stacks in the upper half, four U-mode tasks at
//! 0x10000 with their own page tables and ASIDs, timer preemption, write/yield/exit, and
//! page faults that kill the task.
//!
//! Before the tasks run, the kernel probes the MMU from S-mode (SUM, MXR, read-only and
//! non-executable pages, A/D set by the hardware, sfence.vma by address and by ASID). Task
//! output goes to per-task buffers and is printed in task order at the end, followed by a
//! summary, so the lines do not depend on where the timer happened to strike.
#![no_std]
#![no_main]

mod mm;
mod probe;
mod trap;
mod user;

use core::cell::UnsafeCell;
use mm::{Frames, A, D, PAGE, R, TRAMPOLINE, TRAP_CONTEXT, U, W, X};
use riscv_guests::{println, Checks};

#[macro_export]
macro_rules! csr_read {
    ($csr:literal) => {{
        let v: usize;
        // SAFETY: reading a supervisor CSR changes nothing.
        unsafe { core::arch::asm!(concat!("csrr {0}, ", $csr), out(reg) v) };
        v
    }};
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ready,
    Exited(usize),
    Killed { cause: usize, stval: usize },
}

pub struct Task {
    pub name: &'static str,
    pub root: usize,
    pub satp: usize,
    /// Physical frame of the trap context (mapped at TRAP_CONTEXT in the task's space).
    pub ctx_frame: usize,
    pub state: State,
    pub preempted: u32,
    pub out: [u8; 512],
    pub out_len: usize,
}

impl Task {
    const EMPTY: Task =
        Task { name: "", root: 0, satp: 0, ctx_frame: 0, state: State::Exited(0), preempted: 0, out: [0; 512], out_len: 0 };
}

pub struct Kernel {
    pub frames: Frames,
    pub root: usize,
    pub satp: usize,
    pub tasks: [Task; 4],
    pub current: usize,
    pub checks: Checks,
}

/// The kernel's one global: a single hart, and the kernel runs with interrupts off.
struct Global(UnsafeCell<Kernel>);
// SAFETY: one hart; the kernel is never interrupted (sstatus.SIE stays 0 in S-mode).
unsafe impl Sync for Global {}

static KERNEL: Global = Global(UnsafeCell::new(Kernel {
    frames: Frames::new(),
    root: 0,
    satp: 0,
    tasks: [Task::EMPTY, Task::EMPTY, Task::EMPTY, Task::EMPTY],
    current: 0,
    checks: Checks::new(),
}));

/// The kernel state. Callers never hold two of these across a call that takes another.
#[allow(clippy::mut_from_ref)]
pub fn kernel() -> &'static mut Kernel {
    // SAFETY: see Global; borrows are short and not overlapping by convention.
    unsafe { &mut *KERNEL.0.get() }
}

extern "C" {
    fn kernel_trap_vector();
}

// Any trap the kernel takes in S-mode outside a probe is a kernel bug: report and stop.
core::arch::global_asm!(
    ".balign 4",
    ".globl kernel_trap_vector",
    "kernel_trap_vector:",
    "    call kernel_trap",
);

#[no_mangle]
extern "C" fn kernel_trap() -> ! {
    let (c, e, t): (usize, usize, usize) = (csr_read!("scause"), csr_read!("sepc"), csr_read!("stval"));
    panic!("kernel trap: scause {c:#x} sepc {e:#x} stval {t:#x}");
}

pub fn set_kernel_trap_vector() {
    // SAFETY: points stvec at the kernel's own vector.
    unsafe { core::arch::asm!("csrw stvec, {0}", in(reg) kernel_trap_vector as *const () as usize) };
}

/// The kernel's address space: identity RAM and UART, trampoline, the tasks' kernel stacks.
fn kernel_space(k: &mut Kernel) {
    let f = &mut k.frames;
    k.root = f.alloc();
    let kernel_flags = R | W | X | A | D;
    for pa in (0x8020_0000..mm::IMAGE_END).step_by(PAGE) {
        mm::map(f, k.root, pa, pa, 0, kernel_flags);
    }
    for pa in (mm::IMAGE_END..mm::RAM_END).step_by(2 << 20) {
        mm::map(f, k.root, pa, pa, 1, R | W | A | D);
    }
    mm::map(f, k.root, 0x1000_0000, 0x1000_0000, 0, R | W | A | D);
    mm::map(f, k.root, TRAMPOLINE, trap::trampoline_frame(), 0, R | X | A);
    k.satp = mm::satp(k.root, 0);
}

/// Builds task `id`: its address space (code, stack, trap context, trampoline), kernel stack
/// and initial trap context. User pages leave A and D clear: the hardware sets them.
fn create_task(k: &mut Kernel, id: usize, name: &'static str, code: &[u8]) {
    let f = &mut k.frames;
    let root = f.alloc();
    let code_frame = f.alloc();
    assert!(code.len() <= PAGE);
    // SAFETY: a fresh frame, identity-mapped.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), code_frame as *mut u8, code.len()) };
    mm::map(f, root, user::USER_BASE, code_frame, 0, R | X | U);
    let stack_frame = f.alloc();
    mm::map(f, root, user::USER_STACK - PAGE, stack_frame, 0, R | W | U);
    let ctx_frame = f.alloc();
    mm::map(f, root, TRAP_CONTEXT, ctx_frame, 0, R | W);
    mm::map(f, root, TRAMPOLINE, trap::trampoline_frame(), 0, R | X);
    let (bottom, top) = mm::kernel_stack(id);
    for va in (bottom..top).step_by(PAGE) {
        let frame = f.alloc();
        mm::map(f, k.root, va, frame, 0, R | W | A | D);
    }
    let ctx = trap::TrapContext::user(user::USER_BASE, user::USER_STACK, k.satp, top);
    // SAFETY: the context frame is ours and identity-mapped.
    unsafe { (ctx_frame as *mut trap::TrapContext).write(ctx) };
    k.tasks[id] = Task { name, root, satp: mm::satp(root, id + 1), ctx_frame, state: State::Ready, ..Task::EMPTY };
}

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    extern "C" {
        static __stack_top: u8;
    }
    // SAFETY: only the address of the linker symbol is taken.
    let image_end = unsafe { &__stack_top as *const u8 as usize };
    assert!(image_end <= mm::IMAGE_END, "kernel image too large");
    set_kernel_trap_vector();
    let k = kernel();
    kernel_space(k);
    // SAFETY: turning on Sv39; the code, stack and data we run on are identity-mapped.
    unsafe { core::arch::asm!("csrw satp, {0}", "sfence.vma", in(reg) k.satp) };
    // Let U-mode read `time` (the spinner watches the clock).
    // SAFETY: scounteren only gates U-mode counter reads.
    unsafe { core::arch::asm!("csrw scounteren, {0}", in(reg) 2usize) };
    println!("paged: sv39 on, kernel identity-mapped 0x80200000..{:#x}", mm::RAM_END);
    probe::all(k);
    for (id, (name, code)) in user::programs().into_iter().enumerate() {
        create_task(k, id, name, code);
    }
    println!("paged: {} tasks at {:#x}, trampoline {TRAMPOLINE:#x}", k.tasks.len(), user::USER_BASE);
    trap::start()
}

fn cause_name(cause: usize) -> &'static str {
    match cause {
        12 => "instruction page fault",
        13 => "load page fault",
        15 => "store page fault",
        _ => "unexpected trap",
    }
}

/// Every task is done: print their output in task order, the summary, and power off.
pub fn finish() -> ! {
    let k = kernel();
    for t in &k.tasks {
        riscv_guests::print(core::str::from_utf8(&t.out[..t.out_len]).unwrap_or("(not utf-8)\n"));
    }
    for (id, t) in k.tasks.iter().enumerate() {
        match t.state {
            State::Exited(code) => println!("task {id} {}: exited with {code}", t.name),
            State::Killed { cause, stval } => {
                println!("task {id} {}: killed by {} (scause {cause}, stval {stval:#x})", t.name, cause_name(cause))
            }
            State::Ready => println!("task {id} {}: still ready (wrong)", t.name),
        }
    }
    let c = &mut k.checks;
    c.check("writer exited with 0", k.tasks[0].state == State::Exited(0), format_args!("no"));
    c.check("spinner exited with 7", k.tasks[1].state == State::Exited(7), format_args!("no"));
    c.check("spinner was preempted by the timer", k.tasks[1].preempted > 0, format_args!("never"));
    let want = State::Killed { cause: 13, stval: TRAMPOLINE };
    c.check("reader killed by a load page fault at the trampoline", k.tasks[2].state == want, format_args!("no"));
    let want = State::Killed { cause: 15, stval: user::USER_BASE + 0x10 };
    c.check("scribbler killed by a store page fault in its code", k.tasks[3].state == want, format_args!("no"));
    c.finish("paged")
}
