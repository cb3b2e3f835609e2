//! The C extension for the interpreter: each 16-bit instruction expands to the 32-bit
//! instruction the spec defines it as ("RVC instruction set listings"), so [`crate::interp`]
//! executes one encoding. Floating-point forms (c.fld, c.fsd, c.fldsp, c.fsdsp) and reserved
//! encodings expand to None: the interpreter leaves those to the hardware.

fn bits(x: u32, hi: u32, lo: u32) -> u32 {
    (x >> lo) & ((1 << (hi - lo + 1)) - 1)
}

/// Sign-extends the low `width` bits of `x`.
fn sext(x: u32, width: u32) -> i32 {
    ((x << (32 - width)) as i32) >> (32 - width)
}

// 32-bit encoders for the formats the expansions need.
pub fn i_type(imm: i32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}

pub fn s_type(imm: i32, rs2: u32, rs1: u32, f3: u32, op: u32) -> u32 {
    let imm = imm as u32;
    (bits(imm, 11, 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (bits(imm, 4, 0) << 7) | op
}

pub fn b_type(imm: i32, rs2: u32, rs1: u32, f3: u32) -> u32 {
    let imm = imm as u32;
    (bits(imm, 12, 12) << 31)
        | (bits(imm, 10, 5) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (f3 << 12)
        | (bits(imm, 4, 1) << 8)
        | (bits(imm, 11, 11) << 7)
        | 0x63
}

pub fn j_type(imm: i32, rd: u32) -> u32 {
    let imm = imm as u32;
    (bits(imm, 20, 20) << 31)
        | (bits(imm, 10, 1) << 21)
        | (bits(imm, 11, 11) << 20)
        | (bits(imm, 19, 12) << 12)
        | (rd << 7)
        | 0x6f
}

pub fn r_type(f7: u32, rs2: u32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}

const OP_LOAD: u32 = 0x03;
const OP_IMM: u32 = 0x13;
const OP_IMM_32: u32 = 0x1b;
const OP_STORE: u32 = 0x23;
const OP: u32 = 0x33;
const OP_32: u32 = 0x3b;
const OP_LUI: u32 = 0x37;
const OP_JALR: u32 = 0x67;
/// ebreak.
const EBREAK: u32 = 0x0010_0073;

/// The 32-bit instruction the compressed instruction `c` stands for.
pub fn expand(c: u16) -> Option<u32> {
    let c = c as u32;
    let rd = bits(c, 11, 7);
    let rs2 = bits(c, 6, 2);
    // The three-bit register fields name x8..x15.
    let rd_ = bits(c, 4, 2) + 8;
    let rs1_ = bits(c, 9, 7) + 8;
    let imm6 = sext((bits(c, 12, 12) << 5) | bits(c, 6, 2), 6);
    let shamt = (bits(c, 12, 12) << 5) | bits(c, 6, 2);
    let lw_off = ((bits(c, 12, 10) << 3) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 6)) as i32;
    let ld_off = ((bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6)) as i32;
    Some(match (c & 0b11, bits(c, 15, 13)) {
        (0b00, 0b000) => {
            let imm = (bits(c, 12, 11) << 4) | (bits(c, 10, 7) << 6) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 3);
            if imm == 0 {
                return None; // includes the all-zero illegal instruction
            }
            i_type(imm as i32, 2, 0, rd_, OP_IMM)
        }
        (0b00, 0b010) => i_type(lw_off, rs1_, 2, rd_, OP_LOAD),
        (0b00, 0b011) => i_type(ld_off, rs1_, 3, rd_, OP_LOAD),
        (0b00, 0b110) => s_type(lw_off, rd_, rs1_, 2, OP_STORE),
        (0b00, 0b111) => s_type(ld_off, rd_, rs1_, 3, OP_STORE),
        (0b01, 0b000) => i_type(imm6, rd, 0, rd, OP_IMM),
        (0b01, 0b001) if rd != 0 => i_type(imm6, rd, 0, rd, OP_IMM_32),
        (0b01, 0b010) => i_type(imm6, 0, 0, rd, OP_IMM),
        (0b01, 0b011) if rd == 2 => {
            let imm = (bits(c, 12, 12) << 9)
                | (bits(c, 6, 6) << 4)
                | (bits(c, 5, 5) << 6)
                | (bits(c, 4, 3) << 7)
                | (bits(c, 2, 2) << 5);
            if imm == 0 {
                return None;
            }
            i_type(sext(imm, 10), 2, 0, 2, OP_IMM)
        }
        (0b01, 0b011) if imm6 != 0 => ((imm6 as u32) << 12) | (rd << 7) | OP_LUI,
        (0b01, 0b100) => {
            let rd = rs1_;
            match bits(c, 11, 10) {
                0b00 => i_type(shamt as i32, rd, 5, rd, OP_IMM),
                0b01 => i_type((shamt | 0x400) as i32, rd, 5, rd, OP_IMM),
                0b10 => i_type(imm6, rd, 7, rd, OP_IMM),
                _ => {
                    let rs2 = rd_;
                    match (bits(c, 12, 12), bits(c, 6, 5)) {
                        (0, 0b00) => r_type(0x20, rs2, rd, 0, rd, OP),
                        (0, 0b01) => r_type(0, rs2, rd, 4, rd, OP),
                        (0, 0b10) => r_type(0, rs2, rd, 6, rd, OP),
                        (0, 0b11) => r_type(0, rs2, rd, 7, rd, OP),
                        (1, 0b00) => r_type(0x20, rs2, rd, 0, rd, OP_32),
                        (1, 0b01) => r_type(0, rs2, rd, 0, rd, OP_32),
                        _ => return None,
                    }
                }
            }
        }
        (0b01, 0b101) => {
            let imm = (bits(c, 12, 12) << 11)
                | (bits(c, 11, 11) << 4)
                | (bits(c, 10, 9) << 8)
                | (bits(c, 8, 8) << 10)
                | (bits(c, 7, 7) << 6)
                | (bits(c, 6, 6) << 7)
                | (bits(c, 5, 3) << 1)
                | (bits(c, 2, 2) << 5);
            j_type(sext(imm, 12), 0)
        }
        (0b01, f3 @ (0b110 | 0b111)) => {
            let imm = (bits(c, 12, 12) << 8)
                | (bits(c, 11, 10) << 3)
                | (bits(c, 6, 5) << 6)
                | (bits(c, 4, 3) << 1)
                | (bits(c, 2, 2) << 5);
            b_type(sext(imm, 9), 0, rs1_, f3 & 1)
        }
        (0b10, 0b000) => i_type(shamt as i32, rd, 1, rd, OP_IMM),
        (0b10, 0b010) if rd != 0 => {
            let off = (bits(c, 12, 12) << 5) | (bits(c, 6, 4) << 2) | (bits(c, 3, 2) << 6);
            i_type(off as i32, 2, 2, rd, OP_LOAD)
        }
        (0b10, 0b011) if rd != 0 => {
            let off = (bits(c, 12, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6);
            i_type(off as i32, 2, 3, rd, OP_LOAD)
        }
        (0b10, 0b100) => match (bits(c, 12, 12), rd, rs2) {
            (0, 0, _) => return None,
            (0, _, 0) => i_type(0, rd, 0, 0, OP_JALR),
            (0, _, _) => r_type(0, rs2, 0, 0, rd, OP),
            (1, 0, 0) => EBREAK,
            (1, _, 0) => i_type(0, rd, 0, 1, OP_JALR),
            (_, _, _) => r_type(0, rs2, rd, 0, rd, OP),
        },
        (0b10, 0b110) => s_type(((bits(c, 12, 9) << 2) | (bits(c, 8, 7) << 6)) as i32, rs2, 2, 2, OP_STORE),
        (0b10, 0b111) => s_type(((bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6)) as i32, rs2, 2, 3, OP_STORE),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (compressed, its expansion): assembled by GNU as with and without `.option rvc`.
    const PAIRS: [(u16, u32, &str); 35] = [
        (0x0808, 0x01010513, "c.addi4spn a0, sp, 16"),
        (0x1fe4, 0x3fc10493, "c.addi4spn s1, sp, 1020"),
        (0x424c, 0x00462583, "c.lw a1, 4(a2)"),
        (0x5c7c, 0x07c42783, "c.lw a5, 124(s0)"),
        (0x6714, 0x00873683, "c.ld a3, 8(a4)"),
        (0x7fe4, 0x0f87b483, "c.ld s1, 248(a5)"),
        (0xc22c, 0x04b62023, "c.sw a1, 64(a2)"),
        (0xff74, 0x0ed73c23, "c.sd a3, 248(a4)"),
        (0x0001, 0x00000013, "c.nop"),
        (0x1501, 0xfe050513, "c.addi a0, -32"),
        (0x037d, 0x01f30313, "c.addi t1, 31"),
        (0x357d, 0xfff5051b, "c.addiw a0, -1"),
        (0x52e5, 0xff900293, "c.li t0, -7"),
        (0x7101, 0xe0010113, "c.addi16sp sp, -512"),
        (0x617d, 0x1f010113, "c.addi16sp sp, 496"),
        (0x7501, 0xfffe0537, "c.lui a0, 0xfffe0"),
        (0x63fd, 0x0001f3b7, "c.lui t2, 31"),
        (0x917d, 0x03f55513, "c.srli a0, 63"),
        (0x848d, 0x4034d493, "c.srai s1, 3"),
        (0x9a7d, 0xfff67613, "c.andi a2, -1"),
        (0x8d0d, 0x40b50533, "c.sub a0, a1"),
        (0x8c25, 0x00944433, "c.xor s0, s1"),
        (0x8f5d, 0x00f76733, "c.or a4, a5"),
        (0x8ef1, 0x00c6f6b3, "c.and a3, a2"),
        (0x9d0d, 0x40b5053b, "c.subw a0, a1"),
        (0x9fb9, 0x00e787bb, "c.addw a5, a4"),
        (0x1e7e, 0x03fe1e13, "c.slli t3, 63"),
        (0x50fe, 0x0fc12083, "c.lwsp ra, 252(sp)"),
        (0x7dfe, 0x1f813d83, "c.ldsp s11, 504(sp)"),
        (0x8282, 0x00028067, "c.jr t0"),
        (0x857e, 0x01f00533, "c.mv a0, t6"),
        (0x9782, 0x000780e7, "c.jalr a5"),
        (0x9432, 0x00c40433, "c.add s0, a2"),
        (0xdff6, 0x0fd12e23, "c.swsp t4, 252(sp)"),
        (0xff86, 0x1e113c23, "c.sdsp ra, 504(sp)"),
    ];

    #[test]
    fn expansions_match_the_assembler() {
        for (c, full, text) in PAIRS {
            assert_eq!(expand(c), Some(full), "{text}: got {:#010x?}", expand(c));
        }
    }

    #[test]
    fn jumps_and_branches() {
        // c.j +0x3f0 (GNU as: aec5), c.beqz a0, +0xf4 (c975), c.bnez s1, -4 (fcf5),
        // c.beqz a5, -0xf6 (d789), c.j -0x3f0 (b901).
        assert_eq!(expand(0xaec5), Some(j_type(0x3f0, 0)));
        assert_eq!(expand(0xc975), Some(b_type(0xf4, 0, 10, 0)));
        assert_eq!(expand(0xfcf5), Some(b_type(-4, 0, 9, 1)));
        assert_eq!(expand(0xd789), Some(b_type(-0xf6, 0, 15, 0)));
        assert_eq!(expand(0xb901), Some(j_type(-0x3f0, 0)));
        // Cross-check the encoders with GNU as: jal zero, +0x3f8 = 3f80006f; beq a0, zero, +0xf8
        // = 0e050c63; bne s1, zero, -8 = fe049ce3.
        assert_eq!(j_type(0x3f8, 0), 0x3f80006f);
        assert_eq!(b_type(0xf8, 0, 10, 0), 0x0e050c63);
        assert_eq!(b_type(-8, 0, 9, 1), 0xfe049ce3);
    }

    #[test]
    fn floating_point_and_reserved_forms_are_left_alone() {
        assert_eq!(expand(0x0000), None, "the all-zero illegal instruction");
        assert_eq!(expand(0x2008), None, "c.fld");
        assert_eq!(expand(0x8002), None, "c.jr x0 is reserved");
        assert_eq!(expand(0x9002), Some(EBREAK), "c.ebreak");
    }
}
