//! `vmm bench --arch riscv` (riscv64 only): what trap-and-emulate costs, measured in one run.
//!
//! (a) One SBI call through URVirt (a guest doing N `ecall`s of BASE get_spec_version) against
//!     one raw SIGSYS round trip: the same `ecall` loop run natively from guest RAM under the
//!     same ecall-trap mechanism, with a handler that does nothing but rt_sigreturn. Goal: the
//!     URVirt call costs at most 1.2x the raw round trip.
//!     The SBI loop also runs with `--trace` on (every trap, to /dev/null: the cost of the
//!     record and its write(2)s, not of a disk): the tracer is compiled into every run, so the
//!     URVirt figure is its cost when off, and "trace on / off" what tracing costs.
//! (b) A compute loop run as a guest against the very same machine code called natively.
//!     Goal: the guest runs at >= 0.95x native speed.
//!
//! (c) Sv39 ([`paged`]): a U-mode system call round trip through a paged guest kernel, in
//!     microseconds and signals, against (a)'s raw SIGSYS round trip; a first-touch page fault.
//! (d) MMIO ([`mmio`]): one guest load from a device register, against (a).
//!
//! The guests time themselves with `rdtime` and leave the tick count at guest physical
//! 0x80100000, so VM set-up and tear-down are not counted. The compute loop runs once untimed
//! first, in the guest and natively alike: the first pass after a load pays for the
//! emulator's translation and for kernel work the VM set-up left behind, which made early
//! versions of this benchmark swing between 0.3x and 1.2x. The tiny guests are machine code
//! below (assembled from the listings in the comments), so no extra build step is needed.
use crate::config::{EcallTrap, RiscvConfig, DEFAULT_MEM};
use crate::engine::signals::AltStack;
use crate::engine::sud;
use crate::engine::timer::{rdtime, ticks_to_duration};
use crate::engine::vm::{Mechanism, UrvirtVm};
use common::console::Console;
use common::image::Image;
use common::vm::{GuestExit, VirtualMachine, VmConfig};
use common::{Error, Result};
use std::fmt::Write as _;
use std::time::Duration;

mod mmio;
mod paged;

const SBI_CALLS: u64 = 1_000;
const ROUNDS: usize = 30;
/// Short enough (well under a millisecond) that some runs escape the host scheduler's
/// preemption on a busy machine; the best of many runs is what we compare.
const COMPUTE_ITERATIONS: u64 = 250_000;
const COMPUTE_ROUNDS: usize = 60;
/// Where the guests leave their results (offset in RAM, guest physical 0x80100000).
const RESULT_OFFSET: usize = 0x10_0000;
/// Where the guests are loaded (offset in RAM, guest physical 0x80200000).
const KERNEL_OFFSET: usize = 0x20_0000;
/// Where the raw ecall loop is copied for (a).
const RAW_LOOP_OFFSET: usize = 0x10_0100;

/// ld s1, count; rdtime s2; 1: li a7, 0x10; li a6, 0; ecall; addi s1, s1, -1; bnez s1, 1b;
/// rdtime s3; sub s3, s3, s2; li t0, 0x80100000; sd s3, 0(t0); SRST shutdown (0, 0); j .;
/// count: .dword (bytes 64..72, patched in).
const SBI_LOOP_GUEST: [u32; 18] = [
    0x00000497, 0x0404b483, 0xc0102973, 0x480148c1, 0x00000073, 0xf8fd14fd, 0xc01029f3, 0x412989b3, 0x829b6285,
    0x02d28012, 0x0132b023, 0x535258b7, 0x3548889b, 0x45014801, 0x00734581, 0xa0010000, 0x00000000, 0x00000000,
];
const SBI_LOOP_COUNT_AT: usize = 64;

/// ld a0, count; call compute (a warm-up, untimed); ld a0, count; rdtime s2; call compute;
/// rdtime s3; sub s3, s3, s2; li t0, 0x80100000; sd s3, 0(t0); sd a0, 8(t0); SRST shutdown; j .;
/// compute (byte 80): li t0, 0; li t1, 0x9e3779b9; 1: add t0, t0, t1; slli t2, t0, 7;
/// xor t0, t0, t2; srli t2, t0, 9; xor t0, t0, t2; addi a0, a0, -1; bnez a0, 1b; mv a0, t0; ret
/// count: .dword (bytes 120..128, patched in).
const COMPUTE_GUEST: [u32; 32] = [
    0x00000517, 0x07853503, 0x00000097, 0x048080e7, 0x00000517, 0x06853503, 0xc0102973, 0x00000097, 0x034080e7,
    0xc01029f3, 0x412989b3, 0x829b6285, 0x02d28012, 0x0132b023, 0x00a2b423, 0x535258b7, 0x3548889b, 0x45014801,
    0x00734581, 0xa0010000, 0x63514281, 0xc6f3031b, 0x0313033e, 0x929a9b93, 0x00729393, 0x0072c2b3, 0x0092d393,
    0x0072c2b3, 0xf575157d, 0x80828516, 0x00000000, 0x00000000,
];
const COMPUTE_COUNT_AT: usize = 120;
const COMPUTE_FN_AT: usize = 80;

