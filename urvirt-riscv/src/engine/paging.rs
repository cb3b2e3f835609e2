//! Sv39 in the engine: the host side of the software TLB, and the interpreter for what
//! cannot run natively.
//!
//! With `satp = Bare` guest RAM is mapped at its physical address and nothing here runs. When
//! the guest turns Sv39 on, the identity window goes (replaced by a PROT_NONE reservation) and
//! the guest's lower half is filled lazily: a guest access faults (SIGSEGV), [`Paging::on_fault`]
//! walks the guest's page table and maps the 4 KiB memfd page of the guest-physical frame at
//! the guest-virtual address with the protection [`crate::tlb`] computes, so the access and
//! later ones run natively. After every handled trap, [`Paging::sync`] brings the host
//! mappings in line with the guest's satp, sfence.vma, mode, SUM and MXR.
//!
//! What cannot be mapped natively is interpreted ([`crate::interp`]): the upper half (host
//! kernel addresses: the trampoline, trap contexts, kernel stacks), and any guest-virtual page
//! that is not inside the ranges the engine reserved for the guest (where the monitor itself
//! lives). The monitor's own accesses to guest memory always go through its separate view of
//! RAM ([`crate::vmem::Virt`]), never through guest-virtual host addresses.
use crate::decode;
use crate::hart::{Access, Action, Handled, Hart};
use crate::interp::{self, Interp, Stop};
use crate::mmu::{self, Regime, PAGE_SIZE};
use crate::platform::{GuestRam, Platform};
use crate::tlb::{Change, Prot, Tlb};
use std::collections::HashMap;
use std::os::fd::RawFd;

/// Enough natively mapped pages for a teaching kernel's working set; more and the TLB starts
/// over, which bounds the work of a mode switch.
const TLB_CAPACITY: usize = 2048;
/// Instructions a handler interprets before letting the guest (and the timer) run again.
const INTERPRET_BUDGET: usize = 1024;
const FAULT_KIND: &str = "sigsegv page fault";

pub struct Paging {
    pub tlb: Tlb,
    pub interp: Interp,
    host: Host,
    ram_base: u64,
    ram_size: u64,
    /// Guest-virtual ranges [start, end) the engine reserved (PROT_NONE) for the guest, sorted:
    /// only there may guest pages be mapped natively.
    mappable: Vec<(u64, u64)>,
    /// Whether RAM is mapped at its physical address (Bare).
    identity: bool,
    /// Whether guest code may run natively outside RAM. Not under the seccomp ecall filter,
    /// which only traps ecalls made from inside RAM: guest code elsewhere is interpreted, so
    /// none of its ecalls can reach the host kernel.
    pub exec_outside_ram: bool,
    /// Instructions interpreted, and the traps they took from virtual U and S mode, for --stats.
    pub interpreted: u64,
    pub interpreted_traps: [u64; 2],
    /// Faults and interpreter runs at lower-half addresses that are not the guest's on this
    /// host (the monitor's, or beyond what an Sv39-only host lets us reserve), for --stats.
    pub foreign_lower_half: u64,
}

/// How many dropped pages stay mapped PROT_NONE; beyond that a dropped page goes back to the
/// plain reservation (bounded memory here, and a bounded number of host mappings).
const RESIDENT_LIMIT: usize = 4096;

/// The host side of the TLB's changes. A dropped page stays mapped, PROT_NONE, and remembers
/// its frame: kernels that flush everything on every satp switch refill the same pages over
/// and over, and an mprotect is much cheaper than mapping the memfd page again.
struct Host {
    memfd: RawFd,
    ram_base: u64,
    /// Guest-virtual page -> guest-physical frame of the memfd page mapped there now.
    resident: HashMap<u64, u64>,
    /// Host calls that failed: a page that did not get mapped faults again and is interpreted.
    errors: u64,
}

impl Host {
    fn apply(&mut self, c: Change) {
        let ok = match c {
            Change::Map { va, pa, prot } if self.resident.get(&va) == Some(&pa) => protect(va, prot),
            Change::Map { va, pa, prot } => {
                // SAFETY: `va` is a page inside a range we reserved for the guest (the caller
                // checked); MAP_FIXED replaces only our reservation or an earlier guest page.
                let p = unsafe {
                    libc::mmap(
                        va as *mut libc::c_void,
                        PAGE_SIZE as usize,
                        prot.0 as libc::c_int,
                        libc::MAP_SHARED | libc::MAP_FIXED,
                        self.memfd,
                        (pa - self.ram_base) as libc::off_t,
                    )
                };
                let ok = p as u64 == va;
                if ok && self.resident.len() < RESIDENT_LIMIT {
                    self.resident.insert(va, pa);
                }
                ok
            }
            Change::Protect { va, prot } => protect(va, prot),
            Change::Drop { va } if self.resident.contains_key(&va) => protect(va, Prot::NONE),
            Change::Drop { va } => reserve(va, PAGE_SIZE),
        };
        if !ok {
            self.errors += 1;
        }
    }
}

