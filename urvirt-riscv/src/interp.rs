//! A small RV64IMAC interpreter for the engine's handlers, over a translating [`Bus`].
//!
//! Why it exists: with Sv39 on, some guest code cannot run natively. Upper-half addresses
//! (the trampoline at 0xFFFF_FFFF_FFFF_F000, trap contexts, kernel stacks) are kernel
//! addresses on the host, which no Linux process can map; and every privileged instruction
//! costs a signal. So a handler interprets: instructions at or touching addresses the engine
//! cannot map, and after a trap the straight-line code that follows, until the next
//! instruction that may run natively ([`next_needs_interpreter`] is the pure half of that
//! policy). This is the design choice for upper-half addresses: emulate, not alias, so no
//! register, `sepc`, `stval` or CSR value the guest can observe is ever rewritten.
//!
//! SYSTEM instructions go to the same handlers the SIGILL/SIGSYS/SIGTRAP paths use
//! ([`crate::hart`]), so privilege rules live in one place. Floating point is not
//! interpreted: [`Step::Native`] tells the engine to let the hardware run the instruction.
use crate::decode::insn_len;
use crate::hart::{self, Access, Handled, Hart};
use crate::mmu::Fault;
use crate::platform::Platform;
use crate::vmem::Virt;
use crate::{mmu, rvc, trap};

/// Guest-virtual memory as the interpreter sees it: translated, then RAM or a device.
pub trait Bus {
    /// `size` (1, 2, 4 or 8) bytes at `va`, zero-extended; `access` is Fetch, Load, or
    /// Store for the read half of an AMO (which faults as a store).
    fn read(&mut self, va: u64, size: u64, access: Access) -> Result<u64, Fault>;
    fn write(&mut self, va: u64, size: u64, value: u64) -> Result<(), Fault>;
}

/// What one interpreted instruction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Executed; `hart.pc` is the next instruction.
    Done,
    /// A trap, a SYSTEM instruction or an exception was handled (the exception, if any,
    /// already delivered to stvec); the engine acts on the action as after a signal.
    Handled(Handled),
    /// Not interpreted (floating point, or an encoding we do not know): the hardware must run
    /// it, or, where it cannot, the engine raises illegal instruction.
    Native,
}

/// What survives between interpreted instructions: the LR/SC reservation, and whether a
/// `fence.i` was interpreted (the engine must then flush the host's instruction cache).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Interp {
    pub reservation: Option<u64>,
    pub fence_i: bool,
    /// gdb is attached: an `ebreak` is left to the engine ([`DEBUGGER_EBREAK`]), which alone
    /// knows whether it is one of gdb's breakpoints (stop for gdb) or the guest's own.
    pub debugger: bool,
}

/// The kind of an `ebreak` the interpreter did not execute because gdb is attached: `pc`
/// still points at it and no exception was delivered.
pub const DEBUGGER_EBREAK: &str = "interp ebreak under gdb";

fn bits(raw: u32, hi: u32, lo: u32) -> u32 {
    (raw >> lo) & ((1 << (hi - lo + 1)) - 1)
}

pub(crate) fn imm_i(raw: u32) -> u64 {
    ((raw as i32) >> 20) as i64 as u64
}

fn imm_s(raw: u32) -> u64 {
    ((((raw as i32) >> 25) << 5) | bits(raw, 11, 7) as i32) as i64 as u64
}

pub(crate) fn imm_b(raw: u32) -> u64 {
    let v = (bits(raw, 31, 31) << 12) | (bits(raw, 7, 7) << 11) | (bits(raw, 30, 25) << 5) | (bits(raw, 11, 8) << 1);
    (((v << 19) as i32) >> 19) as i64 as u64
}

pub(crate) fn imm_j(raw: u32) -> u64 {
    let v =
        (bits(raw, 31, 31) << 20) | (bits(raw, 19, 12) << 12) | (bits(raw, 20, 20) << 11) | (bits(raw, 30, 21) << 1);
    (((v << 11) as i32) >> 11) as i64 as u64
}

fn sext(v: u64, bytes: u64) -> u64 {
    let shift = 64 - 8 * bytes;
    (((v << shift) as i64) >> shift) as u64
}

fn sext32(v: u64) -> u64 {
    v as i32 as i64 as u64
}

fn set(h: &mut Hart, rd: u32, v: u64) {
    if rd != 0 {
        h.x[rd as usize] = v;
    }
}

/// An exception raised by an interpreted instruction at `hart.pc`.
fn exception(h: &mut Hart, f: Fault) -> Step {
    let kind = if mmu::page_fault_name(f.cause).is_some() { "interp page fault" } else { "interp access fault" };
    Step::Handled(mmu::raise(h, f, kind))
}

