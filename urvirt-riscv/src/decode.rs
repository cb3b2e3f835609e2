//! Decoding the one guest instruction that trapped.
//!
//! URVirt only needs to understand the instructions that can trap in U-mode and that it
//! emulates: the SYSTEM group (CSR access, ecall, ebreak, sret, wfi, sfence.vma). Everything
//! else decodes to [`Insn::Other`]; the caller decides what that means.
//!
//! For fault reporting only, [`access_of`] tells whether a faulting instruction reads or
//! writes memory (there is no MMIO emulation yet, so nothing needs its operands).

/// The six CSR instructions. The `I` forms take a 5-bit zero-extended immediate instead of rs1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrOp {
    Rw,
    Rs,
    Rc,
}

/// Where a CSR instruction's operand comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrSrc {
    /// The value of register `x[n]`.
    Reg(usize),
    /// A 5-bit immediate (csrrwi/csrrsi/csrrci).
    Imm(u64),
}

impl CsrSrc {
    /// csrrs/csrrc with rs1 = x0 or uimm = 0 do not write the CSR at all (so they may read
    /// read-only CSRs).
    pub fn is_zero_operand(self) -> bool {
        matches!(self, CsrSrc::Reg(0) | CsrSrc::Imm(0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insn {
    Csr {
        op: CsrOp,
        rd: usize,
        src: CsrSrc,
        csr: u16,
    },
    Ecall,
    Ebreak,
    Sret,
    Wfi,
    SfenceVma {
        rs1: usize,
        rs2: usize,
    },
    /// Anything URVirt does not emulate.
    Other,
}

/// A decoded instruction with its length in bytes (2 or 4) and raw bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub insn: Insn,
    pub len: u64,
    pub raw: u32,
}

/// The length of the instruction whose low 16 bits are `low`: 4 if its two lowest bits are
/// 0b11, else 2 (the C extension). Longer encodings are not used by RV64GC.
pub fn insn_len(low: u16) -> u64 {
    if low & 0b11 == 0b11 {
        4
    } else {
        2
    }
}

/// Decodes the instruction in `raw`: all 32 bits for a 4-byte instruction, the low 16 bits
/// for a compressed one (the high half is ignored then).
pub fn decode(raw: u32) -> Decoded {
    if insn_len(raw as u16) == 2 {
        let raw = raw & 0xffff;
        // No compressed instruction is privileged (c.ebreak raises SIGTRAP, not SIGILL).
        return Decoded { insn: Insn::Other, len: 2, raw };
    }
    Decoded { insn: decode32(raw), len: 4, raw }
}

fn bits(raw: u32, hi: u32, lo: u32) -> u32 {
    (raw >> lo) & ((1 << (hi - lo + 1)) - 1)
}

fn decode32(raw: u32) -> Insn {
    let opcode = raw & 0x7f;
    let rd = bits(raw, 11, 7) as usize;
    let funct3 = bits(raw, 14, 12);
    let rs1 = bits(raw, 19, 15) as usize;
    let rs2 = bits(raw, 24, 20) as usize;
    match opcode {
        0x73 => match funct3 {
            0 => match raw {
                0x0000_0073 => Insn::Ecall,
                0x0010_0073 => Insn::Ebreak,
                0x1020_0073 => Insn::Sret,
                0x1050_0073 => Insn::Wfi,
                _ if bits(raw, 31, 25) == 0b000_1001 && rd == 0 => Insn::SfenceVma { rs1, rs2 },
                _ => Insn::Other,
            },
            4 => Insn::Other,
            _ => {
                let op = match funct3 & 0b11 {
                    1 => CsrOp::Rw,
                    2 => CsrOp::Rs,
                    _ => CsrOp::Rc,
                };
                let src = if funct3 & 0b100 != 0 { CsrSrc::Imm(rs1 as u64) } else { CsrSrc::Reg(rs1) };
                Insn::Csr { op, rd, src, csr: bits(raw, 31, 20) as u16 }
            }
        },
        _ => Insn::Other,
    }
}

/// How a faulting instruction touches memory, for choosing the access-fault cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemAccess {
    Load,
    /// Stores, AMOs and SC: the spec reports all of them as store/AMO faults.
    Store,
}

/// Whether the instruction `raw` (as for [`decode`]) writes memory: integer, FP and vector
/// stores, AMOs and SC (LR is a load), the cache-block operations (reported as stores by
/// the CMO spec) and the compressed stores. Everything else that faults on data is a load.
pub fn access_of(raw: u32) -> MemAccess {
    let store = if insn_len(raw as u16) == 2 {
        let quadrant = raw & 0b11;
        let funct3 = bits(raw, 15, 13);
        // c.fsd/c.sw/c.sd (c.fsw on RV32) in quadrant 0, c.fsdsp/c.swsp/c.sdsp in quadrant 2.
        matches!((quadrant, funct3), (0 | 2, 0b101..=0b111))
    } else {
        match raw & 0x7f {
            0x23 | 0x27 => true,
            // AMO: funct5 0b00010 is LR, the only one that does not write.
            0x2f => bits(raw, 31, 27) != 0b00010,
            // MISC-MEM funct3 = 2: cbo.clean/flush/inval/zero.
            0x0f => bits(raw, 14, 12) == 0b010,
            _ => false,
        }
    };
    if store {
        MemAccess::Store
    } else {
        MemAccess::Load
    }
}

impl Insn {
    /// A short name for statistics and diagnostics.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Insn::Csr { op, src, .. } => match (op, matches!(src, CsrSrc::Imm(_))) {
                (CsrOp::Rw, false) => "csrrw",
                (CsrOp::Rs, false) => "csrrs",
                (CsrOp::Rc, false) => "csrrc",
                (CsrOp::Rw, true) => "csrrwi",
                (CsrOp::Rs, true) => "csrrsi",
                (CsrOp::Rc, true) => "csrrci",
            },
            Insn::Ecall => "ecall",
            Insn::Ebreak => "ebreak",
            Insn::Sret => "sret",
            Insn::Wfi => "wfi",
            Insn::SfenceVma { .. } => "sfence.vma",
            Insn::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_register_and_immediate_forms() {
        // csrrw x0, sscratch, t0  (0x14029073)
        assert_eq!(decode(0x1402_9073).insn, Insn::Csr { op: CsrOp::Rw, rd: 0, src: CsrSrc::Reg(5), csr: 0x140 });
        // csrr a0, sstatus = csrrs a0, sstatus, x0  (0x10002573)
        assert_eq!(decode(0x1000_2573).insn, Insn::Csr { op: CsrOp::Rs, rd: 10, src: CsrSrc::Reg(0), csr: 0x100 });
        // csrsi sstatus, 2 = csrrsi x0, sstatus, 2  (0x10016073)
        let d = decode(0x1001_6073);
        assert_eq!(d.insn, Insn::Csr { op: CsrOp::Rs, rd: 0, src: CsrSrc::Imm(2), csr: 0x100 });
        assert_eq!(d.insn.mnemonic(), "csrrsi");
        assert_eq!(d.len, 4);
        // csrrc a1, sie, a2 (0x104635f3) and csrrci a1, sip, 31 (0x144ff5f3)
        assert_eq!(decode(0x1046_35f3).insn, Insn::Csr { op: CsrOp::Rc, rd: 11, src: CsrSrc::Reg(12), csr: 0x104 });
        assert_eq!(decode(0x144f_f5f3).insn, Insn::Csr { op: CsrOp::Rc, rd: 11, src: CsrSrc::Imm(31), csr: 0x144 });
        // csrrwi a0, stvec, 1 (0x1050d573)
        assert_eq!(decode(0x1050_d573).insn.mnemonic(), "csrrwi");
        // rdtime a0 = csrrs a0, time, x0 (0xc0102573)
        assert_eq!(decode(0xc010_2573).insn, Insn::Csr { op: CsrOp::Rs, rd: 10, src: CsrSrc::Reg(0), csr: 0xc01 });
    }

    #[test]
    fn system_instructions() {
        assert_eq!(decode(0x0000_0073).insn, Insn::Ecall);
        assert_eq!(decode(0x0010_0073).insn, Insn::Ebreak);
        assert_eq!(decode(0x1020_0073).insn, Insn::Sret);
        assert_eq!(decode(0x3020_0073).insn, Insn::Other, "mret is not ours to emulate");
        assert_eq!(decode(0x1050_0073).insn, Insn::Wfi);
        assert_eq!(decode(0x1200_0073).insn, Insn::SfenceVma { rs1: 0, rs2: 0 });
        // sfence.vma a0, a1 (0x12b50073)
        assert_eq!(decode(0x12b5_0073).insn, Insn::SfenceVma { rs1: 10, rs2: 11 });
        assert_eq!(decode(0x1050_0073).insn.mnemonic(), "wfi");
        // An unknown SYSTEM encoding (funct3 = 4) and a plain add are not ours.
        assert_eq!(decode(0x0000_4073).insn, Insn::Other);
        assert_eq!(decode(0x00b5_0533).insn, Insn::Other);
    }

    #[test]
    fn loads_and_stores_32bit() {
        use MemAccess::{Load, Store};
        assert_eq!(access_of(0xff81_3503), Load, "ld a0, -8(sp)");
        assert_eq!(access_of(0x0105_4283), Load, "lbu t0, 16(a0)");
        assert_eq!(access_of(0x0005_3007), Load, "fld f0, 0(a0)");
        assert_eq!(access_of(0xfeb5_2e23), Store, "sw a1, -4(a0)");
        assert_eq!(access_of(0x7e65_0fa3), Store, "sb t1, 2047(a0)");
        assert_eq!(access_of(0x00a5_3027), Store, "fsd f10, 0(a0)");
        assert_eq!(access_of(0x00a5_2027), Store, "fsw f10, 0(a0)");
        assert_eq!(access_of(0x00b5_302f), Store, "amoadd.d zero, a1, (a0)");
        assert_eq!(access_of(0x08b5_302f), Store, "amoswap.d zero, a1, (a0)");
        assert_eq!(access_of(0x1005_352f), Load, "lr.d a0, (a0)");
        assert_eq!(access_of(0x18b5_352f), Store, "sc.d a0, a1, (a0)");
        assert_eq!(access_of(0x0045_200f), Store, "cbo.zero (a0)");
        assert_eq!(access_of(0x0000_000f), Load, "fence is not a store");
    }

    #[test]
    fn compressed_forms() {
        use MemAccess::{Load, Store};
        // c.lw a0, 4(a1) (0x41c8): the high half of the word is ignored.
        let d = decode(0xdead_41c8);
        assert_eq!((d.len, d.raw, d.insn), (2, 0x41c8, Insn::Other));
        assert_eq!(access_of(0xdead_41c8), Load);
        assert_eq!(access_of(0x613c), Load, "c.ld a5, 64(a0)");
        assert_eq!(access_of(0x2108), Load, "c.fld f10, 0(a0)");
        assert_eq!(access_of(0x6502), Load, "c.ldsp a0, 0(sp)");
        assert_eq!(access_of(0xe588), Store, "c.sd a0, 8(a1)");
        assert_eq!(access_of(0xc188), Store, "c.sw a0, 0(a1)");
        assert_eq!(access_of(0xa188), Store, "c.fsd f10, 0(a1)");
        assert_eq!(access_of(0xe02a), Store, "c.sdsp a0, 0(sp)");
        assert_eq!(access_of(0xc02a), Store, "c.swsp a0, 0(sp)");
        assert_eq!(access_of(0xa02a), Store, "c.fsdsp f10, 0(sp)");
        // The all-zero halfword is the defined illegal instruction.
        assert_eq!(decode(0).insn, Insn::Other);
        assert_eq!(decode(0).len, 2);
        assert_eq!(insn_len(0x0073), 4);
    }
}
