//! (d) MMIO: a guest doing N 32-bit loads of a PLIC register (context 1's threshold), each a
//! SIGSEGV, the interpreter's decode and a bus access ([`crate::mmio`]), timed by the guest,
//! against (a)'s SBI call and raw SIGSYS round trip from the same run.
use super::{bytes_of, new_vm, run_guest};
use crate::config::EcallTrap;
use crate::engine::timer::ticks_to_duration;
use common::Result;
use std::fmt::Write as _;

const LOADS: u64 = 1_000;
const ROUNDS: usize = 15;

/// ld s1, count; li t1, 0x0c201000; rdtime s2; 1: lw t0, 0(t1); addi s1, s1, -1; bnez s1, 1b;
/// rdtime s3; sub s3, s3, s2; li t0, 0x80100000; sd s3, 0(t0); SRST shutdown (0, 0); j .;
/// count: .dword at byte 128 (patched in).
const MMIO_LOOP_GUEST: [u32; 34] = [
    0x00000497, 0x0804b483, 0x0c201337, 0xc0102973, 0x00032283, 0xfff48493, 0xfe049ce3, 0xc01029f3, 0x412989b3,
    0x000012b7, 0x8012829b, 0x01429293, 0x0132b023, 0x535258b7, 0x3548889b, 0x00000813, 0x00000513, 0x00000593,
    0x00000073, 0x0000006f, 0x00000013, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
const MMIO_LOOP_COUNT_AT: usize = 128;

/// Appends (d) to the report; `sbi_us` and `raw_us` are (a)'s figures.
pub fn report(ecall_trap: EcallTrap, sbi_us: f64, raw_us: f64, out: &mut String) -> Result<()> {
    let freq = crate::fdt::host_timebase_frequency() as u64;
    let mut vm = new_vm(ecall_trap)?;
    let mut best = u64::MAX;
    for _ in 0..ROUNDS {
        let image = bytes_of(&MMIO_LOOP_GUEST, MMIO_LOOP_COUNT_AT, LOADS);
        best = best.min(run_guest(&mut vm, "mmio-loop (built in)", image)?.0);
    }
    let us = ticks_to_duration(best, freq).as_secs_f64() * 1e6 / LOADS as f64;
    let _ = writeln!(out, "(d) MMIO, best of {ROUNDS} runs");
    let _ = writeln!(out, "PLIC register load (lw)    {LOADS:>10} loads  {us:>9.2} us/load");
    let _ = writeln!(out, "  MMIO load / SBI call     {:>10.2}x", us / sbi_us);
    let _ = writeln!(out, "  MMIO load / raw SIGSYS   {:>10.2}x", us / raw_us);
    Ok(())
}