/// Fetches the instruction at `hart.pc`: (raw, length), or the fetch fault. A 4-byte
/// instruction is read as two halves, so one that crosses into an unmapped page faults with
/// stval = the second half's address, as the spec asks.
pub fn fetch(h: &Hart, bus: &mut impl Bus) -> Result<(u32, u64), Fault> {
    let low = bus.read(h.pc, 2, Access::Fetch)? as u32;
    if insn_len(low as u16) == 2 {
        return Ok((low, 2));
    }
    let high = bus.read(h.pc.wrapping_add(2), 2, Access::Fetch)? as u32;
    Ok((low | (high << 16), 4))
}

/// The 32-bit form of `raw`, expanding a compressed instruction; None if not expandable.
pub(crate) fn full(raw: u32, len: u64) -> Option<u32> {
    if len == 2 {
        rvc::expand(raw as u16)
    } else {
        Some(raw)
    }
}

/// Whether the instruction `raw` must go through the handlers in any case (SYSTEM: CSR
/// access, ecall, ebreak, sret, wfi, sfence.vma), and the data address it would touch (loads,
/// stores, AMOs) with the registers as they are now.
pub fn next_needs_interpreter(h: &Hart, raw: u32, len: u64) -> (bool, Option<u64>) {
    let Some(w) = full(raw, len) else { return (false, None) };
    let base = h.x[bits(w, 19, 15) as usize];
    match w & 0x7f {
        0x73 => (true, None),
        0x03 | 0x07 => (false, Some(base.wrapping_add(imm_i(w)))),
        0x23 | 0x27 => (false, Some(base.wrapping_add(imm_s(w)))),
        0x2f => (false, Some(base)),
        _ => (false, None),
    }
}

/// Interprets the one instruction at `hart.pc`, with guest memory from `platform`.
pub fn step(h: &mut Hart, platform: &mut dyn Platform, st: &mut Interp) -> Step {
    let regime = mmu::Regime::of(h);
    let fetched = fetch(h, &mut Virt::of(platform, regime));
    let (raw, len) = match fetched {
        Ok(x) => x,
        Err(f) => return exception(h, f),
    };
    let Some(w) = full(raw, len) else { return Step::Native };
    if w & 0x7f == 0x73 {
        return Step::Handled(system(h, w, raw, len, platform, st));
    }
    match exec(h, w, len, &mut Virt::of(platform, regime), st) {
        Ok(step) => step,
        Err(f) => exception(h, f),
    }
}

/// Why [`run_until_native`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The next instruction may run natively (or is not ours to interpret).
    Native,
    /// A SYSTEM instruction or an exception was handled: `raw` is the instruction that was at
    /// the old pc (0 for an exception), so the engine can update its TLB (satp, sfence.vma)
    /// before calling again.
    Handled(Handled, u32),
    /// `budget` instructions ran: let the hardware and the timer have a turn.
    Budget,
}

/// Interprets from `hart.pc` while the instruction there may not run natively: its pc or data
/// address is not one `native` accepts, or it is a SYSTEM instruction. Stops after each
/// handled trap so the caller can bring its TLB up to date. Returns the reason and the
/// number of instructions interpreted.
pub fn run_until_native(
    h: &mut Hart,
    platform: &mut dyn Platform,
    st: &mut Interp,
    budget: usize,
    native: impl Fn(u64) -> bool,
) -> (Stop, usize) {
    for n in 0..budget {
        let fetched = fetch(h, &mut Virt::of(platform, mmu::Regime::of(h)));
        let raw = match fetched {
            Ok((raw, len)) => {
                let (system, data) = next_needs_interpreter(h, raw, len);
                if !system && native(h.pc) && data.is_none_or(&native) {
                    return (Stop::Native, n);
                }
                raw
            }
            Err(_) if native(h.pc) => return (Stop::Native, n),
            Err(_) => 0,
        };
        match step(h, platform, st) {
            Step::Done => {}
            Step::Handled(handled) => return (Stop::Handled(handled, raw), n + 1),
            Step::Native => return (Stop::Native, n),
        }
    }
    (Stop::Budget, budget)
}

