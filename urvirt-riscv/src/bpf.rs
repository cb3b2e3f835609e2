//! The classic-BPF seccomp program that makes every guest `ecall` trap.
//!
//! It looks at `seccomp_data.instruction_pointer`, which is the address *after* the `ecall`
//! (the kernel has already stepped over it): an `ecall` at `a` reports `a + 4`. So for guest
//! RAM at `[start, end)` the filter traps reported ips in `(start, end]`: an `ecall` in the
//! last word of RAM reports exactly `end`, and one just below RAM reports `start`. Such a
//! syscall gets SECCOMP_RET_TRAP (the kernel sends SIGSYS and does not run it); everything else, the
//! monitor's own syscalls, is allowed. That always allows rt_sigreturn from the places it
//! legitimately comes from (the vDSO trampoline, our own return stub): both lie outside guest
//! RAM. From inside guest RAM it traps like any ecall: a guest making an SBI call with
//! a7 = 139 must not get a host rt_sigreturn, which would load host registers from a frame
//! the guest wrote.
//!
//! Why hand-written: seccompiler (and libseccomp) build filters on the syscall number and
//! arguments only; neither can express a condition on the instruction pointer, which is the
//! whole point here. The program is seven instructions (nine when RAM ends at 4 GiB), so we write it with libc's
//! `sock_filter` and test it with a small interpreter below.
//!
//! Pure code: built and tested on any host; the engine installs it on riscv64.

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
const BPF_RET_K: u16 = 0x06;

pub const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

/// rt_sigreturn's number in the generic syscall table riscv64 uses.
pub const NR_RT_SIGRETURN: u32 = 139;

// Offsets in struct seccomp_data (little-endian) of instruction_pointer's low and high halves.
const OFF_IP_LO: u32 = 8;
const OFF_IP_HI: u32 = 12;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter for guest RAM at `[start, end)`. Both must lie below 4 GiB (`end` may be
/// exactly 4 GiB), which the engine's physical window guarantees.
pub fn ecall_filter(start: u64, end: u64) -> Vec<libc::sock_filter> {
    assert!(start < end && end <= 1 << 32, "guest RAM must lie in the 32-bit physical window");
    // Jump offsets count from the next instruction. Trap when start < ip <= end.
    if end < 1 << 32 {
        return vec![
            stmt(BPF_LD_W_ABS, OFF_IP_HI),           // 0
            jump(BPF_JMP_JEQ_K, 0, 0, 4),            // 1: ip >= 4 GiB -> allow
            stmt(BPF_LD_W_ABS, OFF_IP_LO),           // 2
            jump(BPF_JMP_JGT_K, start as u32, 0, 2), // 3: ip <= start -> allow
            jump(BPF_JMP_JGT_K, end as u32, 1, 0),   // 4: ip > end -> allow, else trap
            stmt(BPF_RET_K, SECCOMP_RET_TRAP),       // 5: an ecall inside guest RAM
            stmt(BPF_RET_K, SECCOMP_RET_ALLOW),      // 6: the monitor, libc, the vDSO
        ];
    }
    // RAM ends at 4 GiB: its last word reports ip = 4 GiB exactly (high half 1, low half 0).
    vec![
        stmt(BPF_LD_W_ABS, OFF_IP_HI),           // 0
        jump(BPF_JMP_JEQ_K, 0, 0, 2),            // 1: high half not 0 -> 4
        stmt(BPF_LD_W_ABS, OFF_IP_LO),           // 2
        jump(BPF_JMP_JGT_K, start as u32, 3, 4), // 3: ip > start -> trap, else allow
        jump(BPF_JMP_JEQ_K, 1, 0, 3),            // 4: high half not 1 -> allow
        stmt(BPF_LD_W_ABS, OFF_IP_LO),           // 5
        jump(BPF_JMP_JEQ_K, 0, 0, 1),            // 6: ip == 4 GiB -> trap, else allow
        stmt(BPF_RET_K, SECCOMP_RET_TRAP),       // 7
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),      // 8
    ]
}

