//! The boot vCPU's state for Linux: the MSRs a BIOS would have left, the FPU, the local
//! APIC's LINT0/LINT1 wiring, and the registers of the chosen entry (PVH in 32-bit protected
//! mode, or the 64-bit boot protocol in long mode). The GDT and page tables come from
//! modes.rs, the same helpers the flat loader uses.
use super::boot_params::{BOOT_STACK, PAGE_TABLES_ADDR, START_INFO_ADDR, ZERO_PAGE_ADDR};
use crate::kvm::setup_error;
use crate::modes;
use common::{Error, Result};
use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;

/// How the kernel is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// PVH: 32-bit protected mode, paging off, EBX = hvm_start_info.
    Pvh(u64),
    /// 64-bit boot protocol: long mode with identity paging, RSI = zero page.
    Linux64(u64),
}

// MSR numbers (arch/x86/include/asm/msr-index.h).
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default memory type write-back: all of RAM is cacheable.
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;

/// The MSRs and the values a freshly reset PC leaves for the kernel.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ]
}

fn setup_msrs(vcpu: &VcpuFd) -> Result<()> {
    let list = boot_msrs();
    let entries: Vec<_> =
        list.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
    let msrs = Msrs::from_entries(&entries).map_err(|e| Error::bad_input(format!("boot MSR list: {e:?}")))?;
    let set = vcpu.set_msrs(&msrs).map_err(|e| setup_error("KVM_SET_MSRS", e))?;
    // KVM stops at the first MSR it refuses and returns how many it took.
    if set != list.len() {
        return Err(Error::bad_input(format!("KVM refused boot MSR {:#x} ({set} of {} set)", list[set].0, list.len())));
    }
    Ok(())
}

fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    // The x87 control word and MXCSR after FNINIT / reset: all exceptions masked.
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    vcpu.set_fpu(&fpu).map_err(|e| setup_error("KVM_SET_FPU", e))
}

// Local APIC register offsets and LVT delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const DELIVERY_MODE_MASK: u32 = 0x700;
const DELIVERY_NMI: u32 = 4 << 8;
const DELIVERY_EXTINT: u32 = 7 << 8;

fn apic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let b = &lapic.regs[offset..offset + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

fn set_apic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (dst, src) in lapic.regs[offset..offset + 4].iter_mut().zip(value.to_le_bytes()) {
        *dst = src as _;
    }
}

/// LINT0 receives the 8259 PIC's interrupts (ExtINT) and LINT1 the NMI, as on a PC: the
/// wiring the MP table announces. Pure.
pub fn wire_lints(lapic: &mut kvm_lapic_state) {
    let lint0 = apic_reg(lapic, APIC_LVT0);
    set_apic_reg(lapic, APIC_LVT0, (lint0 & !DELIVERY_MODE_MASK) | DELIVERY_EXTINT);
    let lint1 = apic_reg(lapic, APIC_LVT1);
    set_apic_reg(lapic, APIC_LVT1, (lint1 & !DELIVERY_MODE_MASK) | DELIVERY_NMI);
}

fn setup_lapic(vcpu: &VcpuFd) -> Result<()> {
    let mut lapic = vcpu.get_lapic().map_err(|e| setup_error("KVM_GET_LAPIC", e))?;
    wire_lints(&mut lapic);
    vcpu.set_lapic(&lapic).map_err(|e| setup_error("KVM_SET_LAPIC", e))
}

/// The general registers for `entry`. Pure.
pub fn entry_regs(entry: Entry) -> kvm_regs {
    // RFLAGS bit 1 is reserved and must be set; interrupts stay off.
    let base = kvm_regs { rflags: 0x2, ..Default::default() };
    match entry {
        Entry::Pvh(rip) => kvm_regs { rip, rbx: START_INFO_ADDR, ..base },
        Entry::Linux64(rip) => kvm_regs { rip, rsi: ZERO_PAGE_ADDR, rsp: BOOT_STACK, rbp: BOOT_STACK, ..base },
    }
}

/// Everything the boot vCPU needs before its first KVM_RUN (CPUID is set separately).
pub fn setup(vcpu: &VcpuFd, mem: &GuestMemoryMmap, mem_size: u64, entry: Entry) -> Result<()> {
    setup_msrs(vcpu)?;
    setup_fpu(vcpu)?;
    setup_lapic(vcpu)?;
    let mut sregs = vcpu.get_sregs().map_err(|e| setup_error("KVM_GET_SREGS", e))?;
    modes::write_gdt(mem, modes::GDT_ADDR, &modes::flat_gdt())?;
    match entry {
        Entry::Pvh(_) => modes::set_protected_mode(&mut sregs, modes::GDT_ADDR),
        Entry::Linux64(_) => {
            // The 64-bit protocol wants the kernel, zero page and command line identity-mapped;
            // map all of RAM (below 4 GiB) so wherever the kernel lands is covered.
            let cr3 = modes::write_identity_page_tables(mem, PAGE_TABLES_ADDR, mem_size.min(4 << 30))?;
            modes::set_long_mode(&mut sregs, modes::GDT_ADDR, cr3);
        }
    }
    vcpu.set_sregs(&sregs).map_err(|e| setup_error("KVM_SET_SREGS", e))?;
    vcpu.set_regs(&entry_regs(entry)).map_err(|e| setup_error("KVM_SET_REGS", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lints_are_wired_extint_and_nmi() {
        let mut lapic = kvm_lapic_state::default();
        // Reset state: both LVTs masked (bit 16), fixed delivery.
        set_apic_reg(&mut lapic, APIC_LVT0, 0x1_0000);
        set_apic_reg(&mut lapic, APIC_LVT1, 0x1_0000 | 0x300);
        wire_lints(&mut lapic);
        assert_eq!(apic_reg(&lapic, APIC_LVT0), 0x1_0700);
        assert_eq!(apic_reg(&lapic, APIC_LVT1), 0x1_0400);
    }

    #[test]
    fn entry_registers_follow_each_protocol() {
        let pvh = entry_regs(Entry::Pvh(0x100_0000));
        assert_eq!((pvh.rip, pvh.rbx, pvh.rflags, pvh.rsi), (0x100_0000, START_INFO_ADDR, 2, 0));
        let l64 = entry_regs(Entry::Linux64(0x10_0200));
        assert_eq!((l64.rip, l64.rsi, l64.rsp), (0x10_0200, ZERO_PAGE_ADDR, BOOT_STACK));
    }

    #[test]
    fn boot_msrs_enable_write_back_mtrrs() {
        let m = boot_msrs();
        assert!(m.contains(&(MSR_MTRR_DEF_TYPE, 0x806)));
        assert!(m.contains(&(MSR_IA32_MISC_ENABLE, 1)));
        let mut idx: Vec<_> = m.iter().map(|e| e.0).collect();
        idx.dedup();
        assert_eq!(idx.len(), m.len());
    }
}
