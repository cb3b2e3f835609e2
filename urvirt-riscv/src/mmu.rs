//! Sv39 address translation: the page-table walk of the privileged spec ("Virtual Address
//! Translation Process", section 10.3.2 in version 20240411), as pure code over a small trait
//! for guest-physical memory, so it is unit-tested with page tables built in a test RAM.
//!
//! What this hart implements:
//! - `satp.MODE` Bare (0) and Sv39 (8); Sv48/Sv57 are not offered (see [`satp_mode_supported`]).
//! - Permissions by the *effective* mode: U-mode needs `U = 1`; S-mode may read and write
//!   `U = 1` pages only with `sstatus.SUM`, and never executes them; `sstatus.MXR` lets loads
//!   read execute-only pages.
//! - Superpages (2 MiB megapages, 1 GiB gigapages); a leaf whose low PPN fields are not zero
//!   is a misaligned superpage and faults.
//! - Reserved encodings fault: `W = 1` without `R`, bits 63:54 set (no Svnapot/Svpbmt here),
//!   and `A`/`D`/`U` set in a non-leaf PTE.
//! - **A and D: updated by the walk (Svadu behaviour).** The spec allows a hart either to fault
//!   when `A = 0` (or `D = 0` on a store) or to set the bits itself. QEMU's `virt` machine sets
//!   them, and teaching kernels of the rCore kind leave them clear in their PTEs and rely on
//!   that, so URVirt sets them too: `A` on every successful walk, `D` on a store. A kernel that
//!   pre-sets them sees no difference. The engine keeps a page that is writable but not yet
//!   dirty read-only on the host, so the first store comes back here and sets `D`.
//! - Faults: a page fault of the access type (12 fetch, 13 load, 15 store/AMO) with
//!   `stval` = the virtual address; a page-table entry outside guest RAM is an access fault of
//!   the access type (1, 5, 7), as the spec asks for a PMA violation during the walk.
use crate::hart::{Access, Action, Handled, Hart, Mode};
use crate::platform::GuestRam;
use crate::trap;

pub const PAGE_SIZE: u64 = 4096;
pub const SATP_MODE_BARE: u64 = 0;
pub const SATP_MODE_SV39: u64 = 8;
const SATP_MODE_SHIFT: u32 = 60;
const SATP_ASID_SHIFT: u32 = 44;
const SATP_ASID_MASK: u64 = 0xffff;
const SATP_PPN_MASK: u64 = (1 << 44) - 1;

pub const PTE_V: u64 = 1 << 0;
pub const PTE_R: u64 = 1 << 1;
pub const PTE_W: u64 = 1 << 2;
pub const PTE_X: u64 = 1 << 3;
pub const PTE_U: u64 = 1 << 4;
pub const PTE_G: u64 = 1 << 5;
pub const PTE_A: u64 = 1 << 6;
pub const PTE_D: u64 = 1 << 7;
const PTE_PPN_SHIFT: u32 = 10;
const PTE_PPN_MASK: u64 = (1 << 44) - 1;
/// Bits 63:54: N (Svnapot), PBMT (Svpbmt) and reserved. This hart has none of them.
const PTE_RESERVED: u64 = 0xffc0_0000_0000_0000;

pub const INSTRUCTION_PAGE_FAULT: u64 = 12;
pub const LOAD_PAGE_FAULT: u64 = 13;
pub const STORE_PAGE_FAULT: u64 = 15;

/// Sv39: three levels of 512 entries, 9 VPN bits each, 39-bit virtual addresses.
const LEVELS: usize = 3;
const VA_BITS: u32 = 39;

/// Guest-physical memory as the walker sees it: 8-byte page-table entries.
pub trait PhysMem {
    /// The PTE at `pa`, or None if `pa` is not RAM (the walk then raises an access fault).
    fn read_pte(&mut self, pa: u64) -> Option<u64>;
    /// Stores an updated PTE (A/D bits) at `pa`, which `read_pte` just read.
    fn write_pte(&mut self, pa: u64, pte: u64);
}

impl PhysMem for GuestRam<'_> {
    fn read_pte(&mut self, pa: u64) -> Option<u64> {
        let r = self.range(pa, 8)?;
        Some(u64::from_le_bytes(self.bytes[r].try_into().ok()?))
    }
    fn write_pte(&mut self, pa: u64, pte: u64) {
        if let Some(r) = self.range(pa, 8) {
            self.bytes[r].copy_from_slice(&pte.to_le_bytes());
        }
    }
}

