//! A disk through the legacy virtio-mmio interface (version 1: GuestPageSize, QueuePFN,
//! QueueAlign), as rCore's virtio-drivers drives it: the device in slot 0 (0x10001000, PLIC
//! source 1), one queue of 8 descriptors in two pages, each request a chain of header, data
//! and status, each completion taken as the device's interrupt through the PLIC. Reads sectors 0 and 2,
//! writes sector 1 and reads it back, flushes, and asks for a sector past the end; prints what
//! each gave, the same under URVirt and under QEMU -M virt with force-legacy; the test checks
//! that the host file holds sector 1 afterwards.
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{fence, AtomicUsize, Ordering};
use riscv_guests::hw::{mmio_read, mmio_write, plic, trap, uart};
use riscv_guests::sbi;

const BASE: usize = 0x1000_1000;
const IRQ: u32 = 1;
// Legacy register offsets (virtio 1.2, 4.2.4).
const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const HOST_FEATURES: usize = 0x010;
const GUEST_FEATURES: usize = 0x020;
const GUEST_PAGE_SIZE: usize = 0x028;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_ALIGN: usize = 0x03c;
const QUEUE_PFN: usize = 0x040;
const QUEUE_NOTIFY: usize = 0x050;
const INTERRUPT_STATUS: usize = 0x060;
const INTERRUPT_ACK: usize = 0x064;
const STATUS: usize = 0x070;
const CONFIG: usize = 0x100;

const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const F_FLUSH: u32 = 1 << 9;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;

const N: usize = 8;
const PAGE: usize = 4096;
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// The legacy queue layout for N = 8 and QueueAlign 4096: descriptors, then the available
/// ring, and the used ring at the next 4 KiB boundary.
#[repr(C, align(4096))]
struct Queue {
    desc: [Desc; N],
    avail_flags: u16,
    avail_idx: u16,
    avail_ring: [u16; N],
    _pad: [u8; PAGE - 16 * N - 4 - 2 * N],
    used_flags: u16,
    used_idx: u16,
    used_ring: [(u32, u32); N],
    _tail: [u8; PAGE - 4 - 8 * N],
}

#[repr(C)]
struct Header {
    kind: u32,
    reserved: u32,
    sector: u64,
}

static mut QUEUE: Queue = Queue {
    desc: [Desc { addr: 0, len: 0, flags: 0, next: 0 }; N],
    avail_flags: 0,
    avail_idx: 0,
    avail_ring: [0; N],
    _pad: [0; PAGE - 16 * N - 4 - 2 * N],
    used_flags: 0,
    used_idx: 0,
    used_ring: [(0, 0); N],
    _tail: [0; PAGE - 4 - 8 * N],
};
static mut HEADER: Header = Header { kind: 0, reserved: 0, sector: 0 };
static mut STATUS_BYTE: u8 = 0;
static mut SECTOR: [u8; 512] = [0; 512];
/// Interrupts from the disk the handler acknowledged.
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static mut LAST_USED: u16 = 0;

#[no_mangle]
extern "C" fn on_trap() {
    if trap::scause() != trap::SUPERVISOR_EXTERNAL {
        uart::println(format_args!("blk: unexpected trap scause {:#x} sepc {:#x}", trap::scause(), trap::sepc()));
        sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_SYSTEM_FAILURE);
    }
    let source = plic::claim();
    if source == IRQ {
        let isr = mmio_read(BASE, INTERRUPT_STATUS);
        mmio_write(BASE, INTERRUPT_ACK, isr);
        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    }
    if source != 0 {
        plic::complete(source);
    }
}

fn fail(why: core::fmt::Arguments) -> ! {
    uart::println(format_args!("blk: FAIL {why}"));
    sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_SYSTEM_FAILURE);
}

/// Sets the device up (legacy order: reset, ACKNOWLEDGE, DRIVER, features, page size, queue
/// 0, DRIVER_OK); returns the capacity in sectors.
fn init() -> u64 {
    let (magic, version, id) = (mmio_read(BASE, MAGIC), mmio_read(BASE, VERSION), mmio_read(BASE, DEVICE_ID));
    if magic != 0x7472_6976 || version != 1 || id != 2 {
        fail(format_args!("magic {magic:#x} version {version} device {id}: not a legacy block device"));
    }
    mmio_write(BASE, STATUS, 0);
    mmio_write(BASE, STATUS, ACKNOWLEDGE);
    mmio_write(BASE, STATUS, ACKNOWLEDGE | DRIVER);
    let offered = mmio_read(BASE, HOST_FEATURES);
    mmio_write(BASE, GUEST_FEATURES, offered & F_FLUSH);
    mmio_write(BASE, GUEST_PAGE_SIZE, PAGE as u32);
    mmio_write(BASE, QUEUE_SEL, 0);
    let max = mmio_read(BASE, QUEUE_NUM_MAX);
    if (max as usize) < N {
        fail(format_args!("queue 0 holds {max} descriptors"));
    }
    mmio_write(BASE, QUEUE_NUM, N as u32);
    mmio_write(BASE, QUEUE_ALIGN, PAGE as u32);
    mmio_write(BASE, QUEUE_PFN, (addr_of!(QUEUE) as usize / PAGE) as u32);
    mmio_write(BASE, STATUS, ACKNOWLEDGE | DRIVER | DRIVER_OK);
    uart::println(format_args!("blk: legacy virtio-mmio block device, flush {}", offered & F_FLUSH != 0));
    mmio_read(BASE, CONFIG) as u64 | (mmio_read(BASE, CONFIG + 4) as u64) << 32
}

