//! Decoding the one guest instruction that trapped.
//!
//! URVirt only needs to understand the instructions that can trap in U-mode and that it
//! emulates: the SYSTEM group (CSR access, ecall, ebreak, sret, wfi, sfence.vma) and, for
//! MMIO and fault reporting, loads and stores (32-bit and the common compressed forms).
//! Everything else decodes to [`Insn::Other`]; the caller decides what that means.

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
    Mret,
    Wfi,
    SfenceVma {
        rs1: usize,
        rs2: usize,
    },
    /// A load of `width` bytes into `x[rd]` from `x[rs1] + imm`.
    Load {
        width: u8,
        signed: bool,
        rd: usize,
        rs1: usize,
        imm: i64,
    },
    /// A store of `width` bytes of `x[rs2]` to `x[rs1] + imm`.
    Store {
        width: u8,
        rs2: usize,
        rs1: usize,
        imm: i64,
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
        return Decoded { insn: decode_compressed(raw as u16), len: 2, raw };
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
    // I- and S-type immediates, sign-extended from bit 31.
    let imm_i = (raw as i32 >> 20) as i64;
    let imm_s = (((raw as i32 >> 25) << 5) | bits(raw, 11, 7) as i32) as i64;
    match opcode {
        0x73 => match funct3 {
            0 => match raw {
                0x0000_0073 => Insn::Ecall,
                0x0010_0073 => Insn::Ebreak,
                0x1020_0073 => Insn::Sret,
                0x3020_0073 => Insn::Mret,
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
        0x03 => match funct3 {
            0..=3 => Insn::Load { width: 1 << funct3, signed: true, rd, rs1, imm: imm_i },
            4..=6 => Insn::Load { width: 1 << (funct3 - 4), signed: false, rd, rs1, imm: imm_i },
            _ => Insn::Other,
        },
        0x23 if funct3 <= 3 => Insn::Store { width: 1 << funct3, rs2, rs1, imm: imm_s },
        _ => Insn::Other,
    }
}

/// Quadrant 0 loads and stores (c.lw, c.ld, c.sw, c.sd); they use registers x8..x15.
fn decode_compressed(raw: u16) -> Insn {
    let raw = raw as u32;
    let quadrant = raw & 0b11;
    let funct3 = bits(raw, 15, 13);
    let rs1 = 8 + bits(raw, 9, 7) as usize;
    let rd_rs2 = 8 + bits(raw, 4, 2) as usize;
    // c.lw/c.sw: uimm[5:3] = [12:10], uimm[2] = [6], uimm[6] = [5].
    let word_off = (bits(raw, 12, 10) << 3 | bits(raw, 6, 6) << 2 | bits(raw, 5, 5) << 6) as i64;
    // c.ld/c.sd: uimm[5:3] = [12:10], uimm[7:6] = [6:5].
    let dword_off = (bits(raw, 12, 10) << 3 | bits(raw, 6, 5) << 6) as i64;
    match (quadrant, funct3) {
        (0, 0b010) => Insn::Load { width: 4, signed: true, rd: rd_rs2, rs1, imm: word_off },
        (0, 0b011) => Insn::Load { width: 8, signed: true, rd: rd_rs2, rs1, imm: dword_off },
        (0, 0b110) => Insn::Store { width: 4, rs2: rd_rs2, rs1, imm: word_off },
        (0, 0b111) => Insn::Store { width: 8, rs2: rd_rs2, rs1, imm: dword_off },
        _ => Insn::Other,
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
            Insn::Mret => "mret",
            Insn::Wfi => "wfi",
            Insn::SfenceVma { .. } => "sfence.vma",
            Insn::Load { .. } => "load",
            Insn::Store { .. } => "store",
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
        assert_eq!(decode(0x3020_0073).insn, Insn::Mret);
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
    fn loads_and_stores() {
        // ld a0, -8(sp)  (0xff813503)
        assert_eq!(decode(0xff81_3503).insn, Insn::Load { width: 8, signed: true, rd: 10, rs1: 2, imm: -8 });
        // lbu t0, 16(a0) (0x01054283)
        assert_eq!(decode(0x0105_4283).insn, Insn::Load { width: 1, signed: false, rd: 5, rs1: 10, imm: 16 });
        // sw a1, -4(a0) (0xfeb52e23)
        assert_eq!(decode(0xfeb5_2e23).insn, Insn::Store { width: 4, rs2: 11, rs1: 10, imm: -4 });
        // sb t1, 2047(a0) (0x7e650fa3)
        assert_eq!(decode(0x7e65_0fa3).insn, Insn::Store { width: 1, rs2: 6, rs1: 10, imm: 2047 });
    }

    #[test]
    fn compressed_forms() {
        // c.lw a0, 4(a1) (0x41c8)
        let d = decode(0xdead_41c8);
        assert_eq!(d.len, 2);
        assert_eq!(d.raw, 0x41c8);
        assert_eq!(d.insn, Insn::Load { width: 4, signed: true, rd: 10, rs1: 11, imm: 4 });
        // c.sd a0, 8(a1) (0xe588)
        assert_eq!(decode(0xe588).insn, Insn::Store { width: 8, rs2: 10, rs1: 11, imm: 8 });
        // c.ld a5, 64(a0) (0x613c)
        assert_eq!(decode(0x613c).insn, Insn::Load { width: 8, signed: true, rd: 15, rs1: 10, imm: 64 });
        // The all-zero halfword is the defined illegal instruction.
        assert_eq!(decode(0).insn, Insn::Other);
        assert_eq!(decode(0).len, 2);
        assert_eq!(insn_len(0x0073), 4);
    }
}
