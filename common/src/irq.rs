//! An interrupt line from a device to the guest's interrupt controller, one trait for both
//! backends: on x86 an irqfd (KVM's in-kernel IOAPIC takes it from there), on RISC-V an input
//! of our PLIC, which sets `sip.SEIP` for the hart.
//!
//! Devices speak in levels, as the hardware does: a virtio device holds its line high while its
//! InterruptStatus is non-zero, a 16550 while it has an interrupt identified. An edge-only sink
//! (irqfd without a resample fd) fires on each rise; a level sink (the PLIC's gateway) keeps the
//! source pending until it is claimed and the line has dropped.
use std::sync::Arc;

pub trait InterruptLine: Send + Sync {
    /// Drives the line to `high`. Called on every device state change; repeating the current
    /// level must be harmless.
    fn set_level(&self, high: bool);
}

/// A line shared by the device and whoever wires it up.
pub type SharedLine = Arc<dyn InterruptLine>;

/// A line that goes nowhere, for devices whose interrupt a guest polls instead (and tests).
pub struct NoLine;

impl InterruptLine for NoLine {
    fn set_level(&self, _high: bool) {}
}
