//! The transport and virtio-blk driven as a guest driver would: a fabricated guest RAM,
//! register writes through the BusDevice interface, hand-built descriptor chains in the split
//! ring (legacy and modern layouts), and the disk a temporary file checked afterwards.
use super::block::Block;
use super::driver::*;
use super::Version;
use crate::bus::BusDevice;
use crate::irq::InterruptLine;
use crate::vm::DiskConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_config::*;
use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress};

fn driver(disk: &DiskConfig, version: Version) -> Driver<Line> {
    Driver::new(disk, version, Arc::new(Line::default()), false).unwrap()
}

/// An interrupt line that remembers its level and counts rises.
#[derive(Default)]
struct Line {
    high: AtomicBool,
    rises: AtomicU32,
}

impl InterruptLine for Line {
    fn set_level(&self, high: bool) {
        if high && !self.high.swap(true, Ordering::SeqCst) {
            self.rises.fetch_add(1, Ordering::SeqCst);
        }
        if !high {
            self.high.store(false, Ordering::SeqCst);
        }
    }
}

/// A temporary disk image filled with a pattern: byte i of sector s is (s * 7 + i) as u8.
struct TempDisk(PathBuf);

impl TempDisk {
    fn new(name: &str, sectors: u64) -> TempDisk {
        let path = std::env::temp_dir().join(format!("vmm-virtio-{}-{name}.img", std::process::id()));
        let bytes: Vec<u8> = (0..sectors * 512).map(|i| ((i / 512) * 7 + i % 512) as u8).collect();
        std::fs::write(&path, bytes).unwrap();
        TempDisk(path)
    }
    fn config(&self, read_only: bool) -> DiskConfig {
        DiskConfig { path: self.0.clone(), read_only }
    }
    fn sector(&self, s: u64) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()[(s * 512) as usize..][..512].to_vec()
    }
}

impl Drop for TempDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pattern(s: u64) -> Vec<u8> {
    (0..512u64).map(|i| (s * 7 + i) as u8).collect()
}

const ALL: u64 = u64::MAX;
const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;

