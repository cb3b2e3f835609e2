//! `--disk` on x86: disk i is a virtio-blk device behind the modern virtio-mmio transport at
//! [`DISK_MMIO_BASE`] + i * 4 KiB (in the 32-bit hole above the largest RAM), interrupting on
//! ISA IRQ [`DISK_IRQS`]\[i\] through an irqfd (KVM's in-kernel I/O APIC). Linux has no ACPI
//! or device tree here, so each device is announced on its command line, as Firecracker does:
//! `virtio_mmio.device=4K@0xd0000000:5`. A flat guest gets the same windows and polls
//! (no irqchip, so no interrupt).
use crate::irq::IrqFdLine;
use common::bus::Bus;
use common::irq::{NoLine, SharedLine};
use common::memory::GuestRam;
use common::virtio::block::Block;
use common::virtio::{MmioTransport, Version, MMIO_SIZE};
use common::vm::VmConfig;
use common::{Error, Result};
use kvm_ioctls::VmFd;
use std::sync::{Arc, Mutex};

pub const DISK_MMIO_BASE: u64 = 0xd000_0000;
/// ISA IRQs no device of ours uses (1 and 12 are the i8042's, 4 COM1's, 8 the RTC's): one per disk.
pub const DISK_IRQS: [u32; 9] = [5, 6, 7, 9, 10, 11, 13, 14, 15];

/// The `virtio_mmio.device=` option announcing disk `slot`.
pub fn cmdline_option(slot: usize) -> String {
    format!("virtio_mmio.device=4K@{:#x}:{}", DISK_MMIO_BASE + slot as u64 * MMIO_SIZE, DISK_IRQS[slot])
}

/// Opens every `--disk` and puts its transport on `mmio`. With `vm` (Linux: the irqchip
/// exists), each gets its irqfd; returns the command-line options that announce them.
pub fn attach(vm: Option<&VmFd>, mmio: &mut Bus, mem: &GuestRam, config: &VmConfig) -> Result<String> {
    if config.disks.len() > DISK_IRQS.len() {
        return Err(Error::bad_input(format!(
            "{} --disk options: x86 has room for {}",
            config.disks.len(),
            DISK_IRQS.len()
        )));
    }
    let mut options = Vec::new();
    for (slot, disk) in config.disks.iter().enumerate() {
        let block = Block::open(disk)?;
        let line: SharedLine = match vm {
            Some(vm) => Arc::new(IrqFdLine::register(vm, DISK_IRQS[slot])?),
            None => Arc::new(NoLine),
        };
        // The worker's line writes an eventfd: `write`, which every jail allows.
        let transport = if config.jail {
            MmioTransport::jailed(block, mem.clone(), line, Version::Modern, &[])?
        } else {
            MmioTransport::new(block, mem.clone(), line, Version::Modern)?
        };
        let base = DISK_MMIO_BASE + slot as u64 * MMIO_SIZE;
        mmio.insert(base, MMIO_SIZE, "virtio-blk", Arc::new(Mutex::new(transport)))
            .map_err(|e| Error::bad_input(format!("MMIO bus: virtio-blk: {e}")))?;
        options.push(cmdline_option(slot));
    }
    Ok(options.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_announced_firecracker_style() {
        assert_eq!(cmdline_option(0), "virtio_mmio.device=4K@0xd0000000:5");
        assert_eq!(cmdline_option(3), "virtio_mmio.device=4K@0xd0003000:9");
        // Above the largest guest RAM, below the I/O APIC.
        const { assert!(DISK_MMIO_BASE >= crate::memory::MAX_MEM) };
        const { assert!(DISK_MMIO_BASE + DISK_IRQS.len() as u64 * MMIO_SIZE <= 0xfec0_0000) };
        assert!(!DISK_IRQS.contains(&crate::linux::devices::COM1_IRQ) && !DISK_IRQS.contains(&8));
        assert!(
            !DISK_IRQS.contains(&common::devices::i8042::KBD_IRQ)
                && !DISK_IRQS.contains(&common::devices::i8042::AUX_IRQ)
        );
    }

    #[test]
    fn mmio_exits_reach_each_disks_transport() {
        use crate::exits::{apply, dispatch, Action, Applied, Devices, Exit};
        let path = std::env::temp_dir().join(format!("vmm-x86-disks-{}.img", std::process::id()));
        std::fs::write(&path, vec![0u8; 3 * 512]).unwrap();
        let disk = |read_only| common::vm::DiskConfig { path: path.clone(), read_only };
        let config = VmConfig {
            mem_size: 1 << 20,
            timeout: None,
            console: common::console::Console::capture(),
            jail: false,
            disks: vec![disk(false), disk(true)],
            ..VmConfig::default()
        };
        let mem = common::memory::anonymous(0, 1 << 20).unwrap();
        let mut devices = Devices { pio: Bus::new(), mmio: Bus::new(), strict: true };
        let announce = attach(None, &mut devices.mmio, &mem, &config).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(announce, "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6");
        let read = |addr: u64| {
            let mut data = [0u8; 4];
            let (kind, action) = dispatch(Exit::MmioRead { addr, data: &mut data });
            assert_eq!(kind, "mmio-read");
            let applied = apply(action, &devices);
            (applied, u32::from_le_bytes(data))
        };
        let done = || Applied::Done { device: "virtio-blk" };
        assert_eq!(read(DISK_MMIO_BASE), (done(), 0x7472_6976)); // "virt"
        assert_eq!(read(DISK_MMIO_BASE + 4), (done(), 2)); // modern
        assert_eq!(read(DISK_MMIO_BASE + 0x1008), (done(), 2)); // block, second slot
        assert_eq!(read(DISK_MMIO_BASE + 0x1100), (done(), 3)); // capacity in sectors
        assert_eq!(read(DISK_MMIO_BASE + 0x1010).1 & (1 << 5), 1 << 5); // VIRTIO_BLK_F_RO
        assert!(matches!(read(DISK_MMIO_BASE + 0x2000).0, Applied::Unknown(_)));
        let notify = Action::MmioWrite { addr: DISK_MMIO_BASE + 0x50, data: &[0, 0, 0, 0] };
        assert_eq!(apply(notify, &devices), done());
    }

    #[test]
    fn too_many_disks_are_bad_input() {
        let disk = common::vm::DiskConfig { path: "/nonexistent".into(), read_only: false };
        let config = VmConfig {
            mem_size: 1 << 20,
            timeout: None,
            console: common::console::Console::capture(),
            jail: false,
            disks: vec![disk; 11],
            ..VmConfig::default()
        };
        let mem = common::memory::anonymous(0, 1 << 20).unwrap();
        let err = attach(None, &mut Bus::new(), &mem, &config).unwrap_err();
        assert_eq!((err.exit_code(), err.message.as_str()), (2, "11 --disk options: x86 has room for 9"));
    }
}
