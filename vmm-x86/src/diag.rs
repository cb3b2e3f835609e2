//! Turning a dead guest into one line a person can act on: the reason, RIP and the
//! instruction bytes at RIP, read from guest memory by translating CS:RIP the way the CPU does.
//! Everything here is pure except [`CodeView::read_bytes`]' use of a memory reader closure.
use kvm_bindings::{kvm_regs, kvm_sregs};
use std::fmt::Write as _;

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// How many instruction bytes to show: the longest x86 instruction.
pub const INSN_BYTES: usize = 15;

/// The CPU state needed to find the instruction at CS:RIP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeView {
    pub rip: u64,
    pub cs_base: u64,
    pub cs_selector: u16,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

impl CodeView {
    pub fn new(regs: &kvm_regs, sregs: &kvm_sregs) -> Self {
        CodeView {
            rip: regs.rip,
            cs_base: sregs.cs.base,
            cs_selector: sregs.cs.selector,
            cr0: sregs.cr0,
            cr3: sregs.cr3,
            cr4: sregs.cr4,
            efer: sregs.efer,
        }
    }

    fn mode(&self) -> &'static str {
        if self.cr0 & CR0_PE == 0 {
            "real mode"
        } else if self.efer & EFER_LMA != 0 {
            "long mode"
        } else {
            "protected mode"
        }
    }

    /// The linear address of the byte `offset` past CS:RIP.
    fn linear(&self, offset: u64) -> u64 {
        if self.cr0 & CR0_PE == 0 {
            // Real mode: CS base is selector * 16 and IP wraps at 64 KiB.
            self.cs_base + (self.rip.wrapping_add(offset) & 0xffff)
        } else if self.efer & EFER_LMA != 0 {
            // Long mode ignores the CS base.
            self.rip.wrapping_add(offset)
        } else {
            (self.cs_base + self.rip.wrapping_add(offset)) & 0xffff_ffff
        }
    }

    /// Guest physical address of `linear`, walking the guest's page tables with `read_u64`
    /// (guest physical -> value). None if unmapped or in a paging mode we do not decode (PAE).
    pub fn translate(&self, linear: u64, read_u64: &impl Fn(u64) -> Option<u64>) -> Option<u64> {
        if self.cr0 & CR0_PG == 0 {
            return Some(linear);
        }
        if self.efer & EFER_LMA != 0 {
            let mut table = self.cr3 & ADDR_MASK;
            // PML4, PDPT, PD, PT: 9 bits each; a huge bit at the PDPT (1 GiB) or PD (2 MiB) ends the walk.
            for level in (0..4).rev() {
                let shift = 12 + 9 * level;
                let entry = read_u64(table + ((linear >> shift) & 511) * 8)?;
                if entry & PRESENT == 0 {
                    return None;
                }
                if level == 0 || (level < 3 && entry & HUGE != 0) {
                    let page_mask = (1u64 << shift) - 1;
                    return Some((entry & ADDR_MASK & !page_mask) | (linear & page_mask));
                }
                table = entry & ADDR_MASK;
            }
            None
        } else if self.cr4 & CR4_PAE != 0 {
            None
        } else {
            // Classic 32-bit paging: 10 + 10 + 12 bits, optional 4 MiB pages.
            let pde = read_u64((self.cr3 & 0xffff_f000) + ((linear >> 22) & 1023) * 4)? & 0xffff_ffff;
            if pde & PRESENT == 0 {
                return None;
            }
            if self.cr4 & CR4_PSE != 0 && pde & HUGE != 0 {
                return Some((pde & 0xffc0_0000) | (linear & 0x3f_ffff));
            }
            let pte = read_u64((pde & 0xffff_f000) + ((linear >> 12) & 1023) * 4)? & 0xffff_ffff;
            (pte & PRESENT != 0).then_some((pte & 0xffff_f000) | (linear & 0xfff))
        }
    }

    /// Guest physical address of CS:RIP.
    pub fn code_address(&self, read_u64: &impl Fn(u64) -> Option<u64>) -> Option<u64> {
        self.translate(self.linear(0), read_u64)
    }

    /// Up to [`INSN_BYTES`] bytes at CS:RIP, each translated on its own (an instruction may
    /// straddle a page); stops at the first byte that cannot be read.
    pub fn read_bytes(&self, read_u64: &impl Fn(u64) -> Option<u64>, read_u8: &impl Fn(u64) -> Option<u8>) -> Vec<u8> {
        (0..INSN_BYTES as u64).map_while(|i| self.translate(self.linear(i), read_u64).and_then(read_u8)).collect()
    }

    /// Whether this is the state of a vCPU just after INIT/reset: real mode at the reset vector
    /// F000:FFF0 with CS base 0xffff0000, which no flat guest or kernel runs at. On AMD SVM, KVM
    /// resets the vCPU as it reports a shutdown (the VMCB is undefined after one), so a triple
    /// fault there leaves this state, not the fault's.
    pub fn is_reset_state(&self) -> bool {
        self.cr0 & CR0_PE == 0 && self.rip == 0xfff0 && self.cs_selector == 0xf000 && self.cs_base == 0xffff_0000
    }

    /// "RIP=0x1003 (real mode, CS:IP 0000:1003 = guest physical 0x1003)".
    pub fn describe(&self, phys: Option<u64>) -> String {
        let mut s = format!("RIP={:#x} ({}", self.rip, self.mode());
        if self.cr0 & CR0_PE == 0 {
            let _ = write!(s, ", CS:IP {:04x}:{:04x}", self.cs_selector, self.rip & 0xffff);
        }
        match phys {
            Some(p) => {
                let _ = write!(s, ", guest physical {p:#x})");
            }
            None => s.push_str(", not mapped)"),
        }
        s
    }
}