/// Everything but SYSTEM, whose instructions go to [`system`].
fn exec(h: &mut Hart, w: u32, len: u64, bus: &mut impl Bus, st: &mut Interp) -> Result<Step, Fault> {
    let (rd, f3, rs1, rs2, f7) = (bits(w, 11, 7), bits(w, 14, 12), bits(w, 19, 15), bits(w, 24, 20), bits(w, 31, 25));
    let (a, b) = (h.x[rs1 as usize], h.x[rs2 as usize]);
    let pc = h.pc;
    let mut next = pc.wrapping_add(len);
    match w & 0x7f {
        0x37 => set(h, rd, sext32((w & 0xffff_f000) as u64)),
        0x17 => set(h, rd, pc.wrapping_add(sext32((w & 0xffff_f000) as u64))),
        0x6f => {
            set(h, rd, next);
            next = pc.wrapping_add(imm_j(w));
        }
        0x67 if f3 == 0 => {
            let target = a.wrapping_add(imm_i(w)) & !1;
            set(h, rd, next);
            next = target;
        }
        0x63 => {
            let taken = match f3 {
                0 => a == b,
                1 => a != b,
                4 => (a as i64) < (b as i64),
                5 => (a as i64) >= (b as i64),
                6 => a < b,
                7 => a >= b,
                _ => return Ok(Step::Native),
            };
            if taken {
                next = pc.wrapping_add(imm_b(w));
            }
        }
        0x03 => {
            let size = 1 << (f3 & 3);
            if f3 == 7 {
                return Ok(Step::Native);
            }
            let v = bus.read(a.wrapping_add(imm_i(w)), size, Access::Load)?;
            set(h, rd, if f3 & 4 != 0 { v } else { sext(v, size) });
        }
        0x23 if f3 <= 3 => bus.write(a.wrapping_add(imm_s(w)), 1 << f3, b)?,
        0x13 => {
            let imm = imm_i(w);
            let shamt = (imm & 63) as u32;
            let v = match f3 {
                0 => a.wrapping_add(imm),
                1 if imm >> 6 == 0 => a << shamt,
                2 => ((a as i64) < (imm as i64)) as u64,
                3 => (a < imm) as u64,
                4 => a ^ imm,
                5 if (imm >> 6) & 0x3f == 0 => a >> shamt,
                5 if (imm >> 6) & 0x3f == 0x10 => ((a as i64) >> shamt) as u64,
                6 => a | imm,
                7 => a & imm,
                _ => return Ok(Step::Native),
            };
            set(h, rd, v);
        }
        0x1b => {
            let shamt = rs2;
            let v = match (f3, f7) {
                (0, _) => a.wrapping_add(imm_i(w)),
                (1, 0) => (a as u32).wrapping_shl(shamt) as u64,
                (5, 0) => ((a as u32) >> shamt) as u64,
                (5, 0x20) => ((a as i32) >> shamt) as u64,
                _ => return Ok(Step::Native),
            };
            set(h, rd, sext32(v));
        }
        0x33 => match op(f3, f7, a, b) {
            Some(v) => set(h, rd, v),
            None => return Ok(Step::Native),
        },
        0x3b => match op32(f3, f7, a, b) {
            Some(v) => set(h, rd, sext32(v)),
            None => return Ok(Step::Native),
        },
        0x0f => {
            // fence: one hart, accesses in order already. fence.i: the engine flushes.
            if f3 == 1 {
                st.fence_i = true;
            }
        }
        0x2f if (f3 == 2 || f3 == 3) && amo_known(bits(w, 31, 27)) => amo(h, w, rd, a, b, 1 << f3, bus, st)?,
        _ => return Ok(Step::Native),
    }
    h.pc = next;
    Ok(Step::Done)
}

/// ecall/ebreak/CSR/sret/wfi/sfence.vma: the same handlers the signal paths call.
fn system(h: &mut Hart, w: u32, raw: u32, len: u64, platform: &mut dyn Platform, st: &mut Interp) -> Handled {
    // Any trap or privilege change drops an LR reservation.
    st.reservation = None;
    match w {
        0x0000_0073 => {
            h.pc += 4;
            hart::on_ecall(h, platform)
        }
        0x0010_0073 if st.debugger => Handled { kind: DEBUGGER_EBREAK, action: hart::Action::Resume },
        0x0010_0073 => hart::on_breakpoint(h),
        _ => hart::on_illegal(h, if len == 2 { raw & 0xffff } else { raw }, platform),
    }
}

