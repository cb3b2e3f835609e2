//! A minimal virtio-blk driver on the host side, for the unit tests and the disk benchmark:
//! it owns a fabricated guest RAM, programs the transport through its registers exactly as a
//! guest would (legacy or modern layout, Linux's order), lays out the split ring and builds
//! descriptor chains by hand. Requests go one at a time.
use super::block::Block;
use super::{MmioTransport, Version};
use crate::bus::BusDevice;
use crate::irq::InterruptLine;
use crate::memory::{self, GuestRam};
use crate::vm::DiskConfig;
use crate::Result;
use std::sync::Arc;
#[cfg(test)]
use std::time::{Duration, Instant};
use virtio_bindings::virtio_blk::VIRTIO_BLK_T_OUT;
use virtio_bindings::virtio_config::*;
use virtio_bindings::virtio_mmio::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress};

/// The driver's RAM, and where things lie in it.
pub const RAM: u64 = 1 << 20;
pub const RING: u64 = 0x1_0000;
/// The queue size the driver uses.
pub const SIZE: u16 = 16;
/// Where requests' headers, data (up to 64 KiB) and status bytes go.
pub const HDR: u64 = 0x4_0000;
pub const DATA: u64 = 0x5_0000;
pub const STATUS: u64 = 0x6_0000;

/// A driver for one block device in its own fabricated RAM: the queue at [`RING`], requests
/// submitted one at a time. `line` is the device's interrupt line, for the caller to watch.
pub struct Driver<L> {
    pub dev: MmioTransport,
    pub mem: GuestRam,
    pub line: Arc<L>,
    pub version: Version,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub next_avail: u16,
}

impl<L: InterruptLine + 'static> Driver<L> {
    /// The disk behind a `version` transport whose worker runs unjailed, or under its jail.
    pub fn new(disk: &DiskConfig, version: Version, line: Arc<L>, jail: bool) -> Result<Self> {
        let mem = memory::anonymous(0, RAM)?;
        let block = Block::open(disk)?;
        let dev = if jail {
            MmioTransport::jailed(block, mem.clone(), line.clone(), version, &[])?
        } else {
            MmioTransport::new(block, mem.clone(), line.clone(), version)?
        };
        Ok(Driver { dev, mem, line, version, desc: 0, avail: 0, used: 0, next_avail: 0 })
    }

    pub fn read(&mut self, reg: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev.read(reg as u64, &mut b);
        u32::from_le_bytes(b)
    }
    pub fn write(&mut self, reg: u32, value: u32) {
        self.dev.write(reg as u64, &value.to_le_bytes());
    }
    pub fn features(&mut self) -> u64 {
        self.write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        let high = self.read(VIRTIO_MMIO_DEVICE_FEATURES) as u64;
        self.write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        (high << 32) | self.read(VIRTIO_MMIO_DEVICE_FEATURES) as u64
    }

    /// The Linux order: reset, ACKNOWLEDGE, DRIVER, features, (FEATURES_OK), queue, DRIVER_OK.
    pub fn init(&mut self, accept: u64, queue_size: u32) {
        self.write(VIRTIO_MMIO_STATUS, 0);
        self.write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        self.write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
        let offered = self.features();
        self.write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES, (offered & accept) as u32);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES, ((offered & accept) >> 32) as u32);
        let mut status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
        if self.version == Version::Modern {
            status |= VIRTIO_CONFIG_S_FEATURES_OK;
            self.write(VIRTIO_MMIO_STATUS, status);
        }
        self.write(VIRTIO_MMIO_QUEUE_SEL, 0);
        assert_eq!(self.read(VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
        self.write(VIRTIO_MMIO_QUEUE_NUM, queue_size);
        let n = queue_size as u64;
        match self.version {
            Version::Legacy => {
                self.write(VIRTIO_MMIO_GUEST_PAGE_SIZE, 4096);
                self.write(VIRTIO_MMIO_QUEUE_ALIGN, 4096);
                self.write(VIRTIO_MMIO_QUEUE_PFN, (RING / 4096) as u32);
                (self.desc, self.avail) = (RING, RING + 16 * n);
                self.used = (self.avail + 6 + 2 * n).div_ceil(4096) * 4096;
            }
            Version::Modern => {
                (self.desc, self.avail, self.used) = (RING, RING + 0x1000, RING + 0x2000);
                for (low, value) in [
                    (VIRTIO_MMIO_QUEUE_DESC_LOW, self.desc),
                    (VIRTIO_MMIO_QUEUE_AVAIL_LOW, self.avail),
                    (VIRTIO_MMIO_QUEUE_USED_LOW, self.used),
                ] {
                    self.write(low, value as u32);
                    self.write(low + 4, (value >> 32) as u32);
                }
                self.write(VIRTIO_MMIO_QUEUE_READY, 1);
            }
        }
        self.write(VIRTIO_MMIO_STATUS, status | VIRTIO_CONFIG_S_DRIVER_OK);
        self.next_avail = 0;
    }

    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// Puts `chain` (address, length, device-writable) in the ring and notifies.
    pub fn submit(&mut self, chain: &[(u64, u32, bool)]) {
        let head = (self.next_avail % (SIZE / 4)) * 4;
        for (i, &(addr, len, writable)) in chain.iter().enumerate() {
            let index = head + i as u16;
            let last = i + 1 == chain.len();
            let flags = (if writable { VRING_DESC_F_WRITE } else { 0 }) | (if last { 0 } else { VRING_DESC_F_NEXT });
            let at = self.desc + 16 * index as u64;
            self.mem.write_obj(addr, GuestAddress(at)).unwrap();
            self.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
            self.mem.write_obj(flags as u16, GuestAddress(at + 12)).unwrap();
            self.mem.write_obj(index + 1, GuestAddress(at + 14)).unwrap();
        }
        let slot = self.avail + 4 + 2 * (self.next_avail % SIZE) as u64;
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.next_avail = self.next_avail.wrapping_add(1);
        self.mem.write_obj(self.next_avail, GuestAddress(self.avail + 2)).unwrap();
        self.write(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    }

    /// The length of the last used element, once the used ring has reached `next_avail`.
    pub fn completed(&self) -> Option<u32> {
        if self.used_idx() != self.next_avail {
            return None;
        }
        let elem = self.used + 4 + 8 * ((self.next_avail.wrapping_sub(1)) % SIZE) as u64;
        self.mem.read_obj(GuestAddress(elem + 4)).ok()
    }

    /// Waits (at most 5 s: a test never hangs) for the request to complete; its used length.
    #[cfg(test)]
    pub fn complete(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(len) = self.completed() {
                return len;
            }
            assert!(Instant::now() < deadline, "request never completed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn header(&self, kind: u32, sector: u64) {
        self.mem.write_obj(kind, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
        self.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    }

    /// A three-buffer request (header, data, status) as every driver builds one.
    #[cfg(test)]
    pub fn request(&mut self, kind: u32, sector: u64, data_len: u32) -> (u8, u32) {
        self.start(kind, sector, data_len);
        let len = self.complete();
        (self.status(), len)
    }

    /// Submits a three-buffer request without waiting for it.
    pub fn start(&mut self, kind: u32, sector: u64, data_len: u32) {
        self.header(kind, sector);
        let data_writable = kind != VIRTIO_BLK_T_OUT;
        if data_len == 0 {
            self.submit(&[(HDR, 16, false), (STATUS, 1, true)]);
        } else {
            self.submit(&[(HDR, 16, false), (DATA, data_len, data_writable), (STATUS, 1, true)]);
        }
    }

    pub fn status(&self) -> u8 {
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }
    pub fn data(&self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap();
        buf
    }
}