/// Names of KVM_INTERNAL_ERROR_* suberrors (linux/kvm.h).
pub fn suberror_name(suberror: u32) -> &'static str {
    match suberror {
        1 => "emulation failure",
        2 => "exception while delivering another (simultaneous exception)",
        3 => "failure delivering an event",
        4 => "unexpected exit reason",
        _ => "unknown suberror",
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "unreadable".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// The line for KVM_EXIT_INTERNAL_ERROR.
pub fn internal_error_message(suberror: u32, view: &CodeView, phys: Option<u64>, bytes: &[u8]) -> String {
    format!(
        "KVM internal error: {} (suberror {suberror}) at {}; instruction bytes: {}",
        suberror_name(suberror),
        view.describe(phys),
        hex_bytes(bytes)
    )
}

/// The line for KVM_EXIT_SHUTDOWN when KVM had already reset the vCPU (AMD SVM): what it
/// holds then is the reset vector, so nothing about the fault itself can be said.
pub const TRIPLE_FAULT_AFTER_RESET: &str = "guest triple fault (KVM_EXIT_SHUTDOWN); KVM reset the vCPU on shutdown \
     (as on AMD SVM), so the RIP and instruction of the fault are lost";

/// The line for KVM_EXIT_SHUTDOWN. VMX and PVM keep the state at the fault, so the line shows
/// RIP and the instruction there, read by `code_at` (guest physical address, bytes). After
/// KVM reset the vCPU (SVM) it says so, and guest memory is not read for a site that is not
/// the fault's.
pub fn triple_fault_message(view: &CodeView, code_at: impl FnOnce(&CodeView) -> (Option<u64>, Vec<u8>)) -> String {
    if view.is_reset_state() {
        return TRIPLE_FAULT_AFTER_RESET.into();
    }
    let (phys, bytes) = code_at(view);
    format!(
        "guest triple fault (KVM_EXIT_SHUTDOWN) at {}; instruction bytes: {}",
        view.describe(phys),
        hex_bytes(&bytes)
    )
}

/// The line for KVM_EXIT_FAIL_ENTRY: the CPU refused the guest state we gave it.
pub fn fail_entry_message(reason: u64, cpu: u32, view: &CodeView) -> String {
    format!(
        "KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY, hardware reason {reason:#x}, cpu {cpu}) at RIP={:#x}",
        view.rip
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fabricated guest memory: u64 words at 8-aligned addresses.
    fn reader(words: &HashMap<u64, u64>) -> impl Fn(u64) -> Option<u64> + '_ {
        move |a| words.get(&a).copied().or(Some(0))
    }

    #[test]
    fn real_mode_uses_segment_times_16_plus_ip() {
        let v = CodeView { rip: 0x1003, cs_base: 0x1000 * 16, cs_selector: 0x1000, ..Default::default() };
        let none = HashMap::new();
        assert_eq!(v.code_address(&reader(&none)), Some(0x11003));
        assert_eq!(v.describe(Some(0x11003)), "RIP=0x1003 (real mode, CS:IP 1000:1003, guest physical 0x11003)");
    }

    #[test]
    fn long_mode_walks_four_levels_and_huge_pages() {
        let mut m = HashMap::new();
        let v = CodeView {
            rip: 0x40_1234,
            cr0: CR0_PE | CR0_PG,
            cr3: 0x3000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
            ..Default::default()
        };
        m.insert(0x3000, 0x4000 | 3); // PML4[0]
        m.insert(0x4000, 0x5000 | 3); // PDPT[0]
        m.insert(0x5000 + 2 * 8, 0x20_0000 | 0x83); // PD[2]: 2 MiB page at 2 MiB (not identity)
        assert_eq!(v.code_address(&reader(&m)), Some(0x20_1234));
        // 4 KiB page through a page table.
        m.insert(0x5000 + 2 * 8, 0x6000 | 3);
        m.insert(0x6000 + 8, 0x9000 | 3); // PT[1]
        assert_eq!(v.code_address(&reader(&m)), Some(0x9234));
        // Not present.
        m.insert(0x6000 + 8, 0x9000);
        assert_eq!(v.code_address(&reader(&m)), None);
        assert!(v.describe(None).contains("long mode, not mapped"));
    }

    #[test]
    fn protected_mode_without_paging_is_linear() {
        let v = CodeView { rip: 0x1010, cr0: CR0_PE, ..Default::default() };
        assert_eq!(v.code_address(&reader(&HashMap::new())), Some(0x1010));
    }

    #[test]
    fn bytes_stop_at_unreadable_memory() {
        let v = CodeView { rip: 0x1ffe, ..Default::default() };
        let none = HashMap::new();
        let bytes = v.read_bytes(&reader(&none), &|a| (a < 0x2000).then_some(a as u8));
        assert_eq!(bytes, vec![0xfe, 0xff]);
    }

    #[test]
    fn the_reset_state_svm_leaves_after_a_shutdown_is_recognised() {
        // What KVM's kvm_vcpu_reset(init) leaves: real mode, CS F000 base FFFF0000, RIP FFF0,
        // CR0 = CD | NW | ET.
        let reset =
            CodeView { rip: 0xfff0, cs_base: 0xffff_0000, cs_selector: 0xf000, cr0: 0x6000_0010, ..Default::default() };
        assert!(reset.is_reset_state());
        // A real-mode guest at 0000:FFF0, or any protected/long-mode state, is a real fault site.
        assert!(!CodeView { cs_base: 0, cs_selector: 0, ..reset }.is_reset_state());
        assert!(!CodeView { cr0: 0x11, ..reset }.is_reset_state());
        let long = CodeView { rip: 0x1004, cr0: 0x8000_0011, efer: EFER_LMA, ..Default::default() };
        assert!(!long.is_reset_state());
        // The triple-fault line then says the state is lost and reads no guest memory.
        let line = triple_fault_message(&reset, |_| panic!("guest memory read for the reset state"));
        assert_eq!(line, TRIPLE_FAULT_AFTER_RESET);
        // Where the state is kept (VMX, PVM) the line has the fault's RIP and instruction.
        let line = triple_fault_message(&long, |v| (Some(v.rip), vec![0x0f, 0x0b]));
        assert_eq!(line, "guest triple fault (KVM_EXIT_SHUTDOWN) at RIP=0x1004 (long mode, guest physical 0x1004); instruction bytes: 0f 0b");
    }

    #[test]
    fn messages_are_one_line_with_suberror_rip_and_bytes() {
        let v = CodeView { rip: 0x1000, ..Default::default() };
        let m = internal_error_message(1, &v, Some(0x1000), &[0x0f, 0x01, 0xd0]);
        assert_eq!(
            m,
            "KVM internal error: emulation failure (suberror 1) at RIP=0x1000 (real mode, CS:IP 0000:1000, \
             guest physical 0x1000); instruction bytes: 0f 01 d0"
        );
        assert!(!m.contains('\n'));
        let t = triple_fault_message(&v, |_| (None, vec![]));
        assert!(t.starts_with("guest triple fault (KVM_EXIT_SHUTDOWN) at RIP=0x1000"), "{t}");
        assert!(t.ends_with("instruction bytes: unreadable"), "{t}");
        assert!(fail_entry_message(0x21, 0, &v).contains("hardware reason 0x21"));
        assert!(
            TRIPLE_FAULT_AFTER_RESET.starts_with("guest triple fault (KVM_EXIT_SHUTDOWN); ")
                && !TRIPLE_FAULT_AFTER_RESET.contains('\n')
        );
        assert_eq!(suberror_name(9), "unknown suberror");
    }
}