/// One request on SECTOR (a 3-descriptor chain; flush: 2), completed by the interrupt.
/// Returns the status byte.
fn request(kind: u32, sector: u64) -> u8 {
    // SAFETY: the device touches these only between the notify and the used-ring update we
    // wait for; volatile accesses keep the compiler from caching them across it.
    unsafe {
        write_volatile(addr_of_mut!(HEADER), Header { kind, reserved: 0, sector });
        write_volatile(addr_of_mut!(STATUS_BYTE), 0xff);
        let q = &mut *addr_of_mut!(QUEUE);
        let status = Desc { addr: addr_of!(STATUS_BYTE) as u64, len: 1, flags: DESC_WRITE, next: 0 };
        q.desc[0] = Desc { addr: addr_of!(HEADER) as u64, len: 16, flags: DESC_NEXT, next: 1 };
        if kind == T_FLUSH {
            q.desc[1] = status;
        } else {
            let flags = DESC_NEXT | if kind == T_IN { DESC_WRITE } else { 0 };
            q.desc[1] = Desc { addr: addr_of!(SECTOR) as u64, len: 512, flags, next: 2 };
            q.desc[2] = status;
        }
        let idx = read_volatile(addr_of!(q.avail_idx));
        write_volatile(addr_of_mut!(q.avail_ring[idx as usize % N]), 0);
        fence(Ordering::SeqCst);
        write_volatile(addr_of_mut!(q.avail_idx), idx.wrapping_add(1));
        fence(Ordering::SeqCst);
        let before = INTERRUPTS.load(Ordering::SeqCst);
        mmio_write(BASE, QUEUE_NOTIFY, 0);
        // One interrupt per request: the handler acknowledged the last one, so this
        // completion raises the line again.
        while INTERRUPTS.load(Ordering::SeqCst) == before {
            trap::wait();
        }
        fence(Ordering::SeqCst);
        LAST_USED = LAST_USED.wrapping_add(1);
        if read_volatile(addr_of!(q.used_idx)) != LAST_USED {
            fail(format_args!("the interrupt came before the used ring moved"));
        }
        read_volatile(addr_of!(STATUS_BYTE))
    }
}

fn sector() -> &'static mut [u8; 512] {
    // SAFETY: only used between requests, when the device does not touch it.
    unsafe { &mut *addr_of_mut!(SECTOR) }
}

/// The sector's first line.
fn first_line(s: &[u8]) -> &str {
    let end = s.iter().position(|&b| b == b'\n' || b == 0).unwrap_or(s.len());
    core::str::from_utf8(&s[..end]).unwrap_or("(not UTF-8)")
}

const WRITTEN: &[u8] = b"sector 1 as the guest wrote it through legacy virtio-blk\n";

#[no_mangle]
extern "C" fn guest_main(_hart: usize, _dtb: usize) -> ! {
    uart::init();
    plic::set_priority(IRQ, 1);
    plic::enable(IRQ);
    plic::set_threshold(0);
    trap::install();
    let capacity = init();
    uart::println(format_args!("blk: capacity {capacity} sectors"));

    for s in [0, 2] {
        let status = request(T_IN, s);
        uart::println(format_args!("blk: read sector {s}: status {status}, {:?}", first_line(sector())));
    }
    sector().fill(0);
    sector()[..WRITTEN.len()].copy_from_slice(WRITTEN);
    uart::println(format_args!("blk: write sector 1: status {}", request(T_OUT, 1)));
    sector().fill(0xee);
    let status = request(T_IN, 1);
    let same = sector()[..WRITTEN.len()] == *WRITTEN && sector()[WRITTEN.len()..].iter().all(|&b| b == 0);
    uart::println(format_args!("blk: read sector 1 back: status {status}, same as written {same}"));
    uart::println(format_args!("blk: flush: status {}", request(T_FLUSH, 0)));
    uart::println(format_args!("blk: read sector {capacity} (past the end): status {}", request(T_IN, capacity)));
    uart::println(format_args!("blk: {} requests, one interrupt each", INTERRUPTS.load(Ordering::SeqCst)));
    uart::println(format_args!("blk: done"));
    sbi::system_reset(sbi::RESET_SHUTDOWN, sbi::REASON_NONE);
}
