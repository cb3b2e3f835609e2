//! (c) Sv39: a U-mode system call round trip through a paged guest kernel, and a first-touch
//! page fault.
//!
//! The guest is an rCore-style minimal kernel: its trap entry and exit live in a trampoline
//! page at the top of both address spaces (so URVirt interprets them: no Linux process can
//! map that address), and every round trip switches `satp` to the kernel's table and back
//! with `sfence.vma` after each switch, as those kernels do. The user task (at 4 GiB) makes
//! N `ecall`s and times them with `rdtime`. Before that the kernel stores to M fresh pages
//! (mapped with A and D set), one first-touch fault each. The page tables are built here, in
//! guest RAM, between loading the guest and running it. Signals per round trip come from the
//! run's own statistics: the difference between runs with 2N and N calls, divided by N.
use super::*;
use crate::loader::RAM_BASE;
use crate::mmu::{PTE_A, PTE_D, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X};

const CALLS: u64 = 500;
const TOUCH_PAGES: u64 = 256;
const PAGED_ROUNDS: usize = 5;
/// Scratch the trampoline uses as its "stack", and where the host leaves the two satp values
/// and the page count (offset in RAM, guest physical 0x80180000).
const SCRATCH_OFFSET: usize = 0x18_0000;
/// Where the page tables go (offset in RAM).
const TABLES_OFFSET: usize = 0x30_0000;
const TOUCH_VA: u64 = 0x4000_0000;
const TOUCH_PA: u64 = 0x8100_0000;
const TRAMPOLINE_VA: u64 = 0xffff_ffff_ffff_f000;
/// The user task's code, its data page after it. Not 0x10000, where a static riscv64 vmm
/// sits: there it would be interpreted, and this measures the native round trip.
const USER_VA: u64 = 0x1_0000_0000;

/// At 0x80200000: stvec = trampoline; satp = kernel; sfence.vma; store to TOUCH_PAGES pages
/// at 0x40000000 timed with rdtime (ticks to 0x80100008); sscratch = scratch;
/// sepc = USER_VA; scounteren = TM; clear SPP; satp = user; sfence.vma; sret.
const KERNEL: [u32; 40] = [
    0xfffff2b7, 0x10529073, 0x00001337, 0x0033031b, 0x01331313, 0x01033283, 0x18029073, 0x12000073, 0x02033383,
    0x40000337, 0x00001e37, 0xc0102973, 0x00033023, 0x01c30333, 0xfff38393, 0xfe039ae3, 0xc01029f3, 0x412989b3,
    0x000012b7, 0x8012829b, 0x01429293, 0x0132b423, 0x000012b7, 0x0032829b, 0x01329293, 0x14029073, 0x0010029b,
    0x02029293, 0x14129073, 0x00200293, 0x10629073, 0x10000293, 0x1002b073, 0x00001337, 0x0033031b, 0x01331313,
    0x01833283, 0x18029073, 0x12000073, 0x10200073,
];
/// At 0x80201000, mapped at the top: csrrw sp, sscratch, sp; save t0/t1; satp = kernel;
/// sfence.vma; exit (a7 = 93) -> SRST shutdown; else sepc += 4; satp = user; sfence.vma;
/// restore t0/t1; csrrw sp, sscratch, sp; sret.
const TRAMPOLINE: [u32; 24] = [
    0x14011173, 0x00513023, 0x00613423, 0x01013283, 0x18029073, 0x12000073, 0x05d00313, 0x02688663, 0x141022f3,
    0x00428293, 0x14129073, 0x01813283, 0x18029073, 0x12000073, 0x00013283, 0x00813303, 0x14011173, 0x10200073,
    0x535258b7, 0x3548889b, 0x00000813, 0x00000513, 0x00000593, 0x00000073,
];
/// At 0x80202000, mapped at USER_VA: N = [USER_VA + 0x1010]; rdtime; N x (li a7, 124; ecall);
/// rdtime; ticks to [USER_VA + 0x1000] (guest physical 0x80100000); exit.
const USER: [u32; 17] = [
    0x001002b7, 0x0012829b, 0x00c29293, 0x0102b403, 0xc0102973, 0x07c00893, 0x00000073, 0xfff40413, 0xfe041ae3,
    0xc01029f3, 0x412989b3, 0x001002b7, 0x0012829b, 0x00c29293, 0x0132b023, 0x05d00893, 0x00000073,
];

/// Sv39 tables built in guest RAM by a bump allocator.
struct Tables<'a> {
    ram: &'a mut [u8],
    next: usize,
}

impl Tables<'_> {
    fn alloc(&mut self) -> u64 {
        let off = self.next;
        self.next += 4096;
        self.ram[off..off + 4096].fill(0);
        RAM_BASE + off as u64
    }

    fn entry(&mut self, table: u64, va: u64, level: u32) -> usize {
        (table - RAM_BASE) as usize + (((va >> (12 + 9 * level)) & 0x1ff) * 8) as usize
    }

    fn map(&mut self, root: u64, va: u64, pa: u64, level: u32, flags: u64) {
        let mut table = root;
        for l in (level + 1..3).rev() {
            let at = self.entry(table, va, l);
            let pte = u64::from_le_bytes(self.ram[at..at + 8].try_into().unwrap());
            table = if pte & PTE_V != 0 {
                (pte >> 10) << 12
            } else {
                let t = self.alloc();
                self.ram[at..at + 8].copy_from_slice(&(((t >> 12) << 10) | PTE_V).to_le_bytes());
                t
            };
        }
        let at = self.entry(table, va, level);
        self.ram[at..at + 8].copy_from_slice(&(((pa >> 12) << 10) | flags | PTE_V).to_le_bytes());
    }
}

