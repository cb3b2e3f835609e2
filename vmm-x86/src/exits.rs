//! What to do about a KVM exit. [`dispatch`] is pure: it takes an exit described without KVM
//! (tests fabricate them) and says what should happen; [`apply`] carries out the device part
//! on the PIO and MMIO buses. vm.rs does only the ioctls around them.
use common::bus::{Bus, BusError, DeviceRequest};
use common::vm::GuestExit;
use kvm_ioctls::VcpuExit;

/// A KVM exit, with the data it carries, independent of kvm-ioctls.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit<'a> {
    /// `data` holds `data.len() / size` accesses of `size` bytes each, one after another:
    /// string I/O (`rep insb`, `outsw`) can hand several accesses over in one exit.
    IoOut {
        port: u16,
        size: usize,
        data: &'a [u8],
    },
    IoIn {
        port: u16,
        size: usize,
        data: &'a mut [u8],
    },
    MmioRead {
        addr: u64,
        data: &'a mut [u8],
    },
    MmioWrite {
        addr: u64,
        data: &'a [u8],
    },
    Hlt,
    /// KVM_EXIT_SHUTDOWN: on x86 a triple fault.
    Shutdown,
    FailEntry {
        reason: u64,
        cpu: u32,
    },
    /// KVM_EXIT_INTERNAL_ERROR; the suberror is read from kvm_run by diag.rs.
    InternalError,
    SystemEvent {
        kind: u32,
    },
    /// KVM_RUN returned EINTR or KVM_EXIT_INTR: a signal (the timeout watchdog) kicked us out.
    Interrupted,
    /// KVM_EXIT_DEBUG (with --gdb): a single step or a breakpoint, by exception vector and DR6.
    Debug {
        exception: u32,
        dr6: u64,
    },
    /// Any other exit reason, by name.
    Other(&'static str),
}

/// Why the guest cannot go on; vm.rs adds the CPU state (RIP, instruction bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    TripleFault,
    FailEntry {
        reason: u64,
        cpu: u32,
    },
    InternalError,
    /// An exit this VMM does not handle.
    Unhandled(&'static str),
}

impl Action<'_> {
    /// The port of a port write (the UART's queue follows its register writes).
    pub fn pio_write_port(&self) -> Option<u16> {
        match self {
            Action::PioWrite { port, .. } => Some(*port),
            _ => None,
        }
    }
}

/// What the run loop does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// `data.len() / size` accesses of `size` bytes to `port`, in order (see [`Exit::IoOut`]).
    PioWrite {
        port: u16,
        size: usize,
        data: &'a [u8],
    },
    PioRead {
        port: u16,
        size: usize,
        data: &'a mut [u8],
    },
    MmioWrite {
        addr: u64,
        data: &'a [u8],
    },
    MmioRead {
        addr: u64,
        data: &'a mut [u8],
    },
    /// Nothing to do: enter the guest again.
    Resume,
    /// A signal interrupted KVM_RUN: stop if the timeout fired, else go on.
    CheckTimeout,
    /// The guest ended normally.
    Stop(GuestExit),
    /// A debug exit for gdb (gdb.rs), or unhandled without --gdb.
    Debug {
        exception: u32,
        dr6: u64,
    },
    Fail(Failure),
}

// KVM_SYSTEM_EVENT_* types (linux/kvm.h).
const SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const SYSTEM_EVENT_RESET: u32 = 2;