/// Whether this hart implements `satp.MODE = mode`. A write of any other mode has no effect
/// at all (WARL), so a guest probing for Sv48/Sv57 reads back what it had.
pub fn satp_mode_supported(mode: u64) -> bool {
    mode == SATP_MODE_BARE || mode == SATP_MODE_SV39
}

pub fn satp_mode(satp: u64) -> u64 {
    satp >> SATP_MODE_SHIFT
}

pub fn satp_asid(satp: u64) -> u16 {
    ((satp >> SATP_ASID_SHIFT) & SATP_ASID_MASK) as u16
}

/// Everything a translation depends on besides the page tables: `satp`, the effective
/// privilege mode and `sstatus.SUM`/`MXR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regime {
    pub satp: u64,
    pub mode: Mode,
    pub sum: bool,
    pub mxr: bool,
}

impl Regime {
    pub fn of(hart: &Hart) -> Self {
        let s = hart.csrs.sstatus;
        Regime {
            satp: hart.csrs.satp,
            mode: hart.mode,
            sum: s & crate::csr::SSTATUS_SUM != 0,
            mxr: s & crate::csr::SSTATUS_MXR != 0,
        }
    }

    pub fn paging(&self) -> bool {
        satp_mode(self.satp) == SATP_MODE_SV39
    }

    fn root(&self) -> u64 {
        (self.satp & SATP_PPN_MASK) * PAGE_SIZE
    }
}

/// The leaf PTE a translation used: what a TLB entry caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// First virtual address the leaf maps (aligned to `size`).
    pub va: u64,
    /// First physical address it maps.
    pub pa: u64,
    /// 4 KiB, 2 MiB or 1 GiB.
    pub size: u64,
    /// The PTE after any A/D update.
    pub pte: u64,
}

impl Leaf {
    pub fn global(&self) -> bool {
        self.pte & PTE_G != 0
    }
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub pa: u64,
    /// None with satp = Bare.
    pub leaf: Option<Leaf>,
}

/// A failed translation: the exception the guest takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub cause: u64,
    pub tval: u64,
}

pub fn page_fault_cause(access: Access) -> u64 {
    match access {
        Access::Fetch => INSTRUCTION_PAGE_FAULT,
        Access::Load => LOAD_PAGE_FAULT,
        Access::Store => STORE_PAGE_FAULT,
    }
}

fn access_fault_cause(access: Access) -> u64 {
    match access {
        Access::Fetch => trap::INSTRUCTION_ACCESS_FAULT,
        Access::Load => trap::LOAD_ACCESS_FAULT,
        Access::Store => trap::STORE_ACCESS_FAULT,
    }
}

/// The access fault for `access` at `va` (a physical address that is not RAM).
pub fn access_fault(access: Access, va: u64) -> Fault {
    Fault { cause: access_fault_cause(access), tval: va }
}

/// Delivers a translation or access fault to the guest's trap handler (sepc = `hart.pc`), or
/// fails the run with a one-line reason when the guest has none.
pub fn raise(hart: &mut Hart, f: Fault, kind: &'static str) -> Handled {
    if !trap::has_handler(hart) {
        let name = page_fault_name(f.cause).unwrap_or_else(|| trap::cause_name(f.cause));
        let why = format!("guest {name} at {:#x} (pc {:#x}) with no trap handler (stvec = 0)", f.tval, hart.pc);
        return Handled { kind, action: Action::Fail(why) };
    }
    trap::deliver(hart, f.cause, f.tval);
    Handled { kind, action: Action::Resume }
}

/// A name for the page-fault causes (the others are in [`trap::cause_name`]).
pub fn page_fault_name(cause: u64) -> Option<&'static str> {
    match cause {
        INSTRUCTION_PAGE_FAULT => Some("instruction page fault"),
        LOAD_PAGE_FAULT => Some("load page fault"),
        STORE_PAGE_FAULT => Some("store page fault"),
        _ => None,
    }
}

/// Whether a leaf `pte` allows `access` in `regime` (mode, SUM, MXR). A/D are not looked at.
pub fn allows(pte: u64, regime: &Regime, access: Access) -> bool {
    let user_page = pte & PTE_U != 0;
    let mode_ok = match (regime.mode, access) {
        (Mode::User, _) => user_page,
        // S-mode never executes a U page, SUM or not.
        (Mode::Supervisor, Access::Fetch) => !user_page,
        (Mode::Supervisor, _) => !user_page || regime.sum,
    };
    mode_ok
        && match access {
            Access::Fetch => pte & PTE_X != 0,
            Access::Load => pte & PTE_R != 0 || (regime.mxr && pte & PTE_X != 0),
            Access::Store => pte & PTE_W != 0,
        }
}

