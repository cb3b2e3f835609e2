//! The gdbstub target over a stopped URVirt guest: its hart's registers, its memory, and the
//! breakpoints and resume requests the run loop ([`super::engine`]) acts on.
//!
//! Only ever used between two runs of the guest, on the guest thread outside any handler:
//! the hart in [`RunState`] is then the whole truth about the guest's registers.
//!
//! Memory: gdb's addresses are guest-virtual when the guest has Sv39 on (translated by the
//! guest's own page tables, [`crate::mmu`], as S-mode with SUM and MXR would see them, so
//! kernel and user pages both read), guest-physical otherwise; `monitor phys` makes them
//! guest-physical always, `monitor virt` goes back. Breakpoints are always at the addresses
//! the guest runs at (virtual with Sv39). Only RAM: gdb never touches a device register (a
//! read can have side effects). A walk sets the A bit as any walk does.
use super::breakpoints::{CodeMem, Owner};
use super::engine::Resume;
use crate::engine::run::RunState;
use crate::hart::{Access, Mode};
use crate::mmu::{self, Regime, PAGE_SIZE};
use crate::platform::GuestRam;
use gdbstub::common::Signal;
use gdbstub::outputln;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::riscv::reg::RiscvCoreRegs;

/// Guest memory as the debugger sees it (see the module docs).
pub struct DebugMem<'a> {
    ram: GuestRam<'a>,
    regime: Regime,
}

impl<'a> DebugMem<'a> {
    /// The stopped guest's memory at the addresses it runs at.
    pub fn of(st: &'a mut RunState) -> Self {
        Self::new(st, false)
    }

    /// The same, or by guest-physical address with `physical`.
    fn new(st: &'a mut RunState, physical: bool) -> Self {
        // SAFETY: the guest is stopped and the monitor's view of RAM is mapped for the whole
        // run; this is the only slice of it while the DebugMem lives (it borrows the RunState).
        let bytes = unsafe { std::slice::from_raw_parts_mut(st.ram_view as *mut u8, st.ram_size as usize) };
        let satp = if physical { 0 } else { st.hart.csrs.satp };
        let regime = Regime { satp, mode: Mode::Supervisor, sum: true, mxr: true };
        DebugMem { ram: GuestRam { base: st.ram_base, bytes }, regime }
    }

    /// The RAM bytes for `[addr, addr + len)`, which does not cross a page.
    fn locate(&mut self, addr: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let t = mmu::translate(&mut self.ram, &self.regime, addr, Access::Load).ok()?;
        self.ram.range(t.pa, len)
    }

    /// Calls `each` with the RAM range of every page's part of `[addr, addr + len)`, stopping
    /// at the first part that is not RAM; returns how many bytes were covered.
    fn pages(&mut self, addr: u64, len: usize, mut each: impl FnMut(&mut [u8], usize)) -> usize {
        let mut done = 0;
        while done < len {
            let at = addr.wrapping_add(done as u64);
            let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(len - done);
            let Some(r) = self.locate(at, n) else { break };
            each(&mut self.ram.bytes[r], done);
            done += n;
        }
        done
    }
}

impl CodeMem for DebugMem<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        self.pages(addr, buf.len(), |ram, at| buf[at..at + ram.len()].copy_from_slice(ram)) == buf.len()
    }
    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
        // Every page first, so a write that cannot be done whole changes nothing.
        let mut probe = vec![0u8; bytes.len()];
        if !self.read(addr, &mut probe) {
            return false;
        }
        self.pages(addr, bytes.len(), |ram, at| ram.copy_from_slice(&bytes[at..at + ram.len()])) == bytes.len()
    }
}

impl Target for RunState {
    type Arch = gdbstub_arch::riscv::Riscv64;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for RunState {
    fn read_registers(&mut self, regs: &mut RiscvCoreRegs<u64>) -> TargetResult<(), Self> {
        regs.x = self.hart.x;
        regs.pc = self.hart.pc;
        Ok(())
    }

    fn write_registers(&mut self, regs: &RiscvCoreRegs<u64>) -> TargetResult<(), Self> {
        // x0 stays zero, whatever gdb sends.
        self.hart.x[1..].copy_from_slice(&regs.x[1..]);
        self.hart.pc = regs.pc;
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let mut mem = DebugMem::new(self, self.debug.physical);
        let n = mem.pages(start, data.len(), |ram, at| data[at..at + ram.len()].copy_from_slice(ram));
        // gdb sees the guest's code, not our ebreaks.
        self.debug.breakpoints.hide(start, &mut data[..n]);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        if !DebugMem::new(self, self.debug.physical).write(start, data) {
            return Err(TargetError::NonFatal);
        }
        crate::engine::memory::flush_icache_range(self.ram_base, self.ram_size);
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for RunState {
    /// gdb's signal is not delivered: a guest kernel has no signals (and a Ctrl-C's SIGINT
    /// is gdb's own business).
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), String> {
        self.debug.resume = Some(Resume::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for RunState {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), String> {
        self.debug.resume = Some(Resume::Step);
        Ok(())
    }
}

impl Breakpoints for RunState {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    /// `hbreak` too: there is no debug trigger to program from U-mode, so a "hardware"
    /// breakpoint is the same ebreak patch (it works in ROM-less RAM, which is all a guest has).
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl RunState {
    fn set_breakpoint(&mut self, addr: u64, on: bool) -> bool {
        let mut bps = std::mem::take(&mut self.debug.breakpoints);
        let done = {
            let mut mem = DebugMem::of(self);
            if on {
                bps.insert(&mut mem, addr, Owner::User)
            } else {
                bps.remove(&mut mem, addr, Owner::User)
            }
        };
        self.debug.breakpoints = bps;
        crate::engine::memory::flush_icache_range(self.ram_base, self.ram_size);
        done
    }
}

impl SwBreakpoint for RunState {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.set_breakpoint(addr, true))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.set_breakpoint(addr, false))
    }
}

impl HwBreakpoint for RunState {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.set_breakpoint(addr, true))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.set_breakpoint(addr, false))
    }
}

/// The same words as the x86 stub's (vmm-x86/src/gdb/target.rs).
impl MonitorCmd for RunState {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), String> {
        outputln!(out, "{}", common::gdb::monitor_command(cmd, &mut self.debug.physical));
        Ok(())
    }
}
