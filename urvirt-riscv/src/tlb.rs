//! The software TLB's bookkeeping: which guest-virtual pages the engine has mapped natively in
//! our own address space, with which host protection, and what each guest event takes away.
//!
//! A guest access to a page that is not mapped natively faults (SIGSEGV); the engine walks the
//! guest's page table ([`crate::mmu`]), records the page here ([`Tlb::fill`]) and maps the
//! guest-physical frame of the memfd at the guest-virtual address with [`Entry::prot`]. Later
//! accesses run natively. This module decides; the engine does the `mmap`/`mprotect` calls it
//! is told to through a callback, so every rule is unit-tested on any host.
//!
//! The rules (privileged spec, "Supervisor Memory-Management Fence Instruction"):
//! - `sfence.vma x0, x0`: every entry. `sfence.vma x0, rs2`: the entries of ASID rs2 except
//!   global ones. `sfence.vma rs1, x0`: the entries of the leaf that maps rs1 (a superpage's
//!   every 4 KiB piece), global or not. `sfence.vma rs1, rs2`: that leaf in ASID rs2, except
//!   global. An rs1 that is not a valid virtual address makes the instruction do nothing.
//! - A `satp` write that changes it: our one host address space can hold only the current
//!   address space, so every entry goes except global ones (a real hart may keep more; dropping
//!   entries early is always allowed). A switch to or from Bare drops everything.
//! - A switch between virtual S and U mode, or a change of `sstatus.SUM`/`MXR`, changes what
//!   each page allows: U pages are closed to S without SUM, S pages are closed to U, S never
//!   executes U pages. [`Tlb::set_regime`] recomputes each entry's protection and reports the
//!   ones that changed.
//! - A page that is writable but not dirty (PTE.D = 0) is mapped without write, so the first
//!   store faults, and the walk sets D before the page is mapped writable.
use crate::hart::Access;
use crate::mmu::{self, Leaf, Regime, PAGE_SIZE, PTE_D};
use std::collections::BTreeMap;

/// Host protection as PROT_READ (1), PROT_WRITE (2), PROT_EXEC (4) bits; 0 is PROT_NONE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prot(pub u8);

impl Prot {
    pub const NONE: Prot = Prot(0);
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const EXEC: u8 = 4;

    pub const ALL: Prot = Prot(7);

    /// The protection both allow.
    pub fn and(self, other: Prot) -> Prot {
        Prot(self.0 & other.0)
    }

    pub fn allows(self, access: Access) -> bool {
        let bit = match access {
            Access::Load => Self::READ,
            Access::Store => Self::WRITE,
            Access::Fetch => Self::EXEC,
        };
        self.0 & bit != 0
    }
}

/// What a leaf PTE lets the host map for `regime`: the accesses the guest may make that will
/// not need the walker again (a store to a clean page does: it must set D).
pub fn host_prot(pte: u64, regime: &Regime) -> Prot {
    let mut p = 0;
    if mmu::allows(pte, regime, Access::Load) {
        p |= Prot::READ;
    }
    // Host pages cannot be write-only; RISC-V forbids W without R anyway.
    if mmu::allows(pte, regime, Access::Store) && pte & PTE_D != 0 && p & Prot::READ != 0 {
        p |= Prot::WRITE;
    }
    if mmu::allows(pte, regime, Access::Fetch) {
        p |= Prot::EXEC;
    }
    Prot(p)
}

/// One natively mapped 4 KiB page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The guest-physical page it maps.
    pub pa: u64,
    /// The leaf it came from (for sfence.vma by address on a superpage).
    pub leaf: Leaf,
    pub asid: u16,
    pub prot: Prot,
    /// The most the host may allow for this page, whatever the PTE says (the engine runs no
    /// guest code natively outside RAM under the seccomp ecall filter).
    pub max: Prot,
}

/// What the engine must do to one page: map it (again) with this protection, or drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Map { va: u64, pa: u64, prot: Prot },
    Protect { va: u64, prot: Prot },
    Drop { va: u64 },
}

/// Counters for `--stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub fills: u64,
    pub flushes: u64,
    pub dropped: u64,
    pub reprotected: u64,
}

/// The natively mapped pages, keyed by guest-virtual page address.
#[derive(Debug, Default)]
pub struct Tlb {
    entries: BTreeMap<u64, Entry>,
    regime: Option<Regime>,
    /// More than this many pages and a fill flushes everything first: it bounds the work a
    /// mode switch does.
    capacity: usize,
    pub counts: Counts,
}