/// The statistics name of an exit and what to do about it. Pure.
pub fn dispatch(exit: Exit<'_>) -> (&'static str, Action<'_>) {
    match exit {
        Exit::IoOut { port, size, data } => ("io-out", Action::PioWrite { port, size, data }),
        Exit::IoIn { port, size, data } => ("io-in", Action::PioRead { port, size, data }),
        Exit::MmioRead { addr, data } => ("mmio-read", Action::MmioRead { addr, data }),
        Exit::MmioWrite { addr, data } => ("mmio-write", Action::MmioWrite { addr, data }),
        Exit::Hlt => ("hlt", Action::Stop(GuestExit::Halted)),
        Exit::Shutdown => ("shutdown", Action::Fail(Failure::TripleFault)),
        Exit::FailEntry { reason, cpu } => ("fail-entry", Action::Fail(Failure::FailEntry { reason, cpu })),
        Exit::InternalError => ("internal-error", Action::Fail(Failure::InternalError)),
        // A guest that asks KVM to power off or reset (PSCI-like, or a reset we do not emulate) is done.
        Exit::SystemEvent { kind: SYSTEM_EVENT_SHUTDOWN | SYSTEM_EVENT_RESET } => {
            ("system-event", Action::Stop(GuestExit::PowerOff(0)))
        }
        Exit::SystemEvent { .. } => ("system-event", Action::Fail(Failure::Unhandled("system-event"))),
        Exit::Interrupted => ("intr", Action::CheckTimeout),
        Exit::Debug { exception, dr6 } => ("debug", Action::Debug { exception, dr6 }),
        Exit::Other(name) => (name, Action::Fail(Failure::Unhandled(name))),
    }
}

/// The devices a guest reaches through exits, and what to do with an access nobody claims.
pub struct Devices {
    pub pio: Bus,
    pub mmio: Bus,
    /// Flat guests: an unknown port or MMIO address is a guest failure. Linux probes ports
    /// that do not exist, so there it is only counted.
    pub strict: bool,
}

/// An access to an address no device claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown {
    pub space: Space,
    pub addr: u64,
    pub write: bool,
    pub size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Pio,
    Mmio,
}

