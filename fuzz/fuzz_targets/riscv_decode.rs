//! The RISC-V instruction decoder (urvirt-riscv/src/decode.rs), and the SIGILL handler that
//! acts on what it decodes, on a hart whose registers and CSRs come from the fuzzer.
//!
//! Invariants: no panic; the length is 2 or 4 and follows the low two bits; a compressed
//! instruction keeps only its 16 bits; register numbers are below 32, CSR numbers below 4096
//! and immediates below 32; every decoded SYSTEM instruction encodes back to the same bits;
//! the handler keeps x0 zero and explains a failure in one line.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use urvirt_riscv::decode::{access_of, decode, insn_len, CsrOp, CsrSrc, Insn};
use urvirt_riscv::hart::{insn_bytes, on_illegal, Action, Hart, Mode};
use urvirt_riscv::platform::fake::FakePlatform;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The instruction. Corpus files start with its 4 bytes, little-endian.
    raw: u32,
    x: [u64; 32],
    user: bool,
    pc_offset: u32,
    sstatus: u64,
    sie: u64,
    sip: u64,
    stvec: u64,
    scounteren: u64,
    satp: u64,
}

/// The 32-bit encoding of a decoded instruction, from its fields alone.
fn encode(insn: Insn) -> Option<u32> {
    Some(match insn {
        Insn::Csr { op, rd, src, csr } => {
            let (funct3, rs1) = match src {
                CsrSrc::Reg(r) => (0, r as u32),
                CsrSrc::Imm(i) => (0b100, i as u32),
            };
            let funct3 = funct3
                | match op {
                    CsrOp::Rw => 1,
                    CsrOp::Rs => 2,
                    CsrOp::Rc => 3,
                };
            (u32::from(csr) << 20) | (rs1 << 15) | (funct3 << 12) | ((rd as u32) << 7) | 0x73
        }
        Insn::Ecall => 0x0000_0073,
        Insn::Ebreak => 0x0010_0073,
        Insn::Sret => 0x1020_0073,
        Insn::Wfi => 0x1050_0073,
        // sfence.vma ignores nothing but funct7, rd = 0 and funct3 = 0.
        Insn::SfenceVma { rs1, rs2 } => (0b000_1001 << 25) | ((rs2 as u32) << 20) | ((rs1 as u32) << 15) | 0x73,
        Insn::Other => return None,
    })
}

fuzz_target!(|input: Input| {
    let raw = input.raw;
    let d = decode(raw);
    assert_eq!(d.len, insn_len(raw as u16));
    assert!(d.len == 2 || d.len == 4);
    if d.len == 2 {
        assert_eq!(d.raw, raw & 0xffff);
        assert_eq!(d.insn, Insn::Other, "no compressed instruction is privileged");
    } else {
        assert_eq!(d.raw, raw);
    }
    match d.insn {
        Insn::Csr { rd, src, csr, .. } => {
            assert!(rd < 32 && csr < 4096);
            match src {
                CsrSrc::Reg(r) => assert!(r < 32),
                CsrSrc::Imm(i) => assert!(i < 32),
            }
        }
        Insn::SfenceVma { rs1, rs2 } => assert!(rs1 < 32 && rs2 < 32),
        _ => {}
    }
    if let Some(bits) = encode(d.insn) {
        assert_eq!(bits, raw, "{:?} encodes back to {bits:#010x}, not {raw:#010x}", d.insn);
        assert_eq!(decode(bits), d);
    }
    let _ = access_of(raw);
    assert!(!d.insn.mnemonic().is_empty());
    assert_eq!(insn_bytes(d.raw, d.len).len(), d.len as usize * 3 - 1);

    // The handler, on a hart in RAM with fuzzed state (x0 is zero in hardware).
    let mut hart = Hart::new(0x8000_0000 + u64::from(input.pc_offset & !1));
    hart.x = input.x;
    hart.x[0] = 0;
    hart.mode = if input.user { Mode::User } else { Mode::Supervisor };
    hart.csrs.sstatus = input.sstatus;
    hart.csrs.sie = input.sie;
    hart.csrs.sip = input.sip;
    hart.csrs.stvec = input.stvec;
    hart.csrs.scounteren = input.scounteren;
    hart.csrs.satp = input.satp;
    let mut platform = FakePlatform::new();
    let handled = on_illegal(&mut hart, raw, &mut platform);
    assert_eq!(hart.x[0], 0, "x0 written");
    assert!(handled.kind.starts_with("sigill "), "{}", handled.kind);
    if let Action::Fail(why) = &handled.action {
        assert!(!why.is_empty() && !why.contains('\n'), "{why:?}");
    }
});
