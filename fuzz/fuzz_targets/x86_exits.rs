//! The x86 exit dispatcher (vmm-x86/src/exits.rs): a sequence of fabricated KVM exits (port
//! I/O with KVM's sizes and repeat counts, MMIO of 1 to 8 bytes, and every other kind) run
//! through `dispatch` and `apply` against the devices a Linux guest gets, strict or lenient,
//! plus a recording device.
//!
//! Invariants: no panic; each exit becomes the action of its own kind carrying the same port,
//! size, address and bytes; string I/O reaches a device as `count` accesses of `size` bytes in
//! order, each read filling its own slot; an access nobody claims is a failure only for a
//! strict guest, and a read of it returns all ones; only the i8042 asks for a power-off; the
//! one-line message for an unknown access names the address and the size of one access.
#![no_main]

use arbitrary::Arbitrary;
use common::bus::{Bus, DeviceRequest, SharedDevice};
use common::console::Console;
use common::devices::cmos::{CMOS_BASE, CMOS_PORTS};
use common::devices::debug_port::{BOCHS_PORT, HELLO_PORT};
use common::devices::i8042::{I8042_BASE, I8042_PORTS};
use common::devices::serial::{Trigger, SERIAL_REGS};
use common::devices::stubs::{PCI_ABSENT, PCI_CONFIG_BASE, PCI_CONFIG_PORTS, POST_PORT};
use common::devices::{Cmos, DebugPort, FixedPort, Serial, I8042};
use common::vm::GuestExit;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex};
use vmm_x86::exits::{apply, dispatch, unknown_access_message, Action, Applied, Devices, Exit, Failure, Space};
use vmm_x86::linux::devices::COM1_BASE;

/// Where the fuzz target puts a UART on the MMIO bus (x86 Linux has none; RISC-V does).
const MMIO_UART: u64 = 0x1000_0000;

/// A port with the recording device: nothing else uses it.
const RECORDER: u64 = 0x510;

/// The PIO devices and their ranges, as linux/devices.rs and vm.rs place them.
const PORTS: [(u64, u64); 9] = [
    (RECORDER, 1),
    (HELLO_PORT, 1),
    (BOCHS_PORT, 1),
    (COM1_BASE, SERIAL_REGS),
    (I8042_BASE, I8042_PORTS),
    (CMOS_BASE, CMOS_PORTS),
    (POST_PORT, 1),
    (PCI_CONFIG_BASE, PCI_CONFIG_PORTS),
    (0x99, 0), // nobody
];

struct NoIrq;
impl Trigger for NoIrq {
    type E = ();
    fn trigger(&self) -> Result<(), ()> {
        Ok(())
    }
}

/// Remembers every access; each read returns the number of reads so far in every byte.
#[derive(Default)]
struct Recorder {
    writes: Vec<Vec<u8>>,
    reads: Vec<usize>,
}

impl common::bus::BusDevice for Recorder {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        self.reads.push(data.len());
        data.fill(self.reads.len() as u8);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        self.writes.push(data.to_vec());
        None
    }
}

fn shared<D: common::bus::BusDevice + 'static>(d: D) -> SharedDevice {
    Arc::new(Mutex::new(d))
}

fn devices(strict: bool, console: &Console, recorder: &Arc<Mutex<Recorder>>) -> Devices {
    let mut pio = Bus::new();
    pio.insert(RECORDER, 1, "recorder", recorder.clone()).unwrap();
    pio.insert(HELLO_PORT, 1, "debug-0xf1", shared(DebugPort::new(console.clone()))).unwrap();
    pio.insert(BOCHS_PORT, 1, "debug-0xe9", shared(DebugPort::new(console.clone()))).unwrap();
    pio.insert(COM1_BASE, SERIAL_REGS, "serial-0x3f8", shared(Serial::new(NoIrq, console.clone()))).unwrap();
    pio.insert(I8042_BASE, I8042_PORTS, "i8042", shared(I8042::default())).unwrap();
    pio.insert(CMOS_BASE, CMOS_PORTS, "cmos-rtc", shared(Cmos::new())).unwrap();
    pio.insert(POST_PORT, 1, "post-0x80", shared(FixedPort(0))).unwrap();
    pio.insert(PCI_CONFIG_BASE, PCI_CONFIG_PORTS, "pci-config", shared(FixedPort(PCI_ABSENT))).unwrap();
    let mut mmio = Bus::new();
    mmio.insert(MMIO_UART, 0x100, "serial-mmio", shared(Serial::new(NoIrq, console.clone()))).unwrap();
    Devices { pio, mmio, strict }
}