/// What applying a device action led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The device named `device` handled it; enter the guest again.
    Done { device: &'static str },
    /// The device named `device` asked for something (power off).
    Request { device: &'static str, request: DeviceRequest },
    /// Nobody claims the address, and the policy is to count it: stats kind to record instead.
    Ignored(&'static str),
    /// Nobody claims the address, and the policy is strict.
    Unknown(Unknown),
}

/// The length of one access in an I/O exit whose data area is `len` bytes: `size`, unless
/// that does not describe the data (zero, or more than there is), when it is all one access.
fn access_len(size: usize, len: usize) -> usize {
    if size == 0 || size > len {
        len.max(1)
    } else {
        size
    }
}

/// Each access of a port write in turn; stops at the first one that asks for something or
/// that no device claims (the rest go to the same port, so they would fare the same).
fn pio_write(
    pio: &Bus,
    port: u64,
    size: usize,
    data: &[u8],
) -> Result<(&'static str, Option<DeviceRequest>), BusError> {
    let mut result = Ok(("", None));
    for access in data.chunks(access_len(size, data.len())) {
        result = pio.write(port, access);
        if !matches!(result, Ok((_, None))) {
            break;
        }
    }
    result
}

/// Each access of a port read in turn, each filling its own slot of `data`.
fn pio_read(pio: &Bus, port: u64, size: usize, data: &mut [u8]) -> Result<&'static str, BusError> {
    let mut result = Ok("");
    let len = access_len(size, data.len());
    for access in data.chunks_mut(len) {
        result = pio.read(port, access);
        if result.is_err() {
            break;
        }
    }
    result
}

/// Performs a PIO/MMIO action on the buses. Other actions are not device work: they return
/// `Done` with no device name.
pub fn apply(action: Action<'_>, devices: &Devices) -> Applied {
    let (space, addr, write, size, result) = match action {
        Action::PioWrite { port, size, data } => {
            let r = pio_write(&devices.pio, port as u64, size, data);
            (Space::Pio, port as u64, true, access_len(size, data.len()), r)
        }
        Action::PioRead { port, size, data } => {
            let len = access_len(size, data.len());
            let r = pio_read(&devices.pio, port as u64, size, data).map(|name| (name, None));
            if r.is_err() {
                // What a read of an empty ISA bus returns.
                data.fill(0xff);
            }
            (Space::Pio, port as u64, false, len, r)
        }
        Action::MmioWrite { addr, data } => (Space::Mmio, addr, true, data.len(), devices.mmio.write(addr, data)),
        Action::MmioRead { addr, data } => {
            let size = data.len();
            let r = devices.mmio.read(addr, data).map(|name| (name, None));
            if r.is_err() {
                data.fill(0xff);
            }
            (Space::Mmio, addr, false, size, r)
        }
        _ => return Applied::Done { device: "" },
    };
    match result {
        Ok((device, None)) => Applied::Done { device },
        Ok((device, Some(request))) => Applied::Request { device, request },
        Err(_) if !devices.strict => {
            Applied::Ignored(if space == Space::Pio { "io-unhandled" } else { "mmio-unhandled" })
        }
        Err(_) => Applied::Unknown(Unknown { space, addr, write, size }),
    }
}

/// The one line for a strict guest touching an address nobody claims.
pub fn unknown_access_message(u: &Unknown, rip: u64) -> String {
    let dir = if u.write { "write" } else { "read" };
    match u.space {
        Space::Pio => format!("guest {dir} of unknown I/O port {:#x} (size {}) at RIP={rip:#x}", u.addr, u.size),
        Space::Mmio => format!("guest {dir} of unknown MMIO address {:#x} (size {}) at RIP={rip:#x}", u.addr, u.size),
    }
}

/// Describes a kvm-ioctls exit in our own terms. kvm-ioctls gives an I/O exit's data as one
/// slice of `count * size` bytes and drops `size`, so the caller passes kvm_run's `io.size`
/// (only read for I/O exits).
pub fn from_kvm(exit: VcpuExit<'_>, io_size: u8) -> Exit<'_> {
    let size = io_size as usize;
    match exit {
        VcpuExit::IoOut(port, data) => Exit::IoOut { port, size, data },
        VcpuExit::IoIn(port, data) => Exit::IoIn { port, size, data },
        VcpuExit::MmioRead(addr, data) => Exit::MmioRead { addr, data },
        VcpuExit::MmioWrite(addr, data) => Exit::MmioWrite { addr, data },
        VcpuExit::Hlt => Exit::Hlt,
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::FailEntry(reason, cpu) => Exit::FailEntry { reason, cpu },
        VcpuExit::InternalError => Exit::InternalError,
        VcpuExit::SystemEvent(kind, _) => Exit::SystemEvent { kind },
        VcpuExit::Intr => Exit::Interrupted,
        VcpuExit::Unknown => Exit::Other("unknown"),
        VcpuExit::Exception => Exit::Other("exception"),
        VcpuExit::Hypercall(_) => Exit::Other("hypercall"),
        VcpuExit::Debug(arch) => Exit::Debug { exception: arch.exception, dr6: arch.dr6 },
        VcpuExit::IrqWindowOpen => Exit::Other("irq-window-open"),
        VcpuExit::Nmi => Exit::Other("nmi"),
        VcpuExit::IoapicEoi(_) => Exit::Other("ioapic-eoi"),
        VcpuExit::X86Rdmsr(_) => Exit::Other("rdmsr"),
        VcpuExit::X86Wrmsr(_) => Exit::Other("wrmsr"),
        _ => Exit::Other("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::bus::BusDevice;
    use common::console::Console;
    use common::devices::DebugPort;
    use std::sync::{Arc, Mutex};

    #[test]
    fn io_and_mmio_become_bus_actions() {
        let (k, a) = dispatch(Exit::IoOut { port: 0xf1, size: 1, data: b"H" });
        assert_eq!((k, a), ("io-out", Action::PioWrite { port: 0xf1, size: 1, data: b"H" }));
        let mut buf = [0u8; 2];
        let (k, a) = dispatch(Exit::IoIn { port: 0x60, size: 2, data: &mut buf });
        assert_eq!(k, "io-in");
        assert!(matches!(a, Action::PioRead { port: 0x60, size: 2, ref data } if data.len() == 2));
        let (k, a) = dispatch(Exit::MmioWrite { addr: 0xfee0_0000, data: &[1, 2, 3, 4] });
        assert_eq!((k, a), ("mmio-write", Action::MmioWrite { addr: 0xfee0_0000, data: &[1, 2, 3, 4] }));
        let mut m = [0u8; 8];
        let (k, a) = dispatch(Exit::MmioRead { addr: 0xd000_0000, data: &mut m });
        assert_eq!(k, "mmio-read");
        assert!(matches!(a, Action::MmioRead { addr: 0xd000_0000, .. }));
    }

    #[test]
    fn stops_and_failures() {
        assert_eq!(dispatch(Exit::Hlt), ("hlt", Action::Stop(GuestExit::Halted)));
        assert_eq!(dispatch(Exit::Shutdown), ("shutdown", Action::Fail(Failure::TripleFault)));
        assert_eq!(
            dispatch(Exit::FailEntry { reason: 0x21, cpu: 0 }),
            ("fail-entry", Action::Fail(Failure::FailEntry { reason: 0x21, cpu: 0 }))
        );
        assert_eq!(dispatch(Exit::InternalError), ("internal-error", Action::Fail(Failure::InternalError)));
        assert_eq!(dispatch(Exit::Interrupted), ("intr", Action::CheckTimeout));
        let step = Exit::Debug { exception: 1, dr6: 0x4000 };
        assert_eq!(dispatch(step), ("debug", Action::Debug { exception: 1, dr6: 0x4000 }));
        assert_eq!(dispatch(Exit::SystemEvent { kind: 1 }), ("system-event", Action::Stop(GuestExit::PowerOff(0))));
        assert_eq!(dispatch(Exit::Other("debug")), ("debug", Action::Fail(Failure::Unhandled("debug"))));
    }

    struct PowerButton;
    impl BusDevice for PowerButton {
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            data.fill(0x42);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) -> Option<DeviceRequest> {
            Some(DeviceRequest::PowerOff(data[0] as i32))
        }
    }

    fn devices(strict: bool, console: &Console) -> Devices {
        let mut pio = Bus::new();
        pio.insert(0xf1, 1, "debug", Arc::new(Mutex::new(DebugPort::new(console.clone())))).unwrap();
        pio.insert(0x64, 1, "power", Arc::new(Mutex::new(PowerButton))).unwrap();
        let mut mmio = Bus::new();
        mmio.insert(0x1000_0000, 8, "power", Arc::new(Mutex::new(PowerButton))).unwrap();
        Devices { pio, mmio, strict }
    }

    #[test]
    fn apply_reaches_devices_and_passes_requests_on() {
        let console = Console::capture();
        let d = devices(true, &console);
        assert_eq!(apply(Action::PioWrite { port: 0xf1, size: 1, data: b"H" }, &d), Applied::Done { device: "debug" });
        assert_eq!(console.captured(), b"H");
        assert_eq!(
            apply(Action::PioWrite { port: 0x64, size: 1, data: &[3] }, &d),
            Applied::Request { device: "power", request: DeviceRequest::PowerOff(3) }
        );
        let mut b = [0u8; 4];
        assert_eq!(apply(Action::MmioRead { addr: 0x1000_0004, data: &mut b }, &d), Applied::Done { device: "power" });
        assert_eq!(b, [0x42; 4]);
        assert_eq!(apply(Action::Resume, &d), Applied::Done { device: "" });
    }

    /// Counts reads: each one fills its slot with the count so far.
    struct Counter(u8);
    impl BusDevice for Counter {
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            self.0 += 1;
            data.fill(self.0);
        }
        fn write(&mut self, _offset: u64, _data: &[u8]) -> Option<DeviceRequest> {
            None
        }
    }

    #[test]
    fn string_io_reaches_the_device_once_per_access() {
        let console = Console::capture();
        let mut d = devices(true, &console);
        d.pio.insert(0x70, 1, "counter", Arc::new(Mutex::new(Counter(0)))).unwrap();
        // `rep outsb` of five bytes, as KVM reports it: one exit, count 5, size 1.
        let (_, a) = dispatch(Exit::IoOut { port: 0xf1, size: 1, data: b"Hello" });
        assert_eq!(apply(a, &d), Applied::Done { device: "debug" });
        // `rep outsw`: two 2-byte accesses; the debug port prints each one's low byte.
        let (_, a) = dispatch(Exit::IoOut { port: 0xf1, size: 2, data: b"!\0\n\0" });
        assert_eq!(apply(a, &d), Applied::Done { device: "debug" });
        assert_eq!(console.captured(), b"Hello!\n");
        // `rep insb` of four bytes: four reads, each filling its own byte.
        let mut buf = [0u8; 4];
        let (_, a) = dispatch(Exit::IoIn { port: 0x70, size: 1, data: &mut buf });
        assert_eq!(apply(a, &d), Applied::Done { device: "counter" });
        assert_eq!(buf, [1, 2, 3, 4]);
        // `rep insw` of two words.
        let mut buf = [0u8; 4];
        let (_, a) = dispatch(Exit::IoIn { port: 0x70, size: 2, data: &mut buf });
        assert_eq!(apply(a, &d), Applied::Done { device: "counter" });
        assert_eq!(buf, [5, 5, 6, 6]);
        // The first access that asks for something ends the string: the VM is stopping.
        let (_, a) = dispatch(Exit::IoOut { port: 0x64, size: 1, data: &[7, 8] });
        assert_eq!(apply(a, &d), Applied::Request { device: "power", request: DeviceRequest::PowerOff(7) });
        // A size that does not fit the data is one access of all of it, never a panic.
        let mut buf = [0u8; 3];
        assert_eq!(
            apply(Action::PioRead { port: 0x70, size: 0, data: &mut buf }, &d),
            Applied::Done { device: "counter" }
        );
        assert_eq!(buf, [7, 7, 7]);
        assert_eq!(apply(Action::PioWrite { port: 0xf1, size: 9, data: &[] }, &d), Applied::Done { device: "" });
        // An unknown port is reported with the size of one access, and reads as all ones.
        let Applied::Unknown(u) = apply(Action::PioWrite { port: 0x99, size: 2, data: &[1, 2, 3, 4] }, &d) else {
            panic!()
        };
        assert_eq!(u.size, 2);
        d.strict = false;
        let mut buf = [0u8; 4];
        assert_eq!(
            apply(Action::PioRead { port: 0x99, size: 1, data: &mut buf }, &d),
            Applied::Ignored("io-unhandled")
        );
        assert_eq!(buf, [0xff; 4]);
    }

    #[test]
    fn unknown_addresses_fail_strict_guests_and_are_counted_otherwise() {
        let console = Console::capture();
        let strict = devices(true, &console);
        let u = apply(Action::PioWrite { port: 0x99, size: 1, data: &[1] }, &strict);
        let Applied::Unknown(u) = u else { panic!("{u:?}") };
        assert_eq!(u, Unknown { space: Space::Pio, addr: 0x99, write: true, size: 1 });
        assert_eq!(unknown_access_message(&u, 0x1002), "guest write of unknown I/O port 0x99 (size 1) at RIP=0x1002");
        let mut b = [0u8; 2];
        let Applied::Unknown(u) = apply(Action::MmioRead { addr: 0xdead_0000, data: &mut b }, &strict) else {
            panic!()
        };
        assert_eq!(
            unknown_access_message(&u, 0x10),
            "guest read of unknown MMIO address 0xdead0000 (size 2) at RIP=0x10"
        );

        let lenient = devices(false, &console);
        let mut b = [0u8; 1];
        assert_eq!(
            apply(Action::PioRead { port: 0x80, size: 1, data: &mut b }, &lenient),
            Applied::Ignored("io-unhandled")
        );
        assert_eq!(b, [0xff], "an empty bus reads as all ones");
        assert_eq!(apply(Action::MmioWrite { addr: 0, data: &[0] }, &lenient), Applied::Ignored("mmio-unhandled"));
    }
}
