//! The gdbstub `Target` for one KVM vCPU: registers through KVM_GET/SET_REGS, SREGS and FPU,
//! memory through guest RAM (virtual addresses through KVM_TRANSLATE while paging is on, or
//! physical ones after `monitor phys`), `int3` and debug-register breakpoints, continue and step.
use super::breakpoints::{Breakpoints, Patch, Slot, INT3};
use super::regs;
use gdbstub::common::Signal;
use gdbstub::outputln;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{Breakpoints as GdbBreakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps};
use gdbstub::target::ext::breakpoints::{SwBreakpoint, SwBreakpointOps};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const PAGE: u64 = 4096;
/// CR0.PG: paging is on, so gdb's addresses are virtual.
const CR0_PG: u64 = 1 << 31;

/// How the guest runs when gdb resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exec {
    #[default]
    Continue,
    Step,
}

pub struct X86Target {
    /// The vCPU, only while [`super::Debugger`] serves gdb from its run-loop hooks (null
    /// otherwise). A pointer because gdbstub's session keeps its target type for the whole
    /// session while the run loop lends the vCPU out between KVM_RUNs.
    vcpu: *const VcpuFd,
    mem: GuestMemoryMmap,
    pub breakpoints: Breakpoints,
    pub exec: Exec,
    /// `monitor phys`: gdb's addresses are guest physical even with paging on.
    physical: bool,
    /// Software breakpoints take debug registers instead of `int3` (kvm-pvm: see breakpoints.rs).
    sw_in_debug_registers: bool,
}

impl X86Target {
    /// `sw_in_debug_registers`: see breakpoints.rs (true on kvm-pvm).
    pub fn new(mem: GuestMemoryMmap, sw_in_debug_registers: bool) -> X86Target {
        X86Target {
            vcpu: std::ptr::null(),
            mem,
            breakpoints: Breakpoints::default(),
            exec: Exec::default(),
            physical: false,
            sw_in_debug_registers,
        }
    }

    /// Runs `f` with the vCPU in reach of the gdbstub callbacks.
    /// The pointer is reset by a drop guard, so a panic inside `f` cannot leave it dangling.
    pub fn with_vcpu<R>(&mut self, vcpu: &VcpuFd, f: impl FnOnce(&mut X86Target) -> R) -> R {
        /// Clears the target's vCPU pointer when dropped (normal return or unwinding).
        struct Lent<'a>(&'a mut X86Target);
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                self.0.vcpu = std::ptr::null();
            }
        }
        self.vcpu = vcpu;
        let lent = Lent(self);
        f(&mut *lent.0)
    }

    fn vcpu(&self) -> Result<&VcpuFd, String> {
        // SAFETY: non-null only inside `with_vcpu`, whose `&VcpuFd` borrow outlives the call
        // and every use of this reference within it (the callbacks run on the same thread).
        unsafe { self.vcpu.as_ref() }.ok_or_else(|| "no vCPU while the guest runs".to_string())
    }

    /// The guest physical address of `addr`, and how many bytes up to the end of its page.
    fn translate(&self, addr: u64) -> Option<(u64, u64)> {
        let room = PAGE - addr % PAGE;
        if self.physical {
            return Some((addr, room));
        }
        let vcpu = self.vcpu().ok()?;
        let paging = vcpu.get_sregs().ok()?.cr0 & CR0_PG != 0;
        if !paging {
            return Some((addr, room));
        }
        let t = vcpu.translate_gva(addr).ok()?;
        (t.valid != 0).then_some((t.physical_address, room))
    }

    /// Copies guest memory at gdb's address `addr` into or out of `len` bytes, page by page;
    /// `access` gets (guest physical address, offset in the buffer, length). Returns how many
    /// bytes were reachable from the start.
    fn each_page(&self, addr: u64, len: usize, mut access: impl FnMut(u64, usize, usize) -> bool) -> usize {
        let mut done = 0usize;
        while done < len {
            let Some((phys, room)) = self.translate(addr.wrapping_add(done as u64)) else { break };
            let n = (room as usize).min(len - done);
            if !access(phys, done, n) {
                break;
            }
            done += n;
        }
        done
    }

    /// A debug register for a breakpoint; when all four are taken gdb says it cannot insert
    /// the breakpoint, and vmm says why (on kvm-pvm `break` needs one too).
    fn take_debug_register(&mut self, addr: u64, kind: Slot) -> bool {
        let taken = self.breakpoints.add_hw(addr, kind);
        if !taken {
            let why =
                if self.sw_in_debug_registers { " (kvm-pvm cannot run int3, so break takes one too)" } else { "" };
            common::console::say(&format!("vmm: gdb: all 4 debug registers are in use{why}"));
        }
        taken
    }

    /// Puts back every byte an `int3` replaced and drops all breakpoints (gdb detached).
    pub fn clear_breakpoints(&mut self) {
        for p in self.breakpoints.take_all_sw() {
            let _ = self.mem.write_obj(p.original, GuestAddress(p.phys));
        }
        self.breakpoints.clear_hw();
        self.exec = Exec::Continue;
    }
}

impl Target for X86Target {
    type Arch = X86_64_SSE;
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

impl SingleThreadBase for X86Target {
    fn read_registers(&mut self, out: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let vcpu = self.vcpu().map_err(TargetError::Fatal)?;
        let (r, s, f) = match (vcpu.get_regs(), vcpu.get_sregs(), vcpu.get_fpu()) {
            (Ok(r), Ok(s), Ok(f)) => (r, s, f),
            _ => return Err(TargetError::NonFatal),
        };
        *out = regs::to_gdb(&r, &s, &f);
        Ok(())
    }