/// A port: mostly at or near a device, sometimes anywhere.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Port {
    Near { device: u8, offset: u8 },
    Raw(u16),
}

impl Port {
    fn get(self) -> u16 {
        match self {
            Port::Near { device, offset } => {
                let (base, len) = PORTS[device as usize % PORTS.len()];
                (base + u64::from(offset) % (len + 2)) as u16
            }
            Port::Raw(p) => p,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Uart(u8),
    Raw(u64),
}

impl Addr {
    fn get(self) -> u64 {
        match self {
            Addr::Uart(off) => MMIO_UART - 8 + u64::from(off) * 2,
            Addr::Raw(a) => a,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// KVM_EXIT_IO: `size` 1, 2 or 4 bytes, `count` repeats (rep outs/ins), size * count bytes.
    IoOut {
        port: Port,
        size: u8,
        count: u8,
        bytes: Vec<u8>,
    },
    IoIn {
        port: Port,
        size: u8,
        count: u8,
    },
    MmioRead {
        addr: Addr,
        len: u8,
    },
    MmioWrite {
        addr: Addr,
        len: u8,
        bytes: Vec<u8>,
    },
    Hlt,
    Shutdown,
    FailEntry {
        reason: u64,
        cpu: u32,
    },
    InternalError,
    SystemEvent {
        kind: u32,
    },
    Interrupted,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    strict: bool,
    ops: Vec<Op>,
}

const OTHER: [&str; 5] = ["unknown", "exception", "debug", "nmi", "rdmsr"];

/// `len` bytes taken from `bytes`, padded with zeros.
fn fill(bytes: &[u8], len: usize) -> Vec<u8> {
    (0..len).map(|i| bytes.get(i).copied().unwrap_or(0)).collect()
}

/// KVM's access size (1, 2 or 4) and repeat count (1 to 16).
fn io_shape(size: u8, count: u8) -> (usize, usize) {
    ([1, 2, 4][size as usize % 3], 1 + count as usize % 16)
}

/// Applies a device action and checks what came back against the access.
fn check_applied(applied: Applied, devices: &Devices, space: Space, addr: u64, write: bool, size: usize) {
    match applied {
        Applied::Done { device } => assert!(!device.is_empty(), "a device access names its device"),
        Applied::Request { device, request: DeviceRequest::PowerOff(_) } => {
            assert_eq!(device, "i8042", "only the i8042 resets the machine");
            assert!(write, "a read asked for a power-off");
        }
        Applied::Ignored(kind) => {
            assert!(!devices.strict);
            assert_eq!(kind, if space == Space::Pio { "io-unhandled" } else { "mmio-unhandled" });
        }
        Applied::Unknown(u) => {
            assert!(devices.strict);
            assert_eq!((u.space, u.addr, u.write, u.size), (space, addr, write, size));
            let line = unknown_access_message(&u, 0x1000);
            assert!(line.contains(&format!("{addr:#x} (size {size})")) && !line.contains('\n'), "{line}");
        }
    }
}

fuzz_target!(|input: Input| {
    let console = Console::capture();
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let devices = devices(input.strict, &console, &recorder);
    for op in input.ops.into_iter().take(64) {
        match op {
            Op::IoOut { port, size, count, bytes } => {
                let (size, count) = io_shape(size, count);
                let (port, data) = (port.get(), fill(&bytes, size * count));
                recorder.lock().unwrap().writes.clear();
                let (kind, action) = dispatch(Exit::IoOut { port, size, data: &data });
                assert_eq!(kind, "io-out");
                assert_eq!(action, Action::PioWrite { port, size, data: &data });
                check_applied(apply(action, &devices), &devices, Space::Pio, port.into(), true, size);
                if u64::from(port) == RECORDER {
                    let seen = recorder.lock().unwrap().writes.clone();
                    let sent: Vec<Vec<u8>> = data.chunks(size).map(<[u8]>::to_vec).collect();
                    assert_eq!(seen, sent, "rep outs of {count} x {size} bytes");
                }
            }
            Op::IoIn { port, size, count } => {
                let (size, count) = io_shape(size, count);
                let (port, mut data) = (port.get(), vec![0x5a; size * count]);
                recorder.lock().unwrap().reads.clear();
                let (kind, action) = dispatch(Exit::IoIn { port, size, data: &mut data });
                assert_eq!(kind, "io-in");
                assert!(matches!(action, Action::PioRead { port: p, size: s, ref data }
                    if p == port && s == size && data.len() == size * count));
                let applied = apply(action, &devices);
                if matches!(applied, Applied::Ignored(_) | Applied::Unknown(_)) {
                    assert!(data.iter().all(|&b| b == 0xff), "an unclaimed port reads as all ones: {data:?}");
                }
                check_applied(applied, &devices, Space::Pio, port.into(), false, size);
                if u64::from(port) == RECORDER {
                    assert_eq!(recorder.lock().unwrap().reads, vec![size; count], "rep ins of {count} x {size} bytes");
                    let expected: Vec<u8> = (1..=count).flat_map(|i| vec![i as u8; size]).collect();
                    assert_eq!(data, expected, "each read fills its own slot");
                }
            }
            Op::MmioRead { addr, len } => {
                let (addr, mut data) = (addr.get(), vec![0x5a; 1 + len as usize % 8]);
                let len = data.len();
                let (kind, action) = dispatch(Exit::MmioRead { addr, data: &mut data });
                assert_eq!(kind, "mmio-read");
                assert!(matches!(action, Action::MmioRead { addr: a, ref data } if a == addr && data.len() == len));
                let applied = apply(action, &devices);
                if matches!(applied, Applied::Ignored(_) | Applied::Unknown(_)) {
                    assert!(data.iter().all(|&b| b == 0xff), "unclaimed MMIO reads as all ones: {data:?}");
                }
                check_applied(applied, &devices, Space::Mmio, addr, false, len);
            }
            Op::MmioWrite { addr, len, bytes } => {
                let (addr, data) = (addr.get(), fill(&bytes, 1 + len as usize % 8));
                let (kind, action) = dispatch(Exit::MmioWrite { addr, data: &data });
                assert_eq!(kind, "mmio-write");
                assert_eq!(action, Action::MmioWrite { addr, data: &data });
                check_applied(apply(action, &devices), &devices, Space::Mmio, addr, true, data.len());
            }
            other => {
                let exit = match other {
                    Op::Hlt => Exit::Hlt,
                    Op::Shutdown => Exit::Shutdown,
                    Op::FailEntry { reason, cpu } => Exit::FailEntry { reason, cpu },
                    Op::InternalError => Exit::InternalError,
                    Op::SystemEvent { kind } => Exit::SystemEvent { kind },
                    Op::Interrupted => Exit::Interrupted,
                    Op::Other(i) => Exit::Other(OTHER[i as usize % OTHER.len()]),
                    _ => unreachable!("device exits are handled above"),
                };
                let expected = match &exit {
                    Exit::Hlt => Action::Stop(GuestExit::Halted),
                    Exit::Shutdown => Action::Fail(Failure::TripleFault),
                    Exit::FailEntry { reason, cpu } => Action::Fail(Failure::FailEntry { reason: *reason, cpu: *cpu }),
                    Exit::InternalError => Action::Fail(Failure::InternalError),
                    Exit::SystemEvent { kind: 1 | 2 } => Action::Stop(GuestExit::PowerOff(0)),
                    Exit::SystemEvent { .. } => Action::Fail(Failure::Unhandled("system-event")),
                    Exit::Interrupted => Action::CheckTimeout,
                    Exit::Other(name) => Action::Fail(Failure::Unhandled(name)),
                    _ => unreachable!(),
                };
                let (kind, action) = dispatch(exit);
                assert!(!kind.is_empty());
                assert_eq!(action, expected);
                assert_eq!(apply(action, &devices), Applied::Done { device: "" }, "not device work");
            }
        }
    }
});
