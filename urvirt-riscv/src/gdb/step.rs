//! Single-step without hardware help: where can the instruction at pc go next?
//!
//! URVirt runs the guest natively, so a step is: decode the instruction at pc, plant
//! temporary breakpoints at every address it may continue at, run, and take them out
//! again. Branches get both targets (the fall-through and the taken one), `jal` its target,
//! `jalr` the target computed from the registers as they are now. What the monitor
//! emulates (CSR access, `ecall`, `sret`, `wfi`, faults delivered to the guest) ends the step
//! in the handler instead, wherever the emulation put the pc ([`step_done_in_handler`]).
use crate::hart::Hart;
use crate::interp::{full, imm_b, imm_i, imm_j};

/// The addresses the instruction `raw` (of `len` bytes) at `hart.pc` may continue at, without
/// duplicates. Pure: the registers are read, never changed.
pub fn next_pcs(hart: &Hart, raw: u32, len: u64) -> Vec<u64> {
    let pc = hart.pc;
    let fall_through = pc.wrapping_add(len);
    let Some(w) = full(raw, len) else { return vec![fall_through] };
    let rs1 = ((w >> 15) & 0x1f) as usize;
    let mut next = match w & 0x7f {
        0x6f => vec![pc.wrapping_add(imm_j(w))],
        0x67 if (w >> 12) & 7 == 0 => vec![hart.x[rs1].wrapping_add(imm_i(w)) & !1],
        0x63 => vec![fall_through, pc.wrapping_add(imm_b(w))],
        _ => vec![fall_through],
    };
    next.dedup();
    next
}

/// A handler ran while a step was under way: the step is over if the handler moved the pc
/// (it emulated the instruction, delivered an exception or an interrupt). One that leaves
/// the pc alone (a TLB fill, a timer tick with nothing to deliver) lets the instruction run.
pub fn step_done_in_handler(pc_before: u64, pc_after: u64) -> bool {
    pc_before != pc_after
}

#[cfg(test)]
mod tests {
    use super::*;

    const PC: u64 = 0x8020_0000;

    fn at(pc: u64) -> Hart {
        Hart::new(pc)
    }

    #[test]
    fn straight_line_code_goes_on_after_itself() {
        // addi a0, a0, 1; c.addi a0, 1; fld (not expandable by the interpreter): still pc + len.
        assert_eq!(next_pcs(&at(PC), 0x0015_0513, 4), vec![PC + 4]);
        assert_eq!(next_pcs(&at(PC), 0x0505, 2), vec![PC + 2]);
        assert_eq!(next_pcs(&at(PC), 0x2108, 2), vec![PC + 2], "c.fld");
        // ecall and csrr: the handler ends the step, but the fall-through is planted too.
        assert_eq!(next_pcs(&at(PC), 0x0000_0073, 4), vec![PC + 4]);
    }

    #[test]
    fn jumps_and_branches() {
        // jal ra, -8 (0xff9ff0ef) and j . (0x0000006f): one target each.
        assert_eq!(next_pcs(&at(PC), 0xff9f_f0ef, 4), vec![PC - 8]);
        assert_eq!(next_pcs(&at(PC), 0x0000_006f, 4), vec![PC], "j . stays put");
        // c.j -2 (0xbffd) and c.j . (0xa001).
        assert_eq!(next_pcs(&at(PC), 0xbffd, 2), vec![PC - 2]);
        assert_eq!(next_pcs(&at(PC), 0xa001, 2), vec![PC]);
        // beq a0, a1, +16 (0x00b50863): both ways, whatever the registers say.
        assert_eq!(next_pcs(&at(PC), 0x00b5_0863, 4), vec![PC + 4, PC + 16]);
        // c.beqz a0, +8 (0xc501): both.
        assert_eq!(next_pcs(&at(PC), 0xc501, 2), vec![PC + 2, PC + 8]);
        // beq x0, x0, +4: the two targets are one address.
        assert_eq!(next_pcs(&at(PC), 0x0000_0263, 4), vec![PC + 4]);
    }

    #[test]
    fn register_jumps_use_the_registers_before_the_jump() {
        let mut h = at(PC);
        h.x[1] = 0x8020_1001;
        // ret (jalr x0, 0(ra)): the low bit is cleared.
        assert_eq!(next_pcs(&h, 0x0000_8067, 4), vec![0x8020_1000]);
        // jalr ra, 16(ra) (0x010080e7): from the old ra, not the link it writes.
        assert_eq!(next_pcs(&h, 0x0100_80e7, 4), vec![0x8020_1010]);
        // c.jr ra (0x8082) and c.jalr a5 (0x9782).
        assert_eq!(next_pcs(&h, 0x8082, 2), vec![0x8020_1000]);
        h.x[15] = 0x8030_0000;
        assert_eq!(next_pcs(&h, 0x9782, 2), vec![0x8030_0000]);
    }

    #[test]
    fn a_handler_ends_the_step_only_when_it_moved_the_pc() {
        assert!(step_done_in_handler(PC, PC + 4), "emulated csrr");
        assert!(step_done_in_handler(PC, 0x8020_0100), "exception to stvec");
        assert!(!step_done_in_handler(PC, PC), "tlb fill: the instruction runs next");
    }
}