impl Tlb {
    pub fn new(capacity: usize) -> Self {
        Tlb { entries: BTreeMap::new(), regime: None, capacity, counts: Counts::default() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, va: u64) -> Option<&Entry> {
        self.entries.get(&(va & !(PAGE_SIZE - 1)))
    }

    /// Records the page holding `va`, translated through `leaf` in `regime`, and says how to
    /// map it, allowing at most `max`. Returns None if that would not allow `access` (the
    /// caller then interprets the access instead of looping on the same fault).
    pub fn fill(
        &mut self,
        va: u64,
        leaf: Leaf,
        regime: &Regime,
        access: Access,
        max: Prot,
        apply: &mut impl FnMut(Change),
    ) -> Option<Prot> {
        self.set_regime(regime, apply);
        let prot = host_prot(leaf.pte, regime).and(max);
        if !prot.allows(access) {
            return None;
        }
        let page = va & !(PAGE_SIZE - 1);
        if !self.entries.contains_key(&page) && self.entries.len() >= self.capacity {
            self.flush_where(|_| true, apply);
        }
        let pa = leaf.pa + (page - leaf.va);
        self.entries.insert(page, Entry { pa, leaf, asid: mmu::satp_asid(regime.satp), prot, max });
        self.counts.fills += 1;
        apply(Change::Map { va: page, pa, prot });
        Some(prot)
    }

    fn flush_where(&mut self, mut gone: impl FnMut(&Entry) -> bool, apply: &mut impl FnMut(Change)) {
        self.counts.flushes += 1;
        let before = self.entries.len();
        self.entries.retain(|&va, e| {
            let drop = gone(e);
            if drop {
                apply(Change::Drop { va });
            }
            !drop
        });
        self.counts.dropped += (before - self.entries.len()) as u64;
    }

    /// `sfence.vma`: `va` is rs1's value (None for x0), `asid` rs2's (None for x0).
    pub fn sfence(&mut self, va: Option<u64>, asid: Option<u64>, apply: &mut impl FnMut(Change)) {
        if va.is_some_and(|v| !mmu::canonical(v)) {
            return;
        }
        let asid = asid.map(|a| a as u16);
        self.flush_where(
            |e| {
                let covers = va.is_none_or(|v| v.wrapping_sub(e.leaf.va) < e.leaf.size);
                let in_asid = asid.is_none_or(|a| a == e.asid && !e.leaf.global());
                covers && in_asid
            },
            apply,
        );
    }

    /// A `satp` write from `old` to `new`.
    pub fn satp_written(&mut self, old: u64, new: u64, apply: &mut impl FnMut(Change)) {
        if old == new {
            return;
        }
        let bare_switch = mmu::satp_mode(old) != mmu::satp_mode(new);
        self.flush_where(|e| bare_switch || !e.leaf.global(), apply);
        let asid = mmu::satp_asid(new);
        for e in self.entries.values_mut() {
            e.asid = asid;
        }
        if let Some(r) = &mut self.regime {
            r.satp = new;
        }
    }

    /// The guest's mode, SUM or MXR may have changed: re-protect the pages whose host
    /// protection differs under `regime`; pages that allow nothing now are dropped.
    pub fn set_regime(&mut self, regime: &Regime, apply: &mut impl FnMut(Change)) {
        if self.regime.as_ref() == Some(regime) {
            return;
        }
        self.regime = Some(*regime);
        let mut dropped = 0;
        self.entries.retain(|&va, e| {
            let prot = host_prot(e.leaf.pte, regime).and(e.max);
            if prot == e.prot {
                return true;
            }
            if prot == Prot::NONE {
                apply(Change::Drop { va });
                dropped += 1;
                return false;
            }
            e.prot = prot;
            apply(Change::Protect { va, prot });
            true
        });
        self.counts.dropped += dropped;
        self.counts.reprotected += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hart::Mode;
    use crate::mmu::{PTE_A, PTE_G, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X};

    const SV39: u64 = 8 << 60;

    fn regime(mode: Mode, asid: u64) -> Regime {
        Regime { satp: SV39 | (asid << 44) | 0x80400, mode, sum: false, mxr: false }
    }

    fn leaf(va: u64, size: u64, pte: u64) -> Leaf {
        Leaf { va, pa: 0x8100_0000, size, pte: pte | PTE_V | PTE_A }
    }

    /// Runs `f` with a callback that collects the changes it reports.
    fn changes(f: impl FnOnce(&mut dyn FnMut(Change))) -> Vec<Change> {
        let mut v = Vec::new();
        f(&mut |c| v.push(c));
        v
    }

    const RW: u64 = PTE_R | PTE_W | PTE_D;

    #[test]
    fn prot_follows_mode_sum_mxr_and_dirty() {
        let s = regime(Mode::Supervisor, 0);
        let u = regime(Mode::User, 0);
        assert_eq!(host_prot(PTE_V | RW | PTE_X, &s), Prot(7));
        assert_eq!(host_prot(PTE_V | PTE_R | PTE_W, &s), Prot(Prot::READ), "clean page: no write until D is set");
        assert_eq!(host_prot(PTE_V | RW | PTE_X, &u), Prot::NONE, "S page from U");
        assert_eq!(host_prot(PTE_V | RW | PTE_X | PTE_U, &u), Prot(7));
        assert_eq!(host_prot(PTE_V | RW | PTE_X | PTE_U, &s), Prot::NONE, "U page from S without SUM");
        let sum = Regime { sum: true, ..s };
        assert_eq!(host_prot(PTE_V | RW | PTE_X | PTE_U, &sum), Prot(3), "SUM: read/write, never execute");
        let mxr = Regime { mxr: true, ..s };
        assert_eq!(host_prot(PTE_V | PTE_X, &mxr), Prot(Prot::READ | Prot::EXEC));
    }

    #[test]
    fn fill_maps_the_frame_and_refuses_what_it_cannot_allow() {
        let mut t = Tlb::new(64);
        let s = regime(Mode::Supervisor, 1);
        let l = leaf(0x8020_0000, 2 << 20, RW);
        let c =
            changes(|a| assert_eq!(t.fill(0x8030_0123, l, &s, Access::Store, Prot::ALL, &mut |x| a(x)), Some(Prot(3))));
        assert_eq!(c, [Change::Map { va: 0x8030_0000, pa: 0x8110_0000, prot: Prot(3) }], "piece of a megapage");
        let clean = leaf(0x10000, PAGE_SIZE, PTE_R | PTE_W);
        assert_eq!(t.fill(0x10000, clean, &s, Access::Store, Prot::ALL, &mut |_| {}), None, "a store to a clean page");
        assert_eq!(t.len(), 1);
        assert_eq!(t.counts.fills, 1);
    }

    fn filled() -> Tlb {
        let mut t = Tlb::new(64);
        let s = regime(Mode::Supervisor, 1);
        t.fill(0x1000, leaf(0x1000, PAGE_SIZE, RW), &s, Access::Load, Prot::ALL, &mut |_| {});
        t.fill(0x2000, leaf(0x2000, PAGE_SIZE, RW | PTE_G), &s, Access::Load, Prot::ALL, &mut |_| {});
        t.fill(0x20_0000, leaf(0x20_0000, 2 << 20, RW), &s, Access::Load, Prot::ALL, &mut |_| {});
        t.fill(0x20_1000, leaf(0x20_0000, 2 << 20, RW), &s, Access::Load, Prot::ALL, &mut |_| {});
        t
    }

    fn dropped(c: &[Change]) -> Vec<u64> {
        c.iter().filter_map(|c| if let Change::Drop { va } = c { Some(*va) } else { None }).collect()
    }

    #[test]
    fn sfence_by_address_takes_the_whole_leaf_global_or_not() {
        let mut t = filled();
        let c = changes(|a| t.sfence(Some(0x20_1234), None, &mut |x| a(x)));
        assert_eq!(dropped(&c), [0x20_0000, 0x20_1000], "both pieces of the megapage");
        let c = changes(|a| t.sfence(Some(0x2000), None, &mut |x| a(x)));
        assert_eq!(dropped(&c), [0x2000], "global too");
        let c = changes(|a| t.sfence(Some(0x4000_0000_0000), None, &mut |x| a(x)));
        assert!(c.is_empty(), "an invalid address does nothing");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn sfence_by_asid_spares_global_and_other_asids() {
        let mut t = filled();
        assert!(changes(|a| t.sfence(None, Some(2), &mut |x| a(x))).is_empty(), "another ASID");
        let c = changes(|a| t.sfence(None, Some(1), &mut |x| a(x)));
        assert_eq!(dropped(&c), [0x1000, 0x20_0000, 0x20_1000]);
        let c = changes(|a| t.sfence(Some(0x2000), Some(1), &mut |x| a(x)));
        assert!(c.is_empty(), "a global page survives an ASID-specific fence");
        let c = changes(|a| t.sfence(None, None, &mut |x| a(x)));
        assert_eq!(dropped(&c), [0x2000], "x0, x0 takes everything");
        assert!(t.is_empty());
    }

    #[test]
    fn satp_write_keeps_only_global_and_bare_drops_all() {
        let mut t = filled();
        let (old, new) = (regime(Mode::Supervisor, 1).satp, regime(Mode::Supervisor, 2).satp);
        assert!(changes(|a| t.satp_written(old, old, &mut |x| a(x))).is_empty(), "unchanged satp");
        let c = changes(|a| t.satp_written(old, new, &mut |x| a(x)));
        assert_eq!(dropped(&c), [0x1000, 0x20_0000, 0x20_1000]);
        assert_eq!(t.get(0x2000).unwrap().asid, 2);
        let c = changes(|a| t.satp_written(new, 0, &mut |x| a(x)));
        assert_eq!(dropped(&c), [0x2000], "to Bare");
    }

    #[test]
    fn mode_switch_reprotects_user_and_supervisor_pages() {
        let mut t = Tlb::new(64);
        let u = regime(Mode::User, 1);
        let s = regime(Mode::Supervisor, 1);
        let s_sum = Regime { sum: true, ..s };
        t.fill(0x10000, leaf(0x10000, PAGE_SIZE, RW | PTE_X | PTE_U), &u, Access::Fetch, Prot::ALL, &mut |_| {});
        let c = changes(|a| {
            t.fill(0x8020_0000, leaf(0x8020_0000, PAGE_SIZE, RW | PTE_X), &s_sum, Access::Fetch, Prot::ALL, &mut |x| {
                a(x)
            })
            .map(|_| ())
            .unwrap()
        });
        assert_eq!(
            c,
            [
                Change::Protect { va: 0x10000, prot: Prot(3) },
                Change::Map { va: 0x8020_0000, pa: 0x8100_0000, prot: Prot(7) }
            ],
            "S with SUM: the U page loses exec"
        );
        let c = changes(|a| t.set_regime(&u, &mut |x| a(x)));
        assert_eq!(
            c,
            [Change::Protect { va: 0x10000, prot: Prot(7) }, Change::Drop { va: 0x8020_0000 }],
            "U: the U page gets exec back, the S page is closed"
        );
        let c = changes(|a| t.set_regime(&s, &mut |x| a(x)));
        assert_eq!(c, [Change::Drop { va: 0x10000 }], "S without SUM: the U page closes");
        assert!(changes(|a| t.set_regime(&s, &mut |x| a(x))).is_empty(), "no change, no work");
    }

    #[test]
    fn the_engine_can_withhold_execute() {
        let mut t = Tlb::new(64);
        let u = regime(Mode::User, 1);
        let l = leaf(0x4000_0000, PAGE_SIZE, RW | PTE_X | PTE_U);
        let no_exec = Prot(Prot::READ | Prot::WRITE);
        assert_eq!(
            t.fill(0x4000_0000, l, &u, Access::Fetch, no_exec, &mut |_| {}),
            None,
            "a fetch must be interpreted"
        );
        assert_eq!(t.fill(0x4000_0000, l, &u, Access::Load, no_exec, &mut |_| {}), Some(no_exec));
        let s = Regime { sum: true, ..regime(Mode::Supervisor, 1) };
        assert!(changes(|a| t.set_regime(&s, &mut |x| a(x))).is_empty(), "still read/write: no change");
        assert!(changes(|a| t.set_regime(&u, &mut |x| a(x))).is_empty(), "and back in U still no exec");
    }

    #[test]
    fn capacity_bounds_the_entries() {
        let mut t = Tlb::new(2);
        let s = regime(Mode::Supervisor, 0);
        for va in [0x1000, 0x2000, 0x3000] {
            t.fill(va, leaf(va, PAGE_SIZE, RW), &s, Access::Load, Prot::ALL, &mut |_| {});
        }
        assert_eq!(t.len(), 1, "the third fill flushed the first two");
        assert_eq!((t.counts.flushes, t.counts.dropped), (1, 2));
    }
}
