//! The guest's physical memory map: QEMU `virt`'s, so a kernel written for that machine finds
//! its devices where it expects them (`qemu-system-riscv64 -M virt -machine dumpdtb=...`
//! shows the same addresses, sizes and interrupt numbers).
//!
//! | range                     | what                                              | PLIC source |
//! |---------------------------|---------------------------------------------------|-------------|
//! | 0x0c00_0000 + 0x60_0000   | PLIC (2 contexts: hart 0 M-mode, hart 0 S-mode)   |             |
//! | 0x1000_0000 + 0x100       | 16550A UART (8 byte registers, reg-shift 0)       | 10          |
//! | 0x1000_1000 + i * 0x1000  | virtio-mmio slot i (i = 0..8), one per `--disk`   | 1 + i       |
//! | 0x8000_0000 + --mem       | RAM                                               |             |
//!
//! Everything but RAM is left unmapped (PROT_NONE) in the engine, so a guest access to a
//! device faults and is performed on the device bus ([`crate::mmio`]).

pub const PLIC_BASE: u64 = 0x0c00_0000;
pub const PLIC_SIZE: u64 = 0x60_0000;
/// Interrupt sources 1..=PLIC_NDEV (QEMU virt: 95; source 0 means "none").
pub const PLIC_NDEV: u32 = 95;

pub const UART_BASE: u64 = 0x1000_0000;
pub const UART_SIZE: u64 = 0x100;
pub const UART_IRQ: u32 = 10;
/// The UART's input clock, as QEMU virt's device tree gives it (3.6864 MHz).
pub const UART_CLOCK: u32 = 3_686_400;

pub const VIRTIO_BASE: u64 = 0x1000_1000;
pub const VIRTIO_STRIDE: u64 = 0x1000;
pub const VIRTIO_SLOTS: usize = 8;
pub const VIRTIO_IRQ_BASE: u32 = 1;

/// The physical window of virtio-mmio slot `i`.
pub fn virtio_slot(i: usize) -> u64 {
    VIRTIO_BASE + i as u64 * VIRTIO_STRIDE
}

/// The statistics kind of a guest access to physical `pa` outside RAM.
pub fn mmio_kind(pa: u64) -> &'static str {
    let within = |base: u64, size: u64| pa.wrapping_sub(base) < size;
    if within(UART_BASE, UART_SIZE) {
        "mmio uart"
    } else if within(PLIC_BASE, PLIC_SIZE) {
        "mmio plic"
    } else if within(VIRTIO_BASE, VIRTIO_STRIDE * VIRTIO_SLOTS as u64) {
        "mmio virtio"
    } else {
        "mmio unmapped"
    }
}

/// The device windows (base, size) for `disks` virtio slots, for checking that no host
/// mapping sits on them.
pub fn device_windows(disks: usize) -> Vec<(u64, u64)> {
    let mut w = vec![(PLIC_BASE, PLIC_SIZE), (UART_BASE, UART_SIZE)];
    w.extend((0..disks.min(VIRTIO_SLOTS)).map(|i| (virtio_slot(i), VIRTIO_STRIDE)));
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_do_not_overlap_and_name_their_device() {
        let mut w = device_windows(VIRTIO_SLOTS);
        w.sort();
        for pair in w.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:x?}");
        }
        assert!(w.iter().all(|&(b, s)| b + s <= crate::loader::RAM_BASE));
        assert_eq!(mmio_kind(UART_BASE + 5), "mmio uart");
        assert_eq!(mmio_kind(PLIC_BASE + 0x20_0004), "mmio plic");
        assert_eq!(mmio_kind(virtio_slot(7) + 0xfff), "mmio virtio");
        assert_eq!(mmio_kind(virtio_slot(8)), "mmio unmapped");
        assert_eq!(mmio_kind(0x1000), "mmio unmapped");
    }
}