    fn write_registers(&mut self, new: &X86_64CoreRegs) -> TargetResult<(), Self> {
        let vcpu = self.vcpu().map_err(TargetError::Fatal)?;
        let (mut r, s, mut f) = match (vcpu.get_regs(), vcpu.get_sregs(), vcpu.get_fpu()) {
            (Ok(r), Ok(s), Ok(f)) => (r, s, f),
            _ => return Err(TargetError::NonFatal),
        };
        if regs::segments_changed(new, &s) {
            return Err(TargetError::NonFatal);
        }
        regs::from_gdb(new, &mut r, &mut f);
        vcpu.set_regs(&r).map_err(|_| TargetError::NonFatal)?;
        vcpu.set_fpu(&f).map_err(|_| TargetError::NonFatal)
    }

    fn read_addrs(&mut self, addr: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let mem = &self.mem;
        let n = self.each_page(addr, data.len(), |phys, at, n| {
            mem.read_slice(&mut data[at..at + n], GuestAddress(phys)).is_ok()
        });
        // gdb reads a word at a time around the stack: a partial read is fine, none is an error.
        if n == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        Ok(n)
    }

    fn write_addrs(&mut self, addr: u64, data: &[u8]) -> TargetResult<(), Self> {
        let mem = &self.mem;
        // Every page is checked before any is written: a write that crosses into an unmapped
        // page fails whole, leaving guest memory as it was.
        let in_ram = |a: u64| mem.address_in_range(GuestAddress(a));
        let reachable = self.each_page(addr, data.len(), |phys, _, n| in_ram(phys) && in_ram(phys + n as u64 - 1));
        if reachable < data.len() {
            return Err(TargetError::NonFatal);
        }
        let n = self
            .each_page(addr, data.len(), |phys, at, n| mem.write_slice(&data[at..at + n], GuestAddress(phys)).is_ok());
        if n < data.len() {
            return Err(TargetError::NonFatal);
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for X86Target {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        // A guest OS has no signals to deliver: gdb's signal (if any) is dropped, as QEMU does.
        self.exec = Exec::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for X86Target {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.exec = Exec::Step;
        Ok(())
    }
}

impl GdbBreakpoints for X86Target {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for X86Target {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.sw_in_debug_registers {
            return Ok(self.take_debug_register(addr, Slot::Sw));
        }
        if self.breakpoints.sw(addr).is_some() {
            return Ok(true);
        }
        let Some((phys, _)) = self.translate(addr) else { return Ok(false) };
        let Ok(original) = self.mem.read_obj::<u8>(GuestAddress(phys)) else { return Ok(false) };
        if self.mem.write_obj(INT3, GuestAddress(phys)).is_err() {
            return Ok(false);
        }
        self.breakpoints.insert_sw(addr, Patch { phys, original });
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.sw_in_debug_registers {
            return Ok(self.breakpoints.remove_hw(addr, Slot::Sw));
        }
        let Some(p) = self.breakpoints.remove_sw(addr) else { return Ok(false) };
        Ok(self.mem.write_obj(p.original, GuestAddress(p.phys)).is_ok())
    }
}

impl HwBreakpoint for X86Target {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.take_debug_register(addr, Slot::Hw))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.breakpoints.remove_hw(addr, Slot::Hw))
    }
}

impl MonitorCmd for X86Target {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        outputln!(out, "{}", common::gdb::monitor_command(cmd, &mut self.physical));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pages of RAM, addressed physically (`monitor phys`), so no vCPU is needed.
    fn target() -> X86Target {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 * PAGE as usize)]).unwrap();
        let mut t = X86Target::new(mem, false);
        t.physical = true;
        t
    }

    #[test]
    fn a_write_crossing_out_of_ram_changes_nothing() {
        let mut t = target();
        let end = 2 * PAGE - 2;
        t.mem.write_slice(&[0xaa, 0xbb], GuestAddress(end)).unwrap();
        assert!(t.write_addrs(end, &[1, 2, 3, 4]).is_err(), "the last two bytes have no RAM");
        let mut kept = [0u8; 2];
        t.mem.read_slice(&mut kept, GuestAddress(end)).unwrap();
        assert_eq!(kept, [0xaa, 0xbb], "the reachable page was not written either");
        assert!(t.write_addrs(PAGE - 2, &[1, 2, 3, 4]).is_ok());
        let mut both = [0u8; 4];
        t.mem.read_slice(&mut both, GuestAddress(PAGE - 2)).unwrap();
        assert_eq!(both, [1, 2, 3, 4], "a write across two RAM pages lands whole");
    }

    #[test]
    fn the_vcpu_pointer_is_reset_even_when_the_callback_panics() {
        let mut t = target();
        let kvm = kvm_ioctls::Kvm::new();
        // Without /dev/kvm there is no VcpuFd to lend: this test needs one (fails loudly).
        let vm = kvm.expect("/dev/kvm").create_vm().unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.with_vcpu(&vcpu, |t| {
                assert!(t.vcpu().is_ok());
                panic!("a callback that panics");
            })
        }));
        assert!(caught.is_err());
        assert!(t.vcpu().is_err(), "no dangling vCPU pointer after the panic");
    }
}
