//! The debugger's software breakpoints: an `ebreak` (or `c.ebreak` over a 2-byte instruction)
//! patched into guest memory, the original bytes kept to put back.
//!
//! Two owners can want a breakpoint at one address: the user (gdb's `Z0`/`Z1`) and a
//! single-step, which plants temporary ones at the next pc(s) ([`super::step`]). The patch
//! stays while either wants it and the original comes back when the last lets go.
//!
//! Pure code over [`CodeMem`], so the bookkeeping is unit-tested on any host; the engine
//! gives it guest memory (through the guest's page tables when paging is on).
use std::collections::BTreeMap;

/// `ebreak` and `c.ebreak`, as they lie in memory (little endian).
pub const EBREAK: [u8; 4] = 0x0010_0073u32.to_le_bytes();
pub const C_EBREAK: [u8; 2] = 0x9002u16.to_le_bytes();

/// Guest memory as the breakpoint table sees it: code bytes at guest addresses.
pub trait CodeMem {
    /// Fills `buf` from `addr`; false if any byte cannot be read.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool;
    /// Writes `bytes` at `addr`; false (and nothing written) if it cannot.
    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool;
}

/// Who wants a breakpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    User,
    Step,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Patch {
    original: [u8; 4],
    len: usize,
    user: bool,
    step: bool,
}

#[derive(Debug, Default)]
pub struct Breakpoints {
    patches: BTreeMap<u64, Patch>,
}

impl Breakpoints {
    /// Plants (or re-owns) a breakpoint at `addr`. False if the memory there cannot be read
    /// or written (gdb then reports that it cannot insert it).
    pub fn insert(&mut self, mem: &mut dyn CodeMem, addr: u64, owner: Owner) -> bool {
        if let Some(p) = self.patches.get_mut(&addr) {
            set_owner(p, owner, true);
            return true;
        }
        let mut original = [0u8; 4];
        if !mem.read(addr, &mut original[..2]) {
            return false;
        }
        // The length of the instruction that is there, whatever gdb guessed: a 4-byte ebreak
        // over a compressed instruction would clobber the next one.
        let len = crate::decode::insn_len(u16::from_le_bytes([original[0], original[1]])) as usize;
        if len == 4 && !mem.read(addr + 2, &mut original[2..]) {
            return false;
        }
        let patch: &[u8] = if len == 2 { &C_EBREAK } else { &EBREAK };
        if !mem.write(addr, patch) {
            return false;
        }
        let mut p = Patch { original, len, user: false, step: false };
        set_owner(&mut p, owner, true);
        self.patches.insert(addr, p);
        true
    }

    /// `owner` lets go of `addr`; the original bytes come back when nobody wants it any more.
    /// False if `owner` had no breakpoint there.
    pub fn remove(&mut self, mem: &mut dyn CodeMem, addr: u64, owner: Owner) -> bool {
        let Some(p) = self.patches.get_mut(&addr) else { return false };
        let had = match owner {
            Owner::User => p.user,
            Owner::Step => p.step,
        };
        set_owner(p, owner, false);
        if !p.user && !p.step {
            let p = self.patches.remove(&addr).expect("present");
            mem.write(addr, &p.original[..p.len]);
        }
        had
    }

    /// Removes every temporary (single-step) breakpoint.
    pub fn remove_step(&mut self, mem: &mut dyn CodeMem) {
        let steps: Vec<u64> = self.patches.iter().filter(|(_, p)| p.step).map(|(&a, _)| a).collect();
        for addr in steps {
            self.remove(mem, addr, Owner::Step);
        }
    }

    /// Puts every original back (detach, the end of the run).
    pub fn clear(&mut self, mem: &mut dyn CodeMem) {
        for (addr, p) in std::mem::take(&mut self.patches) {
            mem.write(addr, &p.original[..p.len]);
        }
    }

    /// Whether the `ebreak` at `addr` is one of ours (and so a debugger stop, not the guest's).
    pub fn contains(&self, addr: u64) -> bool {
        self.patches.contains_key(&addr)
    }

    pub fn is_empty(&self) -> bool {
        self.patches.is_empty()
    }