/// Is `va` a valid Sv39 address: bits 63:39 all equal to bit 38.
pub fn canonical(va: u64) -> bool {
    let top = (va as i64) >> (VA_BITS - 1);
    top == 0 || top == -1
}

fn vpn(va: u64, level: usize) -> u64 {
    (va >> (12 + 9 * level)) & 0x1ff
}

/// Translates `va` for `access` in `regime`, setting A (and D on a store) in the leaf PTE.
pub fn translate(mem: &mut impl PhysMem, regime: &Regime, va: u64, access: Access) -> Result<Translation, Fault> {
    if !regime.paging() {
        return Ok(Translation { pa: va, leaf: None });
    }
    let page_fault = Fault { cause: page_fault_cause(access), tval: va };
    if !canonical(va) {
        return Err(page_fault);
    }
    let mut table = regime.root();
    for level in (0..LEVELS).rev() {
        let pte_addr = table + vpn(va, level) * 8;
        let Some(mut pte) = mem.read_pte(pte_addr) else {
            return Err(access_fault(access, va));
        };
        if pte & PTE_V == 0 || (pte & PTE_R == 0 && pte & PTE_W != 0) || pte & PTE_RESERVED != 0 {
            return Err(page_fault);
        }
        let ppn = (pte >> PTE_PPN_SHIFT) & PTE_PPN_MASK;
        if pte & (PTE_R | PTE_X) == 0 {
            // A pointer to the next level; A, D and U are reserved in it.
            if level == 0 || pte & (PTE_A | PTE_D | PTE_U) != 0 {
                return Err(page_fault);
            }
            table = ppn * PAGE_SIZE;
            continue;
        }
        if !allows(pte, regime, access) {
            return Err(page_fault);
        }
        // A superpage's PPN must be aligned to its size.
        let low_ppn_bits = 9 * level as u32;
        if ppn & ((1 << low_ppn_bits) - 1) != 0 {
            return Err(page_fault);
        }
        let updated = pte | PTE_A | if access == Access::Store { PTE_D } else { 0 };
        if updated != pte {
            mem.write_pte(pte_addr, updated);
            pte = updated;
        }
        let size = PAGE_SIZE << low_ppn_bits;
        let leaf = Leaf { va: va & !(size - 1), pa: ppn * PAGE_SIZE, size, pte };
        return Ok(Translation { pa: leaf.pa + (va & (size - 1)), leaf: Some(leaf) });
    }
    unreachable!("the level-0 case returns above")
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub const RAM: u64 = 0x8000_0000;

    /// A test RAM with a bump allocator for page tables and helpers to map pages.
    pub struct TestRam {
        pub bytes: Vec<u8>,
        next: u64,
        pub root: u64,
    }

    impl Default for TestRam {
        fn default() -> Self {
            Self::new()
        }
    }

    impl TestRam {
        pub fn new() -> Self {
            let mut t = TestRam { bytes: vec![0; 0x40_0000], next: RAM, root: 0 };
            t.root = t.alloc();
            t
        }
        pub fn alloc(&mut self) -> u64 {
            let a = self.next;
            self.next += PAGE_SIZE;
            a
        }
        pub fn ram(&mut self) -> GuestRam<'_> {
            GuestRam { base: RAM, bytes: &mut self.bytes }
        }
        pub fn pte(&mut self, pa: u64) -> u64 {
            self.ram().read_pte(pa).unwrap()
        }
        /// Maps `va` -> `pa` with a leaf at `level` (0: 4 KiB, 1: 2 MiB, 2: 1 GiB).
        /// Returns the leaf PTE's address.
        pub fn map(&mut self, va: u64, pa: u64, level: usize, flags: u64) -> u64 {
            let mut table = self.root;
            for l in (level + 1..LEVELS).rev() {
                let at = table + vpn(va, l) * 8;
                let pte = self.pte(at);
                table = if pte & PTE_V != 0 {
                    ((pte >> PTE_PPN_SHIFT) & PTE_PPN_MASK) * PAGE_SIZE
                } else {
                    let t = self.alloc();
                    self.ram().write_pte(at, ((t / PAGE_SIZE) << PTE_PPN_SHIFT) | PTE_V);
                    t
                };
            }
            let at = table + vpn(va, level) * 8;
            self.ram().write_pte(at, ((pa / PAGE_SIZE) << PTE_PPN_SHIFT) | flags);
            at
        }
        pub fn satp(&self) -> u64 {
            (SATP_MODE_SV39 << SATP_MODE_SHIFT) | (self.root / PAGE_SIZE)
        }
        pub fn regime(&self, mode: Mode) -> Regime {
            Regime { satp: self.satp(), mode, sum: false, mxr: false }
        }
        pub fn go(&mut self, r: &Regime, va: u64, access: Access) -> Result<u64, Fault> {
            translate(&mut self.ram(), r, va, access).map(|t| t.pa)
        }
    }

    const RWX: u64 = PTE_V | PTE_R | PTE_W | PTE_X;
    const S: Mode = Mode::Supervisor;
    const U: Mode = Mode::User;

    fn pf(access: Access, va: u64) -> Result<u64, Fault> {
        Err(Fault { cause: page_fault_cause(access), tval: va })
    }

    #[test]
    fn bare_is_identity() {
        let mut t = TestRam::new();
        let r = Regime { satp: 0, mode: S, sum: false, mxr: false };
        assert_eq!(t.go(&r, 0x1234_5678, Access::Store), Ok(0x1234_5678));
    }

    #[test]
    fn four_kib_page_and_offsets() {
        let mut t = TestRam::new();
        t.map(0x10000, 0x8010_0000, 0, PTE_V | PTE_R | PTE_X | PTE_U);
        let r = t.regime(U);
        assert_eq!(t.go(&r, 0x10abc, Access::Fetch), Ok(0x8010_0abc));
        assert_eq!(t.go(&r, 0x10abc, Access::Load), Ok(0x8010_0abc));
        assert_eq!(t.go(&r, 0x10abc, Access::Store), pf(Access::Store, 0x10abc), "no W");
        assert_eq!(t.go(&r, 0x11000, Access::Load), pf(Access::Load, 0x11000), "not mapped");
        assert_eq!(t.go(&r, 0x11000, Access::Fetch), pf(Access::Fetch, 0x11000));
        assert_eq!(LOAD_PAGE_FAULT, 13);
        assert_eq!((INSTRUCTION_PAGE_FAULT, STORE_PAGE_FAULT), (12, 15));
    }

    #[test]
    fn superpages_and_their_alignment() {
        let mut t = TestRam::new();
        t.map(0x8020_0000, 0x8020_0000, 1, RWX);
        t.map(0x4000_0000, 0x8000_0000, 2, RWX);
        let r = t.regime(S);
        assert_eq!(t.go(&r, 0x803f_fff8, Access::Load), Ok(0x803f_fff8));
        let leaf = translate(&mut t.ram(), &r, 0x8030_0000, Access::Load).unwrap().leaf.unwrap();
        assert_eq!((leaf.va, leaf.pa, leaf.size), (0x8020_0000, 0x8020_0000, 2 << 20));
        assert_eq!(t.go(&r, 0x4123_4567, Access::Store), Ok(0x8123_4567), "gigapage");
        // A megapage whose PPN is not 2 MiB aligned is a misaligned superpage.
        t.map(0x8060_0000, 0x8060_1000, 1, RWX);
        assert_eq!(t.go(&r, 0x8060_0000, Access::Load), pf(Access::Load, 0x8060_0000));
    }

    #[test]
    fn user_bit_sum_and_supervisor_fetch() {
        let mut t = TestRam::new();
        t.map(0x10000, 0x8010_0000, 0, RWX | PTE_U);
        t.map(0x8020_0000, 0x8020_0000, 0, RWX);
        let mut s = t.regime(S);
        for a in [Access::Load, Access::Store, Access::Fetch] {
            assert_eq!(t.go(&s, 0x10000, a), pf(a, 0x10000), "U page from S without SUM: {a:?}");
        }
        s.sum = true;
        assert_eq!(t.go(&s, 0x10008, Access::Load), Ok(0x8010_0008));
        assert_eq!(t.go(&s, 0x10008, Access::Store), Ok(0x8010_0008));
        assert_eq!(t.go(&s, 0x10008, Access::Fetch), pf(Access::Fetch, 0x10008), "S never executes U pages");
        let u = t.regime(U);
        assert_eq!(t.go(&u, 0x8020_0000, Access::Load), pf(Access::Load, 0x8020_0000), "S page from U");
        assert_eq!(t.go(&u, 0x10000, Access::Fetch), Ok(0x8010_0000));
    }

    #[test]
    fn mxr_makes_execute_only_pages_readable() {
        let mut t = TestRam::new();
        t.map(0x8020_0000, 0x8020_0000, 0, PTE_V | PTE_X);
        let mut s = t.regime(S);
        assert_eq!(t.go(&s, 0x8020_0000, Access::Load), pf(Access::Load, 0x8020_0000));
        assert_eq!(t.go(&s, 0x8020_0000, Access::Fetch), Ok(0x8020_0000));
        s.mxr = true;
        assert_eq!(t.go(&s, 0x8020_0000, Access::Load), Ok(0x8020_0000));
        assert_eq!(t.go(&s, 0x8020_0000, Access::Store), pf(Access::Store, 0x8020_0000), "MXR is loads only");
    }

    #[test]
    fn reserved_encodings_fault() {
        let mut t = TestRam::new();
        let r = t.regime(S);
        t.map(0x1000, 0x8010_0000, 0, PTE_V | PTE_W);
        assert_eq!(t.go(&r, 0x1000, Access::Load), pf(Access::Load, 0x1000), "W without R");
        t.map(0x2000, 0x8010_0000, 0, RWX | (1 << 61));
        assert_eq!(t.go(&r, 0x2000, Access::Load), pf(Access::Load, 0x2000), "PBMT without Svpbmt");
        // A pointer PTE at level 0 has no next level.
        t.map(0x3000, 0x8010_0000, 0, PTE_V);
        assert_eq!(t.go(&r, 0x3000, Access::Load), pf(Access::Load, 0x3000));
        // A pointer PTE with A set (reserved in non-leaf PTEs).
        t.map(0x4000_0000, 0x8010_0000, 2, PTE_V | PTE_A);
        assert_eq!(t.go(&r, 0x4000_0000, Access::Load), pf(Access::Load, 0x4000_0000));
    }

    #[test]
    fn non_canonical_addresses_fault() {
        let mut t = TestRam::new();
        t.map(0xffff_ffff_ffff_f000, 0x8010_0000, 0, RWX);
        let r = t.regime(S);
        assert_eq!(t.go(&r, 0xffff_ffff_ffff_f008, Access::Fetch), Ok(0x8010_0008), "top page");
        assert_eq!(t.go(&r, 0x0000_0040_0000_0000, Access::Load), pf(Access::Load, 0x40_0000_0000));
        assert_eq!(t.go(&r, 0x7fff_ffff_ffff_f000, Access::Load), pf(Access::Load, 0x7fff_ffff_ffff_f000));
        assert!(canonical(0xffff_ffc0_0000_0000) && !canonical(0xffff_ff80_0000_0000));
    }

    #[test]
    fn accessed_and_dirty_are_set_by_the_walk() {
        let mut t = TestRam::new();
        let at = t.map(0x10000, 0x8010_0000, 0, RWX | PTE_U);
        let u = t.regime(U);
        t.go(&u, 0x10000, Access::Load).unwrap();
        assert_eq!(t.pte(at) & (PTE_A | PTE_D), PTE_A, "a load sets A only");
        t.go(&u, 0x10000, Access::Store).unwrap();
        assert_eq!(t.pte(at) & (PTE_A | PTE_D), PTE_A | PTE_D, "a store sets D");
        // A faulting access changes nothing.
        let at = t.map(0x20000, 0x8010_0000, 0, PTE_V | PTE_R | PTE_U);
        assert!(t.go(&u, 0x20000, Access::Store).is_err());
        assert_eq!(t.pte(at) & (PTE_A | PTE_D), 0);
    }

    #[test]
    fn page_table_outside_ram_is_an_access_fault() {
        let mut t = TestRam::new();
        let r = Regime { satp: (SATP_MODE_SV39 << 60) | 0x1000, ..t.regime(S) };
        assert_eq!(t.go(&r, 0x5000, Access::Store), Err(Fault { cause: trap::STORE_ACCESS_FAULT, tval: 0x5000 }));
        assert_eq!(t.go(&r, 0x5000, Access::Fetch), Err(Fault { cause: trap::INSTRUCTION_ACCESS_FAULT, tval: 0x5000 }));
    }

    #[test]
    fn satp_fields() {
        let satp = (8u64 << 60) | (7 << 44) | 0x80400;
        assert_eq!((satp_mode(satp), satp_asid(satp)), (8, 7));
        assert!(satp_mode_supported(0) && satp_mode_supported(8));
        assert!(!satp_mode_supported(9) && !satp_mode_supported(10));
        assert_eq!(page_fault_name(13), Some("load page fault"));
    }
}
