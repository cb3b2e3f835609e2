//! The virtio-mmio transport (virtio spec 1.2, section 4.2): one 4 KiB register window per
//! device, placed on a [`crate::bus::Bus`]. Both register layouts are here:
//! - legacy (version 1), which teaching kernels and their drivers use: the guest gives one page
//!   frame number (QueuePFN) and the rings follow each other at fixed offsets within it;
//! - modern (version 2), which Linux prefers: the guest gives each ring's address and sets
//!   QueueReady, and must accept VIRTIO_F_VERSION_1.
//!
//! Registers are 32-bit; another width on a register reads 0 and is ignored (the config space
//! from 0x100 takes any width). Nothing the guest writes can make us panic: bad queue set-ups
//! leave the queue unused and set DEVICE_NEEDS_RESET in Status.
use super::worker::{self, Worker};
use super::VirtioDevice;
use crate::bus::{BusDevice, DeviceRequest};
use crate::irq::SharedLine;
use crate::memory::GuestRam;
use crate::Result;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::QueueT;

/// The size of one device's register window.
pub const MMIO_SIZE: u64 = 0x1000;
/// "virt" in little-endian ASCII.
const MAGIC: u32 = 0x7472_6976;
/// Our vendor ID: "VMM\0" little-endian (the spec leaves it to the device).
const VENDOR: u32 = 0x004d_4d56;
/// The one queue's largest size.
pub const QUEUE_SIZE: u16 = 256;

/// Which register layout the guest sees (the Version register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Legacy = 1,
    Modern = 2,
}

pub struct MmioTransport {
    version: Version,
    device_id: u32,
    /// What we offer, VIRTIO_F_VERSION_1 included on the modern interface.
    features: u64,
    config: Vec<u8>,
    mem: GuestRam,
    status: u32,
    features_sel: u32,
    acked_sel: u32,
    acked: u64,
    queue_sel: u32,
    /// Legacy: the guest's page size (for QueuePFN) and the used ring's alignment.
    page_size: u32,
    queue_align: u32,
    queue_pfn: u32,
    /// The last QueueNum was a size the queue accepted.
    size_ok: bool,
    worker: Worker,
}

impl MmioTransport {
    /// A transport for `device` whose worker thread runs unjailed (tests, `--no-seccomp`).
    pub fn new<D: VirtioDevice>(device: D, mem: GuestRam, line: SharedLine, version: Version) -> Result<Self> {
        Self::build(device, mem, line, version, None)
    }

    /// As [`MmioTransport::new`], with the worker under its seccomp allowlist
    /// ([`super::WORKER_SYSCALLS`]) plus `extra`: what this backend's interrupt line needs.
    pub fn jailed<D: VirtioDevice>(
        device: D,
        mem: GuestRam,
        line: SharedLine,
        version: Version,
        extra: &'static [i64],
    ) -> Result<Self> {
        Self::build(device, mem, line, version, Some(extra))
    }

    fn build<D: VirtioDevice>(
        device: D,
        mem: GuestRam,
        line: SharedLine,
        version: Version,
        jail: Option<&'static [i64]>,
    ) -> Result<Self> {
        let mut features = device.features();
        if version == Version::Modern {
            features |= 1 << VIRTIO_F_VERSION_1;
        }
        let (device_id, config) = (device.device_id(), device.config_space());
        let worker = worker::spawn(device, mem.clone(), line, QUEUE_SIZE, jail)?;
        Ok(MmioTransport {
            version,
            device_id,
            features,
            config,
            mem,
            status: 0,
            features_sel: 0,
            acked_sel: 0,
            acked: 0,
            queue_sel: 0,
            page_size: 4096,
            queue_align: 4096,
            queue_pfn: 0,
            size_ok: true,
            worker,
        })
    }

    /// The features the driver accepted (only those we offered).
    pub fn acked_features(&self) -> u64 {
        self.acked
    }