fn protect(va: u64, prot: Prot) -> bool {
    // SAFETY: only guest pages we mapped are re-protected.
    unsafe { libc::mprotect(va as *mut libc::c_void, PAGE_SIZE as usize, prot.0 as libc::c_int) == 0 }
}

fn within(ranges: &[(u64, u64)], va: u64) -> bool {
    ranges.iter().any(|&(s, e)| (s..e).contains(&va))
}

/// Puts a PROT_NONE reservation over `[va, va + len)`, which is ours (a guest page or RAM).
fn reserve(va: u64, len: u64) -> bool {
    super::memory::reserve_none(va, len, super::memory::Placement::Replace)
}

impl Paging {
    /// `mappable`: the guest-virtual ranges reserved for the guest besides RAM itself.
    pub fn new(memfd: RawFd, ram_base: u64, ram_size: u64, mut mappable: Vec<(u64, u64)>) -> Self {
        mappable.push((ram_base, ram_base + ram_size));
        mappable.sort();
        Paging {
            tlb: Tlb::new(TLB_CAPACITY),
            interp: Interp::default(),
            host: Host { memfd, ram_base, resident: HashMap::new(), errors: 0 },
            ram_base,
            ram_size,
            mappable,
            identity: true,
            exec_outside_ram: false,
            interpreted: 0,
            interpreted_traps: [0; 2],
            foreign_lower_half: 0,
        }
    }

    /// The run is over: every guest page goes and RAM is back at its physical address, so
    /// the next run (a benchmark loads the same VM again) starts in Bare.
    pub fn finish(&mut self) {
        self.tlb.sfence(None, None, &mut |c| self.host.apply(c));
        self.set_identity(true);
    }

    /// Host calls that failed (see [`Host`]).
    pub fn host_errors(&self) -> u64 {
        self.host.errors
    }

    /// Whether guest-virtual `va` can be mapped natively right now.
    pub fn native(&self, va: u64) -> bool {
        within(&self.mappable, va)
    }

    /// Brings the host mappings in line after a trap that started in `before` and ran the
    /// instruction `raw` (0 if none): satp writes, sfence.vma, mode/SUM/MXR changes.
    pub fn sync(&mut self, before: &Regime, raw: u32, hart: &Hart) {
        let now = Regime::of(hart);
        if now.satp != before.satp {
            self.tlb.satp_written(before.satp, now.satp, &mut |c| self.host.apply(c));
            self.set_identity(!now.paging());
        }
        if let decode::Insn::SfenceVma { rs1, rs2 } = decode::decode(raw).insn {
            let va = (rs1 != 0).then(|| hart.x[rs1]);
            let asid = (rs2 != 0).then(|| hart.x[rs2]);
            self.tlb.sfence(va, asid, &mut |c| self.host.apply(c));
        }
        if now.paging() {
            self.tlb.set_regime(&now, &mut |c| self.host.apply(c));
        }
    }

    /// Bare maps RAM at its physical address; Sv39 takes that window away, for the TLB to fill.
    fn set_identity(&mut self, on: bool) {
        if on == self.identity {
            return;
        }
        self.identity = on;
        let ok = if on {
            // SAFETY: the RAM window is ours (reserved or guest pages); MAP_FIXED replaces it.
            let p = unsafe {
                libc::mmap(
                    self.ram_base as *mut libc::c_void,
                    self.ram_size as usize,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    self.host.memfd,
                    0,
                )
            };
            // The window's pages are RAM's again, whatever was mapped there before.
            self.host.resident.retain(|&va, _| !(self.ram_base..self.ram_base + self.ram_size).contains(&va));
            p as u64 == self.ram_base
        } else {
            let range = self.ram_base..self.ram_base + self.ram_size;
            self.host.resident.retain(|va, _| !range.contains(va));
            reserve(self.ram_base, self.ram_size)
        };
        if !ok {
            self.host.errors += 1;
        }
    }

