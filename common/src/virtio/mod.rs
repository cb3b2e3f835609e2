//! virtio over MMIO, for both backends: the transport's registers ([`mmio`]), the thread that
//! serves a device's queue ([`worker`]) and the one device we have, virtio-blk ([`block`]).
//!
//! How a request travels: the guest's driver fills the split ring (virtio-queue parses it) and
//! writes QueueNotify. That write happens on the vCPU thread, on URVirt even inside its SIGSEGV
//! handler, so it only writes to an eventfd (one async-signal-safe syscall). The worker thread,
//! blocked reading that eventfd, pops the descriptor chains, lets the device serve each one
//! (pread/pwrite/fsync on the disk file, straight into guest RAM), writes the used ring, sets
//! InterruptStatus and raises the device's [`crate::irq::SharedLine`]. Disk I/O never runs on
//! the vCPU thread or in a signal handler.
pub mod bench;
pub mod block;
pub mod driver;
pub mod mmio;
mod worker;

#[cfg(test)]
mod tests;

pub use mmio::{MmioTransport, Version, MMIO_SIZE};
pub use worker::WORKER_SYSCALLS;

use crate::memory::GuestRam;

/// One buffer of a descriptor chain, as the device sees it (chain order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub addr: u64,
    pub len: u32,
    /// Device-writable (VRING_DESC_F_WRITE); otherwise device-readable.
    pub writable: bool,
}

/// What a device behind [`MmioTransport`] provides. The transport answers register accesses
/// from what it learned at construction ([`VirtioDevice::device_id`], features, config space);
/// the device itself moves to the worker thread and only serves requests there.
pub trait VirtioDevice: Send + 'static {
    /// The virtio device ID (2 = block).
    fn device_id(&self) -> u32;
    /// Device feature bits (the transport adds VIRTIO_F_VERSION_1 for the modern interface).
    fn features(&self) -> u64;
    /// The device-specific configuration space at offset 0x100, little-endian.
    fn config_space(&self) -> Vec<u8>;
    /// Serves one request chain and returns how many bytes it wrote into the chain's writable
    /// buffers (the used ring's `len`). A malformed chain is answered, never a panic.
    fn serve(&mut self, mem: &GuestRam, chain: &[Buffer]) -> u32;
    /// The worker is ending (the VM is going away): make what the guest wrote durable.
    fn finish(&mut self) {}
}
