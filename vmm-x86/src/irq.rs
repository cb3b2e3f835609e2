//! Guest interrupts on x86: an eventfd registered with KVM as an irqfd for one GSI of the
//! in-kernel I/O APIC. One type serves every device: the virtio transports and the i8042
//! drive it as a [`common::irq::InterruptLine`] (levels), vm-superio's 16550 as a
//! [`vm_superio::Trigger`] (one edge per call).
use crate::kvm::setup_error;
use common::irq::InterruptLine;
use common::{Error, Result};
use kvm_ioctls::VmFd;
use std::sync::atomic::{AtomicBool, Ordering};
use vmm_sys_util::eventfd::EventFd;

/// An I/O APIC input driven through an irqfd. KVM's irqfd (without a resample fd) delivers an
/// edge per write, so only a rise of the level writes; the edge-triggered ISA pin does the rest.
pub struct IrqFdLine {
    fd: EventFd,
    high: AtomicBool,
}

impl IrqFdLine {
    /// An eventfd registered as GSI `irq` of `vm`.
    pub fn register(vm: &VmFd, irq: u32) -> Result<IrqFdLine> {
        let fd = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
            .map_err(|e| Error::bad_input(format!("eventfd for IRQ {irq}: {e}")))?;
        vm.register_irqfd(&fd, irq).map_err(|e| setup_error("KVM_IRQFD", e))?;
        Ok(IrqFdLine { fd, high: AtomicBool::new(false) })
    }
}

impl InterruptLine for IrqFdLine {
    fn set_level(&self, high: bool) {
        if high && !self.high.swap(true, Ordering::SeqCst) {
            let _ = self.fd.write(1);
        } else if !high {
            self.high.store(false, Ordering::SeqCst);
        }
    }
}

impl vm_superio::Trigger for IrqFdLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.fd.write(1)
    }
}
