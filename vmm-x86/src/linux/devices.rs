//! The PC a Linux guest expects, set up before the vCPU exists: KVM's in-kernel interrupt
//! controllers (PIC, I/O APIC, local APICs) and PIT, and on the PIO bus the 8250 UART at
//! 0x3f8 (IRQ 4 through an irqfd), the i8042 (IRQs 1 and 12; its reset command ends the VM), the CMOS RTC,
//! the POST port 0x80 and a PCI configuration space with nothing behind it.
use crate::irq::IrqFdLine;
use crate::kvm::setup_error;
use common::bus::{Bus, SharedDevice};
use common::console::Console;
use common::devices::cmos::{CMOS_BASE, CMOS_PORTS};
use common::devices::i8042::{AUX_IRQ, I8042_BASE, I8042_PORTS, KBD_IRQ};
use common::devices::serial::{feed_input, SERIAL_REGS};
use common::devices::stubs::{PCI_ABSENT, PCI_CONFIG_BASE, PCI_CONFIG_PORTS, POST_PORT};
use common::devices::{Cmos, FixedPort, Serial, I8042};
use common::{Error, Result};
use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VmFd;
use std::sync::{Arc, Mutex};

pub const COM1_BASE: u64 = 0x3f8;
pub const COM1_IRQ: u32 = 4;

/// Where console input goes: for Linux, the UART's receive FIFO.
pub type InputSink = Box<dyn FnMut(&[u8]) + Send>;

/// The console UART, shared by the PIO bus and the run loop's queued writes (coalesced.rs).
pub type SharedSerial = Arc<Mutex<Serial<IrqFdLine>>>;

/// What the run needs of the devices [`setup_vm`] made.
pub struct LinuxDevices {
    pub input: InputSink,
    pub serial: SharedSerial,
}

fn pio_insert(pio: &mut Bus, base: u64, len: u64, name: &'static str, dev: SharedDevice) -> Result<()> {
    pio.insert(base, len, name, dev).map_err(|e| Error::bad_input(format!("PIO bus: {name}: {e}")))
}

/// KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2: interrupts and the timer, emulated in the kernel.
/// Also what `--lab-devices` gives a flat guest (teach.rs).
pub(crate) fn create_irqchip_and_pit(vm: &VmFd) -> Result<()> {
    vm.create_irq_chip().map_err(|e| setup_error("KVM_CREATE_IRQCHIP", e))?;
    // A dummy speaker port (0x61) inside KVM: Linux reads it to calibrate against the PIT.
    let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
    vm.create_pit2(pit).map_err(|e| setup_error("KVM_CREATE_PIT2", e))
}

/// Everything VM-wide for Linux, before any vCPU exists. Returns the UART and where console
/// input goes (into it); the run starts the input thread.
pub fn setup_vm(vm: &VmFd, pio: &mut Bus, console: &Console) -> Result<LinuxDevices> {
    create_irqchip_and_pit(vm)?;

    let serial: SharedSerial = Arc::new(Mutex::new(Serial::new(IrqFdLine::register(vm, COM1_IRQ)?, console.clone())));
    pio_insert(pio, COM1_BASE, SERIAL_REGS, "serial-0x3f8", serial.clone())?;
    // Both ports' lines: Linux's probe waits for IRQ 12 after the AUX loopback.
    let (kbd, aux) = (IrqFdLine::register(vm, KBD_IRQ)?, IrqFdLine::register(vm, AUX_IRQ)?);
    let i8042 = I8042::new(Arc::new(kbd), Arc::new(aux));
    pio_insert(pio, I8042_BASE, I8042_PORTS, "i8042", Arc::new(Mutex::new(i8042)))?;
    pio_insert(pio, CMOS_BASE, CMOS_PORTS, "cmos-rtc", Arc::new(Mutex::new(Cmos::new())))?;
    pio_insert(pio, POST_PORT, 1, "post-0x80", Arc::new(Mutex::new(FixedPort(0))))?;
    pio_insert(pio, PCI_CONFIG_BASE, PCI_CONFIG_PORTS, "pci-config", Arc::new(Mutex::new(FixedPort(PCI_ABSENT))))?;

    let input_side = serial.clone();
    Ok(LinuxDevices { input: Box::new(move |bytes: &[u8]| feed_input(&input_side, bytes)), serial })
}