fn satp(root: u64, asid: u64) -> u64 {
    (8 << 60) | (asid << 44) | (root >> 12)
}

/// Loads the guest, builds its two address spaces, runs it; returns (round-trip ticks,
/// first-touch ticks, signals the run took).
fn run_once(vm: &mut UrvirtVm, calls: u64) -> Result<(u64, u64, u64)> {
    let mut image = vec![0u8; 0x3000];
    for (at, words) in [(0, &KERNEL[..]), (0x1000, &TRAMPOLINE[..]), (0x2000, &USER[..])] {
        for (i, w) in words.iter().enumerate() {
            image[at + 4 * i..at + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
    }
    vm.load(&Image { path: "paged round trip (built in)".into(), bytes: image })?;
    let ram = vm.ram();
    let mut t = Tables { ram, next: TABLES_OFFSET };
    let (kernel, user) = (t.alloc(), t.alloc());
    let (trampoline, user_code) = (RAM_BASE + 0x20_1000, RAM_BASE + 0x20_2000);
    const RWX: u64 = PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
    for mb in (0..128u64).step_by(2) {
        t.map(kernel, RAM_BASE + (mb << 20), RAM_BASE + (mb << 20), 1, RWX);
    }
    for p in 0..TOUCH_PAGES {
        t.map(kernel, TOUCH_VA + p * 4096, TOUCH_PA + p * 4096, 0, PTE_R | PTE_W | PTE_A | PTE_D);
    }
    // The scratch page and the kernel's code: the instructions right after `csrw satp` are
    // fetched through the new table.
    for mb in [0, 2] {
        t.map(user, RAM_BASE + (mb << 20), RAM_BASE + (mb << 20), 1, RWX);
    }
    t.map(user, USER_VA, user_code, 0, PTE_R | PTE_X | PTE_U | PTE_A);
    t.map(user, USER_VA + 0x1000, RAM_BASE + RESULT_OFFSET as u64, 0, PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
    for root in [kernel, user] {
        t.map(root, TRAMPOLINE_VA, trampoline, 0, PTE_R | PTE_X | PTE_A);
    }
    let ram = vm.ram();
    let put = |ram: &mut [u8], at: usize, v: u64| ram[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(ram, SCRATCH_OFFSET + 16, satp(kernel, 0));
    put(ram, SCRATCH_OFFSET + 24, satp(user, 1));
    put(ram, SCRATCH_OFFSET + 32, TOUCH_PAGES);
    put(ram, RESULT_OFFSET + 16, calls);
    vm.flush_icache();
    let outcome = vm.run()?;
    if outcome.exit != GuestExit::PowerOff(0) {
        let traps = outcome.stats.table().replace('\n', "; ");
        return Err(Error::guest(format!("paged benchmark guest ended with {:?} (traps: {traps})", outcome.exit)));
    }
    let signals =
        ["trap from u-mode", "trap from s-mode"].iter().filter_map(|k| outcome.stats.get(k)).map(|e| e.count).sum();
    let ram = vm.ram();
    let word = |at: usize| u64::from_le_bytes(ram[at..at + 8].try_into().unwrap());
    Ok((word(RESULT_OFFSET), word(RESULT_OFFSET + 8), signals))
}

/// Appends (c) to the report; `raw_us` is (a)'s raw SIGSYS round trip from the same run.
pub fn report(ecall_trap: EcallTrap, raw_us: f64, out: &mut String) -> Result<()> {
    let freq = crate::fdt::host_timebase_frequency() as u64;
    let per = |ticks: u64, n: u64| ticks_to_duration(ticks, freq).as_secs_f64() * 1e6 / n as f64;
    let mut vm = new_vm(ecall_trap)?;
    let (mut rt_best, mut touch_best) = (u64::MAX, u64::MAX);
    let mut signals = (0, 0);
    for _ in 0..PAGED_ROUNDS {
        let (rt, touch, once) = run_once(&mut vm, CALLS)?;
        let (_, _, twice) = run_once(&mut vm, 2 * CALLS)?;
        (rt_best, touch_best, signals) = (rt_best.min(rt), touch_best.min(touch), (once, twice));
    }
    let rt_us = per(rt_best, CALLS);
    let per_call = signals.1.saturating_sub(signals.0) as f64 / CALLS as f64;
    let _ = writeln!(out, "(c) Sv39 paged guest kernel (trampoline at the top, satp switch + sfence.vma both ways), best of {PAGED_ROUNDS} runs");
    let _ = writeln!(
        out,
        "U-mode syscall round trip  {CALLS:>10} calls  {rt_us:>9.2} us/call  {per_call:>5.2} signals/call"
    );
    let _ = writeln!(out, "  round trip / raw SIGSYS  {:>10.2}x", rt_us / raw_us);
    let _ = writeln!(
        out,
        "first-touch page fault     {TOUCH_PAGES:>10} pages  {:>9.2} us/page",
        per(touch_best, TOUCH_PAGES)
    );
    Ok(())
}