    /// A native access to `addr` faulted with paging on. Maps the page if the guest's tables
    /// allow the access, delivers the page fault if they do not; `None` means the address
    /// cannot be mapped natively (or is a device's) and the access must be interpreted.
    pub fn on_fault(&mut self, hart: &mut Hart, ram: &mut GuestRam, addr: u64, access: Access) -> Option<Handled> {
        if !self.native(addr) {
            if addr < 1 << 38 {
                self.foreign_lower_half += 1;
            }
            return None;
        }
        let regime = Regime::of(hart);
        match mmu::translate(ram, &regime, addr, access) {
            Err(f) => Some(mmu::raise(hart, f, FAULT_KIND)),
            // A load or store to a device (MMIO through a guest mapping): never mapped, each
            // access is interpreted onto the device bus, which also turns an address no device
            // claims into the access fault.
            Ok(t) if ram.range(t.pa, 1).is_none() && access != Access::Fetch => None,
            Ok(t) if ram.range(t.pa, 1).is_none() => {
                Some(mmu::raise(hart, mmu::access_fault(access, addr), FAULT_KIND))
            }
            Ok(t) => {
                let leaf = t.leaf?;
                let in_ram = (self.ram_base..self.ram_base + self.ram_size).contains(&addr);
                let max = if self.exec_outside_ram || in_ram { Prot::ALL } else { Prot(Prot::READ | Prot::WRITE) };
                let mut apply = |c| self.host.apply(c);
                let filled = self.tlb.fill(addr, leaf, &regime, access, max, &mut apply);
                filled.map(|_| Handled { kind: "sigsegv tlb fill", action: Action::Resume })
            }
        }
    }

    /// Interprets the one instruction at `hart.pc`, whatever its addresses: a fault the TLB
    /// could not turn into a native mapping (say, a load from an execute-only page with MXR)
    /// would otherwise come straight back.
    pub fn step_one(&mut self, hart: &mut Hart, platform: &mut dyn Platform) -> Option<Handled> {
        let before = Regime::of(hart);
        let raw = interp::fetch(hart, &mut crate::vmem::Virt::of(platform, before)).map_or(0, |(raw, _)| raw);
        self.interpreted += 1;
        match interp::step(hart, platform, &mut self.interp) {
            interp::Step::Done => None,
            interp::Step::Handled(h) => {
                self.interpreted_traps[(before.mode == crate::hart::Mode::User) as usize] += 1;
                self.sync(&before, raw, hart);
                Some(h)
            }
            interp::Step::Native => Some(Handled {
                kind: "interp unsupported",
                action: Action::Fail(format!(
                    "guest instruction at pc {:#x} faulted natively and cannot be interpreted (floating point or unknown)",
                    hart.pc
                )),
            }),
        }
    }

    /// Interprets from `hart.pc` until the guest can run natively again, or it took a trap
    /// (the TLB brought in sync), or [`INTERPRET_BUDGET`] instructions ran: then the caller
    /// polls the timer and the run's end, and calls again if the pc is still not native.
    pub fn interpret(&mut self, hart: &mut Hart, platform: &mut dyn Platform) -> Option<Handled> {
        if hart.pc < 1 << 38 && !self.native(hart.pc) {
            self.foreign_lower_half += 1;
        }
        let before = Regime::of(hart);
        let from_user = hart.mode == crate::hart::Mode::User;
        let (ranges, paging) = (&self.mappable, before.paging());
        let native = |va: u64| paging && within(ranges, va);
        let (stop, n) = interp::run_until_native(hart, platform, &mut self.interp, INTERPRET_BUDGET, native);
        self.interpreted += n as u64;
        match stop {
            Stop::Native if !self.native(hart.pc) => {
                let why = format!(
                    "guest instruction at pc {:#x} can neither run natively (the address is not the guest's on this host) nor be interpreted (floating point or unknown)",
                    hart.pc
                );
                Some(Handled { kind: "interp unsupported", action: Action::Fail(why) })
            }
            Stop::Native | Stop::Budget => None,
            Stop::Handled(h, raw) => {
                // Traps end runs, so the mode at the start of this run is the trap's.
                self.interpreted_traps[from_user as usize] += 1;
                self.sync(&before, raw, hart);
                // Not done yet: an interpreted fence.i should flush the host's instruction cache
                // (code written by interpreted stores, then run natively). QEMU keeps them
                // coherent; real hardware may not.
                self.interp.fence_i = false;
                Some(h)
            }
        }
    }
}