#[test]
fn identifies_itself_in_both_layouts() {
    let disk = TempDisk::new("ident", 8);
    for version in [Version::Legacy, Version::Modern] {
        let mut d = driver(&disk.config(false), version);
        assert_eq!(d.read(VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
        assert_eq!(d.read(VIRTIO_MMIO_VERSION), version as u32);
        assert_eq!(d.read(VIRTIO_MMIO_DEVICE_ID), 2);
        let features = d.features();
        assert_ne!(features & (1 << VIRTIO_BLK_F_FLUSH), 0);
        assert_eq!(features & (1 << VIRTIO_BLK_F_RO), 0);
        assert_eq!(features & (1 << VIRTIO_F_VERSION_1) != 0, version == Version::Modern);
        // Capacity in sectors at config offset 0, read as one 8-byte or two 4-byte accesses.
        let mut cap = [0u8; 8];
        d.dev.read(0x100, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
        assert_eq!(d.read(0x100), 8);
        assert_eq!(d.read(0x104), 0);
        // A byte access to a register reads 0; so does a register we do not have.
        let mut byte = [0xaau8; 1];
        d.dev.read(VIRTIO_MMIO_MAGIC_VALUE as u64, &mut byte);
        assert_eq!(byte, [0]);
        assert_eq!(d.read(0xf0), 0);
    }
    let mut ro = driver(&disk.config(true), Version::Legacy);
    assert_ne!(ro.features() & (1 << VIRTIO_BLK_F_RO), 0);
}

fn read_write_roundtrip(version: Version) {
    let disk = TempDisk::new(&format!("rw-{version:?}"), 16);
    let mut d = driver(&disk.config(false), version);
    d.init(ALL, SIZE as u32);
    assert_eq!(d.read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    // Read sectors 3 and 4.
    assert_eq!(d.request(VIRTIO_BLK_T_IN, 3, 1024), (OK, 1025));
    assert_eq!(d.data(1024), [pattern(3), pattern(4)].concat());
    assert_eq!(d.read(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
    assert!(d.line.high.load(Ordering::SeqCst));
    d.write(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert!(!d.line.high.load(Ordering::SeqCst));
    assert_eq!(d.read(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    // Write sector 9, flush, and find it in the file.
    d.mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(d.request(VIRTIO_BLK_T_OUT, 9, 512), (OK, 1));
    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, 0), (OK, 1));
    assert_eq!(disk.sector(9), vec![0x5a; 512]);
    assert_eq!(disk.sector(8), pattern(8));
    // GET_ID: the file's name, 20 bytes at most.
    assert_eq!(d.request(VIRTIO_BLK_T_GET_ID, 0, 20), (OK, 21));
    let name = disk.0.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(d.data(20), name.as_bytes()[..20]);
    // One rise per raise from low: the first read, then the write (nothing acked after it).
    assert_eq!(d.line.rises.load(Ordering::SeqCst), 2);
}

#[test]
fn legacy_reads_and_writes_sectors() {
    read_write_roundtrip(Version::Legacy);
}

#[test]
fn modern_reads_and_writes_sectors() {
    read_write_roundtrip(Version::Modern);
}

#[test]
fn one_buffer_with_header_and_data_and_status() {
    // Any layout: header, data and status in one readable and one writable buffer.
    let disk = TempDisk::new("layout", 4);
    let mut d = driver(&disk.config(false), Version::Modern);
    d.init(ALL, SIZE as u32);
    d.header(VIRTIO_BLK_T_IN, 2);
    d.submit(&[(HDR, 16, false), (DATA, 513, true)]);
    assert_eq!(d.complete(), 513);
    assert_eq!(d.data(512), pattern(2));
    assert_eq!(d.mem.read_obj::<u8>(GuestAddress(DATA + 512)).unwrap(), OK);
}

#[test]
fn bad_requests_fail_with_a_status_and_leave_the_file_alone() {
    let disk = TempDisk::new("bad", 8);
    let before = std::fs::read(&disk.0).unwrap();
    for version in [Version::Legacy, Version::Modern] {
        let mut d = driver(&disk.config(false), version);
        d.init(ALL, SIZE as u32);
        d.mem.write_slice(&[0xee; 1024], GuestAddress(DATA)).unwrap();
        // Past the end, and straddling it.
        assert_eq!(d.request(VIRTIO_BLK_T_IN, 8, 512).0, IOERR);
        assert_eq!(d.request(VIRTIO_BLK_T_OUT, 7, 1024).0, IOERR);
        assert_eq!(d.request(VIRTIO_BLK_T_OUT, u64::MAX, 512).0, IOERR);
        // Not whole sectors.
        assert_eq!(d.request(VIRTIO_BLK_T_OUT, 0, 100).0, IOERR);
        // Unknown request type.
        assert_eq!(d.request(99, 0, 512), (VIRTIO_BLK_S_UNSUPP as u8, 1));
        // Header too short.
        d.header(VIRTIO_BLK_T_IN, 0);
        d.submit(&[(HDR, 8, false), (DATA, 512, true), (STATUS, 1, true)]);
        assert_eq!((d.complete(), d.status()), (1, IOERR));
        // Data in the wrong direction: a read into a device-readable buffer, a write from a
        // device-writable one.
        d.header(VIRTIO_BLK_T_IN, 0);
        d.submit(&[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)]);
        assert_eq!((d.complete(), d.status()), (1, IOERR));
        d.header(VIRTIO_BLK_T_OUT, 0);
        d.submit(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
        assert_eq!((d.complete(), d.status()), (1, IOERR));
        // A readable buffer after a writable one.
        d.header(VIRTIO_BLK_T_IN, 0);
        d.submit(&[(HDR, 16, false), (DATA, 512, true), (DATA, 512, false), (STATUS, 1, true)]);
        assert_eq!((d.complete(), d.status()), (1, IOERR));
        // Data outside guest RAM, and straddling its end.
        d.header(VIRTIO_BLK_T_IN, 0);
        d.submit(&[(HDR, 16, false), (RAM + 0x1000, 512, true), (STATUS, 1, true)]);
        assert_eq!((d.complete(), d.status()), (1, IOERR));
        d.header(VIRTIO_BLK_T_OUT, 0);
        d.submit(&[(HDR, 16, false), (RAM - 256, 512, false), (STATUS, 1, true)]);
        assert_eq!((d.complete(), d.status()), (1, IOERR));
        // No status byte we can write: completed with nothing written, never a hang.
        d.header(VIRTIO_BLK_T_IN, 0);
        d.submit(&[(HDR, 16, false), (DATA, 512, false)]);
        assert_eq!(d.complete(), 0);
        d.submit(&[(HDR, 16, false), (RAM, 1, true)]);
        assert_eq!(d.complete(), 0);
        // Still serving after all that.
        assert_eq!(d.request(VIRTIO_BLK_T_IN, 1, 512), (OK, 513));
        assert_eq!(d.data(512), pattern(1));
    }
    assert_eq!(std::fs::read(&disk.0).unwrap(), before);
}

#[test]
fn a_read_only_disk_refuses_writes() {
    let disk = TempDisk::new("ro", 4);
    let mut d = driver(&disk.config(true), Version::Legacy);
    d.init(ALL, SIZE as u32);
    d.mem.write_slice(&[0x11; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(d.request(VIRTIO_BLK_T_OUT, 0, 512), (IOERR, 1));
    assert_eq!(d.request(VIRTIO_BLK_T_IN, 0, 512), (OK, 513));
    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, 0), (OK, 1));
    assert_eq!(disk.sector(0), pattern(0));
}

#[test]
fn reset_stops_the_queue_and_clears_the_interrupt() {
    let disk = TempDisk::new("reset", 4);
    let mut d = driver(&disk.config(false), Version::Modern);
    d.init(ALL, SIZE as u32);
    assert_eq!(d.request(VIRTIO_BLK_T_IN, 0, 512).0, OK);
    assert!(d.line.high.load(Ordering::SeqCst));
    d.write(VIRTIO_MMIO_STATUS, 0);
    assert_eq!(d.read(VIRTIO_MMIO_STATUS), 0);
    assert_eq!(d.read(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert!(!d.line.high.load(Ordering::SeqCst));
    assert_eq!(d.read(VIRTIO_MMIO_QUEUE_READY), 0);
    // A notify after the reset is not served.
    d.header(VIRTIO_BLK_T_IN, 1);
    d.submit(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(d.used_idx(), 1);
    // Set up again from scratch, it works as new.
    d.mem.write_slice(&[0u8; 0x3000], GuestAddress(RING)).unwrap();
    d.init(ALL, SIZE as u32);
    assert_eq!(d.request(VIRTIO_BLK_T_IN, 2, 512), (OK, 513));
    assert_eq!(d.data(512), pattern(2));
}

#[test]
fn misprogrammed_queues_need_a_reset_and_never_hang() {
    let disk = TempDisk::new("mis", 4);
    // Modern without VIRTIO_F_VERSION_1: FEATURES_OK does not stick, the queue stays unused.
    let mut d = driver(&disk.config(false), Version::Modern);
    d.init(ALL & !(1 << VIRTIO_F_VERSION_1), SIZE as u32);
    assert_eq!(d.read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    assert_ne!(d.read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    // A queue size that is not a power of two.
    let mut d = driver(&disk.config(false), Version::Legacy);
    d.init(ALL, 3);
    assert_ne!(d.read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    // Rings outside guest RAM (legacy PFN past the end).
    let mut d = driver(&disk.config(false), Version::Legacy);
    d.init(ALL, SIZE as u32);
    d.write(VIRTIO_MMIO_STATUS, 0);
    d.write(VIRTIO_MMIO_QUEUE_NUM, SIZE as u32);
    d.write(VIRTIO_MMIO_QUEUE_PFN, (RAM / 4096) as u32);
    d.write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_DRIVER_OK);
    assert_ne!(d.read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    // An avail index far ahead of the ring: the device gives up on the queue, says so with a
    // config interrupt, and a reset brings it back.
    let mut d = driver(&disk.config(false), Version::Modern);
    d.init(ALL, SIZE as u32);
    d.mem.write_obj(1000u16, GuestAddress(d.avail + 2)).unwrap();
    d.write(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET == 0 {
        assert!(Instant::now() < deadline, "no DEVICE_NEEDS_RESET");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(d.read(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
    d.mem.write_slice(&[0u8; 0x3000], GuestAddress(RING)).unwrap();
    d.init(ALL, SIZE as u32);
    assert_eq!(d.request(VIRTIO_BLK_T_IN, 0, 512), (OK, 513));
}

#[test]
fn the_worker_runs_under_its_own_jail() {
    // The filter is the worker thread's alone; a call missing from WORKER_SYSCALLS would kill
    // this test process with SIGSYS.
    let disk = TempDisk::new("jail", 4);
    let mut d = Driver::new(&disk.config(false), Version::Legacy, Arc::new(Line::default()), true).unwrap();
    d.init(ALL, SIZE as u32);
    d.mem.write_slice(&[0x77; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(d.request(VIRTIO_BLK_T_OUT, 1, 512), (OK, 1));
    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, 0), (OK, 1));
    assert_eq!(d.request(VIRTIO_BLK_T_IN, 2, 512), (OK, 513));
    drop(d); // stops the worker, which fsyncs
    assert_eq!(disk.sector(1), vec![0x77; 512]);
}

#[test]
fn opening_a_bad_disk_is_a_one_line_bad_input() {
    let missing = DiskConfig { path: "/nonexistent/disk.img".into(), read_only: false };
    let e = Block::open(&missing).err().unwrap();
    assert_eq!(e.exit_code(), 2);
    assert!(e.message.starts_with("--disk /nonexistent/disk.img: "), "{}", e.message);
    let dir = DiskConfig { path: std::env::temp_dir(), read_only: true };
    let e = Block::open(&dir).err().unwrap();
    assert!(e.message.ends_with("is a directory, not a disk image"), "{}", e.message);
    let null = DiskConfig { path: "/dev/null".into(), read_only: true };
    assert!(Block::open(&null).err().unwrap().message.contains("neither a regular file nor a block device"));
    assert!(!e.message.contains('\n'));
}
