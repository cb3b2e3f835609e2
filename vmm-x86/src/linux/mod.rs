//! Booting Linux directly, as Firecracker, Cloud Hypervisor and kvmtool do (issue 3).
//!
//! - [`loader`]: bzImage / ELF vmlinux checks and loading (linux-loader), initramfs placement.
//! - [`boot_params`]: the low-memory layout, the e820 map, the zero page and PVH start info.
//! - [`mptable`]: the MP table through which Linux finds the I/O APIC and local APIC.
//! - [`cpuid`]: KVM's supported CPUID adjusted for this VM.
//! - [`regs`]: MSRs, FPU, LAPIC LINT0/LINT1 and the entry registers.
//! - [`devices`]: in-kernel irqchip and PIT, and the PC devices on the PIO bus.
//! - [`bench`]: boot time against QEMU's microvm.
//!
//! A vmlinux with the PVH note is entered through PVH (32-bit, hvm_start_info); a bzImage or
//! a vmlinux without the note through the 64-bit boot protocol (long mode, zero page).
pub mod bench;
pub mod boot_params;
pub mod cpuid;
pub mod devices;
pub mod loader;
pub mod mptable;
pub mod regs;

use crate::config::LinuxOptions;
use common::bus::Bus;
use common::console::Console;
use common::image::Image;
use common::Result;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap};

pub use devices::{InputSink, SharedSerial};

/// The command line when none is given: the console on the first UART; reboot through the
/// i8042 (so a guest reboot or panic ends the VM with a clean exit); reboot one second after
/// a panic; no PCI probing (there is no PCI bus); no modules (there are none).
///
/// `noxsave` is deliberately not added: on VMX/SVM hosts XSAVE works and is faster, and on a
/// kvm-pvm host it only moves the stop from `xrstor` to the `int3` self-test (QEMU behaves the
/// same); pass `--kernel-cmdline` to experiment.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off nomodules";

/// One vCPU, APIC id 0.
const CPUS: u8 = 1;
const BOOT_APIC_ID: u8 = 0;

/// Whether `image` is a Linux kernel: a bzImage (even a damaged one, so its damage is
/// reported rather than run as a flat binary) or any ELF file (an ELF for another machine is
/// then refused with a clear line).
pub fn is_linux_kernel(image: &[u8]) -> bool {
    loader::looks_like_bzimage(image) || loader::is_elf(image)
}

/// VM-wide set-up, before any vCPU exists: irqchip, PIT, devices; returns the console UART
/// and where console input goes.
pub fn setup_vm(vm: &VmFd, pio: &mut Bus, console: &Console) -> Result<devices::LinuxDevices> {
    devices::setup_vm(vm, pio, console)
}

/// Loads the kernel, initramfs and boot structures and prepares the boot vCPU.
pub fn load(
    _vm: &VmFd,
    vcpu: &VcpuFd,
    kvm: &Kvm,
    mem: &GuestMemoryMmap,
    image: &Image,
    opts: &LinuxOptions,
    devices_cmdline: &str,
) -> Result<()> {
    let mem_size = mem.last_addr().0 + 1;
    let e820 = boot_params::e820_map(mem_size)?;
    let kernel = loader::load_kernel(mem, image, mem_size)?;
    // The devices' announcements (virtio_mmio.device=...) go after the user's or default line.
    let cmdline = opts.cmdline.as_deref().unwrap_or(DEFAULT_CMDLINE);
    let cmdline = [cmdline, devices_cmdline].join(" ");
    let mut info = boot_params::write_cmdline(mem, cmdline.trim_end(), kernel.cmdline_max)?;
    if let Some(path) = &opts.initrd {
        info.initrd = Some(loader::load_initrd(mem, path, &kernel, mem_size)?);
    }
    match kernel.entry {
        regs::Entry::Pvh(_) => {
            let (start, modules, memmap) = boot_params::start_info(&e820, &info);
            boot_params::write_start_info(mem, &start, &modules, &memmap)?;
        }
        regs::Entry::Linux64(_) => {
            let params = boot_params::zero_page(kernel.hdr, &e820, &info)?;
            boot_params::write_zero_page(mem, &params)?;
        }
    }
    mptable::write(mem, boot_params::EBDA_START, CPUS)?;
    cpuid::setup(kvm, vcpu, BOOT_APIC_ID, CPUS)?;
    regs::setup(vcpu, mem, mem_size, kernel.entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_told_from_flat_binaries() {
        // The classic 25-byte real-mode demo and a 512-byte boot sector are flat binaries.
        assert!(!is_linux_kernel(&[0xba, 0xf8, 0x03, 0x00, 0xd8, 0xee]));
        let mut boot_sector = vec![0u8; 512];
        boot_sector[510..].copy_from_slice(&[0x55, 0xaa]);
        assert!(!is_linux_kernel(&boot_sector));
        assert!(is_linux_kernel(b"\x7fELF\x02\x01\x01"));
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(is_linux_kernel(&bz));
        assert!(DEFAULT_CMDLINE.contains("console=ttyS0") && DEFAULT_CMDLINE.contains("reboot=k"));
    }
}