    fn reg_read(&self, offset: u32) -> u32 {
        let legacy = self.version == Version::Legacy;
        let slot = self.worker.shared.slot();
        let queue = &slot.queue;
        let selected = self.queue_sel == 0;
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => self.version as u32,
            VIRTIO_MMIO_DEVICE_ID => self.device_id,
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.features_sel {
                0 => self.features as u32,
                1 => (self.features >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX if selected => queue.max_size() as u32,
            VIRTIO_MMIO_QUEUE_PFN if legacy && selected => self.queue_pfn,
            VIRTIO_MMIO_QUEUE_READY if !legacy && selected => queue.ready() as u32,
            VIRTIO_MMIO_INTERRUPT_STATUS => self.worker.shared.interrupt.status(),
            VIRTIO_MMIO_STATUS if slot.broken => self.status | VIRTIO_CONFIG_S_NEEDS_RESET,
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_CONFIG_GENERATION if !legacy => 0, // the config space never changes
            _ => 0,
        }
    }

    fn reg_write(&mut self, offset: u32, value: u32) {
        let legacy = self.version == Version::Legacy;
        let shared = &self.worker.shared;
        // Queue registers only mean something for queue 0 and before the driver is done.
        let queue_writable = self.queue_sel == 0 && self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0;
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.acked_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES if self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0 => {
                let (shift, mask) = match self.acked_sel {
                    0 => (0, 0xffff_ffff),
                    1 => (32, 0xffff_ffff << 32),
                    _ => return,
                };
                self.acked = (self.acked & !mask) | (((value as u64) << shift) & mask & self.features);
            }
            VIRTIO_MMIO_GUEST_PAGE_SIZE if legacy => self.page_size = value,
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NUM if queue_writable => {
                // A size that is not a power of two up to the maximum leaves the queue unusable.
                let mut slot = shared.slot();
                self.size_ok = u16::try_from(value).is_ok_and(|size| slot.queue.try_set_size(size).is_ok());
            }
            VIRTIO_MMIO_QUEUE_ALIGN if legacy => self.queue_align = value,
            VIRTIO_MMIO_QUEUE_PFN if legacy && queue_writable => self.set_legacy_pfn(value),
            VIRTIO_MMIO_QUEUE_READY if !legacy && queue_writable => shared.slot().queue.set_ready(value == 1),
            VIRTIO_MMIO_QUEUE_DESC_LOW if !legacy && queue_writable => {
                shared.slot().queue.set_desc_table_address(Some(value), None)
            }
            VIRTIO_MMIO_QUEUE_DESC_HIGH if !legacy && queue_writable => {
                shared.slot().queue.set_desc_table_address(None, Some(value))
            }
            VIRTIO_MMIO_QUEUE_AVAIL_LOW if !legacy && queue_writable => {
                shared.slot().queue.set_avail_ring_address(Some(value), None)
            }
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH if !legacy && queue_writable => {
                shared.slot().queue.set_avail_ring_address(None, Some(value))
            }
            VIRTIO_MMIO_QUEUE_USED_LOW if !legacy && queue_writable => {
                shared.slot().queue.set_used_ring_address(Some(value), None)
            }
            VIRTIO_MMIO_QUEUE_USED_HIGH if !legacy && queue_writable => {
                shared.slot().queue.set_used_ring_address(None, Some(value))
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => shared.notify(),
            VIRTIO_MMIO_INTERRUPT_ACK => shared.interrupt.ack(value),
            VIRTIO_MMIO_STATUS => self.set_status(value),
            _ => {} // read-only or unknown: ignored
        }
    }

    /// Legacy: the rings lie in guest pages from `pfn` on: descriptors, then the avail ring,
    /// then (aligned to QueueAlign) the used ring. PFN 0 stops the queue.
    fn set_legacy_pfn(&mut self, pfn: u32) {
        self.queue_pfn = pfn;
        let mut slot = self.worker.shared.slot();
        let queue = &mut slot.queue;
        if pfn == 0 {
            queue.set_ready(false);
            return;
        }
        let size = queue.size() as u64;
        let desc = pfn as u64 * self.page_size as u64;
        let avail = desc + 16 * size;
        let align = (self.queue_align as u64).max(1);
        let used = (avail + 6 + 2 * size).div_ceil(align) * align;
        let ok = align.is_power_of_two()
            && queue.try_set_desc_table_address(vm_memory::GuestAddress(desc)).is_ok()
            && queue.try_set_avail_ring_address(vm_memory::GuestAddress(avail)).is_ok()
            && queue.try_set_used_ring_address(vm_memory::GuestAddress(used)).is_ok();
        queue.set_ready(ok);
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            return self.reset();
        }
        let mut value = value;
        // Modern: FEATURES_OK only sticks if the driver accepted VIRTIO_F_VERSION_1.
        if self.version == Version::Modern && self.acked & (1 << VIRTIO_F_VERSION_1) == 0 {
            value &= !VIRTIO_CONFIG_S_FEATURES_OK;
        }
        let was_ok = self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0;
        self.status = value & !VIRTIO_CONFIG_S_NEEDS_RESET;
        let now_ok = self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0;
        let features_ok = self.version == Version::Legacy || self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0;
        let mut slot = self.worker.shared.slot();
        match (was_ok, now_ok) {
            (false, true) => {
                let usable = features_ok && self.size_ok && slot.queue.ready() && slot.queue.is_valid(&self.mem);
                slot.live = usable;
                slot.broken = !usable;
                drop(slot);
                // Buffers may have been made available before DRIVER_OK.
                self.worker.shared.notify();
            }
            (true, false) => slot.live = false,
            _ => {}
        }
    }

    /// Status 0: back to the state after power-on. A request being served finishes its I/O
    /// first and is then dropped, never completed.
    fn reset(&mut self) {
        self.status = 0;
        self.features_sel = 0;
        self.acked_sel = 0;
        self.acked = 0;
        self.queue_sel = 0;
        self.page_size = 4096;
        self.queue_align = 4096;
        self.queue_pfn = 0;
        self.size_ok = true;
        {
            let mut slot = self.worker.shared.idle_slot();
            slot.queue.reset();
            slot.live = false;
            slot.broken = false;
            slot.generation += 1;
        }
        let interrupt = &self.worker.shared.interrupt;
        interrupt.ack(interrupt.status());
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= VIRTIO_MMIO_CONFIG as u64 {
            let start = (offset - VIRTIO_MMIO_CONFIG as u64) as usize;
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = self.config.get(start + i).copied().unwrap_or(0);
            }
        } else if data.len() == 4 && offset & 3 == 0 {
            data.copy_from_slice(&self.reg_read(offset as u32).to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        // The block config space is read-only; other widths on registers are ignored.
        if offset < VIRTIO_MMIO_CONFIG as u64 && data.len() == 4 && offset & 3 == 0 {
            let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.reg_write(offset as u32, value);
        }
        None
    }
}
