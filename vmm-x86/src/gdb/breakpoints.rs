//! Breakpoint bookkeeping, pure: software breakpoints are `int3` bytes patched into guest
//! memory (with the byte they replaced, to put back), hardware ones the four debug address
//! registers DR0-DR3 enabled in DR7. From both and the step flag comes the KVM_SET_GUEST_DEBUG
//! request.
//!
//! On kvm-pvm, KVM's instruction emulator runs the guest and fails on an `int3` ("emulation
//! failure") instead of reporting #BP; there gdb's software breakpoints take debug registers
//! too ([`Slot::Sw`]), so at most four breakpoints of either kind can be set at once.
use kvm_bindings::{
    kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
};
use std::collections::BTreeMap;

/// The x86 breakpoint instruction.
pub const INT3: u8 = 0xcc;

/// A patched `int3`: where it is in guest RAM and the byte it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    pub phys: u64,
    pub original: u8,
}

/// Who asked for a debug register: gdb's `hbreak`, or a software breakpoint put there
/// because `int3` cannot be used (kvm-pvm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Hw,
    Sw,
}

#[derive(Debug, Default)]
pub struct Breakpoints {
    /// By the (virtual) address gdb gave.
    sw: BTreeMap<u64, Patch>,
    /// DR0-DR3: address and who asked.
    hw: [Option<(u64, Slot)>; 4],
}

impl Breakpoints {
    pub fn sw(&self, addr: u64) -> Option<Patch> {
        self.sw.get(&addr).copied()
    }

    pub fn insert_sw(&mut self, addr: u64, patch: Patch) {
        self.sw.insert(addr, patch);
    }

    pub fn remove_sw(&mut self, addr: u64) -> Option<Patch> {
        self.sw.remove(&addr)
    }

    /// All patches, for putting every original byte back (detach).
    pub fn take_all_sw(&mut self) -> Vec<Patch> {
        std::mem::take(&mut self.sw).into_values().collect()
    }

    /// Takes a free debug register for `addr`; false when all four are in use.
    pub fn add_hw(&mut self, addr: u64, kind: Slot) -> bool {
        if self.hw.contains(&Some((addr, kind))) {
            return true;
        }
        match self.hw.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some((addr, kind));
                true
            }
            None => false,
        }
    }

    pub fn remove_hw(&mut self, addr: u64, kind: Slot) -> bool {
        match self.hw.iter_mut().find(|slot| **slot == Some((addr, kind))) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    pub fn clear_hw(&mut self) {
        self.hw = [None; 4];
    }

    /// Who set the debug registers that matched (DR6 B0-B3): a software breakpoint only
    /// if no `hbreak` matched.
    pub fn matched(&self, dr6: u64) -> Slot {
        let hit = |i: usize| dr6 & (1 << i) != 0;
        let hw = (0..4).any(|i| hit(i) && matches!(self.hw[i], Some((_, Slot::Hw)) | None));
        if hw {
            Slot::Hw
        } else {
            Slot::Sw
        }
    }

    /// The KVM_SET_GUEST_DEBUG request for the next run: nothing (debugging off) when there
    /// are no breakpoints and no step, so a guest runs undisturbed while gdb is attached.
    pub fn guest_debug(&self, step: bool) -> kvm_guest_debug {
        let mut debug = kvm_guest_debug::default();
        if !self.sw.is_empty() {
            debug.control |= KVM_GUESTDBG_USE_SW_BP;
        }
        let mut dr7 = 0u64;
        for (i, addr) in self.hw.iter().enumerate() {
            if let Some((addr, _)) = addr {
                debug.arch.debugreg[i] = *addr;
                // Ln (local enable); R/Wn = 00 (instruction fetch) and LENn = 00 (1 byte).
                dr7 |= 1 << (2 * i);
            }
        }
        if dr7 != 0 {
            debug.control |= KVM_GUESTDBG_USE_HW_BP;
            debug.arch.debugreg[7] = dr7;
        }
        if step {
            debug.control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if debug.control != 0 {
            debug.control |= KVM_GUESTDBG_ENABLE;
        }
        debug
    }
}

/// Why a KVM_EXIT_DEBUG happened, from its exception vector and DR6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugCause {
    SwBreak,
    HwBreak,
    Step,
}

/// #BP (vector 3) is an `int3`; #DB (vector 1) is a debug register match (DR6 B0-B3) or the
/// single step (DR6 BS, or no bit at all: some KVMs leave DR6 empty for a step).
pub fn cause(exception: u32, dr6: u64) -> DebugCause {
    match exception {
        3 => DebugCause::SwBreak,
        _ if dr6 & 0xf != 0 => DebugCause::HwBreak,
        _ => DebugCause::Step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_breakpoints_and_no_step_means_debugging_off() {
        assert_eq!(Breakpoints::default().guest_debug(false).control, 0);
        let step = Breakpoints::default().guest_debug(true);
        assert_eq!(step.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP);
    }

    #[test]
    fn software_breakpoints_keep_their_original_byte() {
        let mut b = Breakpoints::default();
        b.insert_sw(0x1010, Patch { phys: 0x1010, original: 0x55 });
        assert_eq!(b.sw(0x1010), Some(Patch { phys: 0x1010, original: 0x55 }));
        assert_eq!(b.guest_debug(false).control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP);
        assert_eq!(b.remove_sw(0x1010).unwrap().original, 0x55);
        assert_eq!(b.remove_sw(0x1010), None);
        b.insert_sw(1, Patch { phys: 1, original: 1 });
        b.insert_sw(2, Patch { phys: 2, original: 2 });
        assert_eq!(b.take_all_sw().len(), 2);
        assert_eq!(b.guest_debug(false).control, 0);
    }

    #[test]
    fn four_hardware_breakpoints_in_dr0_to_dr3() {
        let mut b = Breakpoints::default();
        for addr in [0x10, 0x20, 0x30] {
            assert!(b.add_hw(addr, Slot::Hw));
        }
        assert!(b.add_hw(0x40, Slot::Sw));
        assert!(b.add_hw(0x20, Slot::Hw), "the same address again is the same register");
        assert!(!b.add_hw(0x50, Slot::Sw), "all four in use");
        assert_eq!((b.matched(0b0010), b.matched(0b1000), b.matched(0b1001)), (Slot::Hw, Slot::Sw, Slot::Hw));
        let d = b.guest_debug(false);
        assert_eq!(d.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP);
        assert_eq!(d.arch.debugreg[..4], [0x10, 0x20, 0x30, 0x40]);
        assert_eq!(d.arch.debugreg[7], 0b0101_0101);
        assert!(!b.remove_hw(0x20, Slot::Sw), "an hbreak is not removed as a break");
        assert!(b.remove_hw(0x20, Slot::Hw));
        assert!(!b.remove_hw(0x20, Slot::Hw));
        assert_eq!(b.guest_debug(false).arch.debugreg[7], 0b0101_0001);
        assert!(b.add_hw(0x60, Slot::Hw), "the freed register is taken again");
        assert_eq!(b.guest_debug(false).arch.debugreg[1], 0x60);
    }

    #[test]
    fn debug_exit_causes() {
        assert_eq!(cause(3, 0), DebugCause::SwBreak);
        assert_eq!(cause(1, 0x4000), DebugCause::Step);
        assert_eq!(cause(1, 0), DebugCause::Step);
        assert_eq!(cause(1, 0x2), DebugCause::HwBreak);
    }
}