    /// Replaces, in `buf` read from `addr`, our patches by the original bytes: gdb sees the
    /// guest's code, never our ebreaks.
    pub fn hide(&self, addr: u64, buf: &mut [u8]) {
        let end = addr.saturating_add(buf.len() as u64);
        for (&at, p) in self.patches.range(addr.saturating_sub(3)..end) {
            for i in 0..p.len as u64 {
                let a = at + i;
                if (addr..end).contains(&a) {
                    buf[(a - addr) as usize] = p.original[i as usize];
                }
            }
        }
    }
}

fn set_owner(p: &mut Patch, owner: Owner, on: bool) {
    match owner {
        Owner::User => p.user = on,
        Owner::Step => p.step = on,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Code at 0x1000.., some of it read-only.
    pub struct TestMem {
        pub bytes: Vec<u8>,
        pub read_only_from: u64,
    }

    pub const BASE: u64 = 0x1000;

    impl CodeMem for TestMem {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = addr.checked_sub(BASE) else { return false };
            match self.bytes.get(off as usize..off as usize + buf.len()) {
                Some(b) => {
                    buf.copy_from_slice(b);
                    true
                }
                None => false,
            }
        }
        fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
            if addr + bytes.len() as u64 > self.read_only_from {
                return false;
            }
            let Some(off) = addr.checked_sub(BASE) else { return false };
            match self.bytes.get_mut(off as usize..off as usize + bytes.len()) {
                Some(b) => {
                    b.copy_from_slice(bytes);
                    true
                }
                None => false,
            }
        }
    }

    fn code() -> TestMem {
        // addi a0, a0, 1 (4 bytes); c.addi a0, 1 (2 bytes); addi a1, a1, 2 (4 bytes).
        let mut bytes = 0x0015_0513u32.to_le_bytes().to_vec();
        bytes.extend(0x0505u16.to_le_bytes());
        bytes.extend(0x0025_8593u32.to_le_bytes());
        TestMem { bytes, read_only_from: u64::MAX }
    }

    #[test]
    fn patches_ebreak_by_the_instructions_length_and_restores_it() {
        let mut mem = code();
        let before = mem.bytes.clone();
        let mut bps = Breakpoints::default();
        assert!(bps.insert(&mut mem, BASE, Owner::User));
        assert!(bps.insert(&mut mem, BASE + 4, Owner::User));
        assert_eq!(&mem.bytes[..4], &EBREAK);
        assert_eq!(&mem.bytes[4..6], &C_EBREAK, "a compressed instruction gets c.ebreak");
        assert_eq!(&mem.bytes[6..], &before[6..], "the next instruction is untouched");
        let mut seen = mem.bytes.clone();
        bps.hide(BASE, &mut seen);
        assert_eq!(seen, before, "reads see the original code");
        let mut part = mem.bytes[1..5].to_vec();
        bps.hide(BASE + 1, &mut part);
        assert_eq!(part, before[1..5], "also for a read starting inside a patch");
        assert!(bps.contains(BASE + 4) && !bps.contains(BASE + 2));
        assert!(bps.remove(&mut mem, BASE, Owner::User));
        assert!(bps.remove(&mut mem, BASE + 4, Owner::User));
        assert_eq!(mem.bytes, before);
        assert!(!bps.remove(&mut mem, BASE, Owner::User), "nothing left to remove");
        assert!(bps.is_empty());
    }

    #[test]
    fn user_and_step_share_a_patch() {
        let mut mem = code();
        let before = mem.bytes.clone();
        let mut bps = Breakpoints::default();
        assert!(bps.insert(&mut mem, BASE + 6, Owner::User));
        assert!(bps.insert(&mut mem, BASE + 6, Owner::Step));
        assert!(bps.insert(&mut mem, BASE, Owner::Step));
        bps.remove_step(&mut mem);
        assert_eq!(&mem.bytes[..4], &before[..4], "the step's own breakpoint went");
        assert_eq!(&mem.bytes[6..], &EBREAK, "the user's stays");
        assert!(bps.contains(BASE + 6) && !bps.contains(BASE));
        bps.clear(&mut mem);
        assert_eq!(mem.bytes, before);
    }

    #[test]
    fn memory_that_cannot_be_patched_is_refused() {
        let mut mem = code();
        mem.read_only_from = BASE + 4;
        let mut bps = Breakpoints::default();
        assert!(!bps.insert(&mut mem, BASE + 4, Owner::User), "read-only");
        assert!(!bps.insert(&mut mem, 0x10, Owner::User), "not memory at all");
        assert!(bps.is_empty());
    }
}