/// raw_loop(n): mv t0, a0; 1: li a7, 0x10; li a6, 0; ecall; addi t0, t0, -1; bnez t0, 1b; ret
/// (then c.nop padding).
const RAW_LOOP: [u32; 5] = [0x48c182aa, 0x00734801, 0x12fd0000, 0xfe029be3, 0x00018082];

// The raw SIGSYS handler: nothing but rt_sigreturn, from the monitor's code like URVirt's.
std::arch::global_asm!(
    ".pushsection .text.urvirt_bench_sigsys, \"ax\", @progbits",
    ".globl urvirt_bench_sigsys",
    ".p2align 2",
    "urvirt_bench_sigsys:",
    "    li a7, 139",
    "    ecall",
    ".popsection",
);

extern "C" {
    fn urvirt_bench_sigsys();
}

fn bytes_of(words: &[u32], count_at: usize, count: u64) -> Vec<u8> {
    let mut b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    b[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    b
}

fn new_vm(ecall_trap: EcallTrap) -> Result<UrvirtVm> {
    let vm = VmConfig {
        mem_size: DEFAULT_MEM,
        timeout: Some(Duration::from_secs(120)),
        console: Console::capture(),
        jail: true,
        ..VmConfig::default()
    };
    UrvirtVm::new(RiscvConfig { vm, ecall_trap, stats: false })
}

/// Loads and runs one built-in guest; returns the ticks it measured and the value after them.
fn run_guest(vm: &mut UrvirtVm, name: &str, bytes: Vec<u8>) -> Result<(u64, u64)> {
    vm.load(&Image { path: name.into(), bytes })?;
    let outcome = vm.run()?;
    if outcome.exit != GuestExit::PowerOff(0) {
        return Err(Error::guest(format!("benchmark guest {name} ended with {:?}", outcome.exit)));
    }
    let ram = vm.ram();
    let word = |at: usize| u64::from_le_bytes(ram[at..at + 8].try_into().unwrap());
    Ok((word(RESULT_OFFSET), word(RESULT_OFFSET + 8)))
}

/// Runs the raw ecall loop from guest RAM under the same mechanism; returns its ticks.
fn raw_sigsys_round_trips(vm: &mut UrvirtVm, n: u64) -> Result<(u64, Mechanism)> {
    let code: Vec<u8> = RAW_LOOP.iter().flat_map(|w| w.to_le_bytes()).collect();
    vm.ram()[RAW_LOOP_OFFSET..RAW_LOOP_OFFSET + code.len()].copy_from_slice(&code);
    vm.flush_icache();
    let _alt = AltStack::install().map_err(|e| Error::bad_input(format!("sigaltstack: {e}")))?;
    // SAFETY: sigaction is plain data; the handler is our rt_sigreturn-only stub.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = urvirt_bench_sigsys as *const () as libc::sighandler_t;
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: zeroed sigaction to receive the old one.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid signal and sigaction pointers.
    if unsafe { libc::sigaction(libc::SIGSYS, &sa, &mut old) } != 0 {
        return Err(Error::bad_input(format!("sigaction: {}", std::io::Error::last_os_error())));
    }
    let mechanism = vm.trap_ecalls()?;
    let addr = crate::loader::RAM_BASE + RAW_LOOP_OFFSET as u64;
    // SAFETY: `addr` holds the RAW_LOOP code just copied (and the icache flushed); it follows
    // the C calling convention, clobbering only caller-saved registers (t0, a6, a7).
    let raw_loop: extern "C" fn(u64) = unsafe { std::mem::transmute(addr as usize) };
    sud::block();
    let t0 = rdtime();
    raw_loop(n);
    let ticks = rdtime() - t0;
    sud::allow();
    if mechanism == Mechanism::Sud {
        sud::disable();
    }
    // SAFETY: restoring the previous SIGSYS action.
    unsafe { libc::sigaction(libc::SIGSYS, &old, std::ptr::null_mut()) };
    Ok((ticks, mechanism))
}

/// Runs both benchmarks and returns the report. Each figure is the best of `ROUNDS` runs,
/// alternating guest and native, so a busy host (other processes, the emulator's own
/// housekeeping) disturbs the comparison as little as possible.
pub fn run_benchmarks(ecall_trap: EcallTrap) -> Result<String> {
    let freq = crate::fdt::host_timebase_frequency() as u64;
    let per = |ticks: u64, n: u64| ticks_to_duration(ticks, freq).as_secs_f64() * 1e6 / n as f64;
    let mut out = String::new();

    // (a) SBI call vs raw SIGSYS round trip.
    let mut vm = new_vm(ecall_trap)?;
    // One VM at a time (its RAM sits at a fixed address): the traced runs swap a tracer in.
    let trace_config = common::trace::TraceConfig { path: "/dev/null".into(), kinds: Vec::new() };
    let mut tracer = Some(common::trace::Tracer::create(&trace_config)?);
    let mut traced_best = u64::MAX;
    let (mut guest_best, mut raw_best, mut mechanism) = (u64::MAX, u64::MAX, Mechanism::Seccomp);
    for round in 0..ROUNDS {
        let image = bytes_of(&SBI_LOOP_GUEST, SBI_LOOP_COUNT_AT, SBI_CALLS);
        vm.swap_trace(tracer.take());
        let traced = run_guest(&mut vm, "sbi-loop (built in, traced)", image);
        tracer = vm.swap_trace(None);
        traced_best = traced_best.min(traced?.0);
        if round % 2 == 1 {
            let (raw, m) = raw_sigsys_round_trips(&mut vm, SBI_CALLS)?;
            (raw_best, mechanism) = (raw_best.min(raw), m);
        }
        let image = bytes_of(&SBI_LOOP_GUEST, SBI_LOOP_COUNT_AT, SBI_CALLS);
        guest_best = guest_best.min(run_guest(&mut vm, "sbi-loop (built in)", image)?.0);
        if round % 2 == 0 {
            let (raw, m) = raw_sigsys_round_trips(&mut vm, SBI_CALLS)?;
            (raw_best, mechanism) = (raw_best.min(raw), m);
        }
    }
    drop(vm);
    let (sbi_us, raw_us) = (per(guest_best, SBI_CALLS), per(raw_best, SBI_CALLS));
    let traced_us = per(traced_best, SBI_CALLS);
    let name = match mechanism {
        Mechanism::Sud => "syscall user dispatch",
        Mechanism::Seccomp => "seccomp filter",
    };
    let _ = writeln!(out, "URVirt benchmarks (ecall trap: {name}; timebase {freq} Hz)");
    let _ = writeln!(out, "(a) best of {ROUNDS} runs each");
    let _ = writeln!(out, "SBI call through URVirt    {SBI_CALLS:>10} calls  {sbi_us:>9.2} us/call");
    let _ = writeln!(out, "raw SIGSYS round trip      {SBI_CALLS:>10} calls  {raw_us:>9.2} us/call");
    let _ = writeln!(out, "  URVirt / raw             {:>10.2}x (goal <= 1.2x)", sbi_us / raw_us);
    let _ = writeln!(out, "SBI call, --trace on       {SBI_CALLS:>10} calls  {traced_us:>9.2} us/call (to /dev/null)");
    let _ = writeln!(out, "  trace on / off           {:>10.2}x (off = the URVirt row)", traced_us / sbi_us);

    // (b) compute loop: guest vs the same code natively.
    let mut vm = new_vm(ecall_trap)?;
    let addr = crate::loader::RAM_BASE + (KERNEL_OFFSET + COMPUTE_FN_AT) as u64;
    // SAFETY: `addr` is the guest's `compute` function, in RAM after each load: a leaf
    // function with the C calling convention that only touches t0-t2 and a0.
    let compute: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(addr as usize) };
    let (mut guest_best, mut native_best) = (u64::MAX, u64::MAX);
    for round in 0..COMPUTE_ROUNDS {
        let image = bytes_of(&COMPUTE_GUEST, COMPUTE_COUNT_AT, COMPUTE_ITERATIONS);
        // Alternate which goes first, so neither always runs right after a fresh load.
        let native_first = round % 2 == 1;
        if native_first {
            vm.load(&Image { path: "compute (built in)".into(), bytes: image.clone() })?;
        }
        let mut native_result = 0;
        // Like the guest: one warm-up call, then the timed one.
        let mut time_native = |best: &mut u64| {
            compute(COMPUTE_ITERATIONS);
            let t0 = rdtime();
            native_result = compute(COMPUTE_ITERATIONS);
            *best = (*best).min(rdtime() - t0);
        };
        if native_first {
            time_native(&mut native_best);
        }
        let (ticks, guest_result) = run_guest(&mut vm, "compute (built in)", image)?;
        guest_best = guest_best.min(ticks);
        if !native_first {
            time_native(&mut native_best);
        }
        if native_result != guest_result {
            return Err(Error::guest(format!(
                "compute benchmark: guest result {guest_result:#x} differs from native {native_result:#x}"
            )));
        }
    }
    drop(vm);
    let _ = writeln!(out, "(b) best of {COMPUTE_ROUNDS} runs each");
    let ms = |t: u64| ticks_to_duration(t, freq).as_secs_f64() * 1e3;
    let _ = writeln!(out, "compute loop in the guest  {COMPUTE_ITERATIONS:>10} iters  {:>9.3} ms", ms(guest_best));
    let _ = writeln!(out, "same code natively         {COMPUTE_ITERATIONS:>10} iters  {:>9.3} ms", ms(native_best));
    let _ = writeln!(
        out,
        "  guest speed / native     {:>10.3}x (goal >= 0.95x)",
        native_best as f64 / guest_best.max(1) as f64
    );
    paged::report(ecall_trap, raw_us, &mut out)?;
    mmio::report(ecall_trap, sbi_us, raw_us, &mut out)?;
    Ok(out)
}