/// Whether guest RAM at `range` still needs a filter of its own, given the ranges whose filter
/// this process already installed (a filter cannot be removed; each VM's RAM must be covered,
/// not only the first one's).
pub fn needs_filter(installed: &[(u64, u64)], range: (u64, u64)) -> bool {
    !installed.contains(&range)
}

/// Runs a classic-BPF program on (nr, ip), for tests: only the opcodes we emit.
#[cfg(test)]
fn run(prog: &[libc::sock_filter], nr: u32, ip: u64) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[8..16].copy_from_slice(&ip.to_le_bytes());
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            BPF_LD_W_ABS => acc = u32::from_le_bytes(data[i.k as usize..i.k as usize + 4].try_into().unwrap()),
            BPF_JMP_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
            BPF_JMP_JGT_K => pc += if acc > i.k { i.jt } else { i.jf } as usize,
            BPF_RET_K => return i.k,
            c => panic!("opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip` is what the kernel reports: the address after the ecall.
    #[test]
    fn traps_only_ecalls_inside_guest_ram() {
        let p = ecall_filter(0x8000_0000, 0x8800_0000);
        assert_eq!(run(&p, 64, 0x8020_0004), SECCOMP_RET_TRAP);
        assert_eq!(run(&p, 64, 0x8000_0004), SECCOMP_RET_TRAP, "ecall in the first word");
        assert_eq!(run(&p, 64, 0x8800_0000), SECCOMP_RET_TRAP, "ecall in the last word");
        assert_eq!(run(&p, 64, 0x8800_0004), SECCOMP_RET_ALLOW, "ecall just past the end");
        assert_eq!(run(&p, 64, 0x8000_0000), SECCOMP_RET_ALLOW, "ecall in the word just below");
        assert_eq!(run(&p, 64, 0x2a_8000_1000), SECCOMP_RET_ALLOW, "monitor code high up");
        assert_eq!(run(&p, 64, 0x1_8020_0000), SECCOMP_RET_ALLOW, "same low half, above 4 GiB");
        assert_eq!(run(&p, NR_RT_SIGRETURN, 0x3f_f7ff_f000), SECCOMP_RET_ALLOW, "vDSO rt_sigreturn");
        assert_eq!(run(&p, NR_RT_SIGRETURN, 0x8020_0004), SECCOMP_RET_TRAP, "no host sigreturn for the guest");
    }

    #[test]
    fn ram_up_to_four_gib() {
        let p = ecall_filter(0x8000_0000, 1 << 32);
        assert_eq!(run(&p, 1, 0xffff_fffc), SECCOMP_RET_TRAP);
        assert_eq!(run(&p, 1, 1 << 32), SECCOMP_RET_TRAP, "ecall in the last word");
        assert_eq!(run(&p, 1, (1 << 32) + 4), SECCOMP_RET_ALLOW, "just past the end");
        assert_eq!(run(&p, 1, 0x8000_0000), SECCOMP_RET_ALLOW, "just below");
        assert_eq!(run(&p, 1, 0x8000_0004), SECCOMP_RET_TRAP, "first word");
        assert_eq!(run(&p, 1, 0x1_8000_0004), SECCOMP_RET_ALLOW, "high half 1, low half not 0");
        assert_eq!(run(&p, 1, 0x2_0000_0000), SECCOMP_RET_ALLOW, "high half 2, low half 0");
    }

    #[test]
    fn every_new_range_gets_a_filter() {
        let first = (0x8000_0000, 0x8800_0000);
        assert!(needs_filter(&[], first));
        assert!(!needs_filter(&[first], first), "the same RAM again: already trapped");
        assert!(needs_filter(&[first], (0x8000_0000, 0x8100_0000)), "a smaller VM later");
        assert!(needs_filter(&[first], (0x8000_0000, 0x9000_0000)), "a larger VM later");
    }
}