fn op(f3: u32, f7: u32, a: u64, b: u64) -> Option<u64> {
    let sh = (b & 63) as u32;
    Some(match (f7, f3) {
        (0, 0) => a.wrapping_add(b),
        (0x20, 0) => a.wrapping_sub(b),
        (0, 1) => a << sh,
        (0, 2) => ((a as i64) < (b as i64)) as u64,
        (0, 3) => (a < b) as u64,
        (0, 4) => a ^ b,
        (0, 5) => a >> sh,
        (0x20, 5) => ((a as i64) >> sh) as u64,
        (0, 6) => a | b,
        (0, 7) => a & b,
        (1, 0) => a.wrapping_mul(b),
        (1, 1) => ((a as i64 as i128 * b as i64 as i128) >> 64) as u64,
        (1, 2) => ((a as i64 as i128 * b as i128) >> 64) as u64,
        (1, 3) => ((a as u128 * b as u128) >> 64) as u64,
        (1, 4) => match (a as i64, b as i64) {
            (_, 0) => u64::MAX,
            (x, y) => x.wrapping_div(y) as u64,
        },
        (1, 5) => a.checked_div(b).unwrap_or(u64::MAX),
        (1, 6) => match (a as i64, b as i64) {
            (x, 0) => x as u64,
            (x, y) => x.wrapping_rem(y) as u64,
        },
        (1, 7) => a.checked_rem(b).unwrap_or(a),
        _ => return None,
    })
}

/// The OP-32 group; the caller sign-extends the low 32 bits of the result.
fn op32(f3: u32, f7: u32, a: u64, b: u64) -> Option<u64> {
    let (x, y) = (a as u32, b as u32);
    let sh = y & 31;
    Some(match (f7, f3) {
        (0, 0) => x.wrapping_add(y) as u64,
        (0x20, 0) => x.wrapping_sub(y) as u64,
        (0, 1) => (x << sh) as u64,
        (0, 5) => (x >> sh) as u64,
        (0x20, 5) => ((x as i32) >> sh) as u64,
        (1, 0) => x.wrapping_mul(y) as u64,
        (1, 4) => match (x as i32, y as i32) {
            (_, 0) => u64::MAX,
            (p, q) => p.wrapping_div(q) as u64,
        },
        (1, 5) => x.checked_div(y).unwrap_or(u32::MAX) as u64,
        (1, 6) => match (x as i32, y as i32) {
            (p, 0) => p as u64,
            (p, q) => p.wrapping_rem(q) as u64,
        },
        (1, 7) => x.checked_rem(y).unwrap_or(x) as u64,
        _ => return None,
    })
}

/// LR, SC, AMOSWAP/ADD/XOR/AND/OR/MIN/MAX/MINU/MAXU.
fn amo_known(funct5: u32) -> bool {
    matches!(
        funct5,
        0b00010 | 0b00011 | 0b00001 | 0b00000 | 0b00100 | 0b01100 | 0b01000 | 0b10000 | 0b10100 | 0b11000 | 0b11100
    )
}

/// LR, SC and the AMOs on `size` bytes at `addr`. Misaligned ones raise the misaligned
/// exception (the spec allows that or an access fault).
#[allow(clippy::too_many_arguments)]
fn amo(
    h: &mut Hart,
    w: u32,
    rd: u32,
    addr: u64,
    b: u64,
    size: u64,
    bus: &mut impl Bus,
    st: &mut Interp,
) -> Result<(), Fault> {
    let funct5 = bits(w, 31, 27);
    let is_lr = funct5 == 0b00010;
    if !addr.is_multiple_of(size) {
        let cause = if is_lr { trap::LOAD_MISALIGNED } else { trap::STORE_MISALIGNED };
        return Err(Fault { cause, tval: addr });
    }
    let fix = |v: u64| if size == 4 { sext32(v) } else { v };
    if is_lr {
        let v = bus.read(addr, size, Access::Load)?;
        st.reservation = Some(addr);
        set(h, rd, fix(v));
        return Ok(());
    }
    if funct5 == 0b00011 {
        let ok = st.reservation.take() == Some(addr);
        if ok {
            bus.write(addr, size, b)?;
        }
        set(h, rd, (!ok) as u64);
        return Ok(());
    }
    let old = fix(bus.read(addr, size, Access::Store)?);
    let (o, v) = (old, fix(b));
    let new = match funct5 {
        0b00001 => v,
        0b00000 => o.wrapping_add(v),
        0b00100 => o ^ v,
        0b01100 => o & v,
        0b01000 => o | v,
        0b10000 => (o as i64).min(v as i64) as u64,
        0b10100 => (o as i64).max(v as i64) as u64,
        0b11000 => o.min(v),
        _ => o.max(v), // 0b11100, amomaxu
    };
    bus.write(addr, size, new)?;
    set(h, rd, old);
    Ok(())
}

#[cfg(test)]
#[path = "interp_tests.rs"]
mod tests;
