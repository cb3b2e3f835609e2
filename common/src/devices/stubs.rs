//! Placeholder devices for PC ports a guest touches but that need no behaviour.
use crate::bus::{BusDevice, DeviceRequest};

/// PCI configuration mechanism #1 (ports 0xcf8-0xcff) with no PCI bus behind it: every read
/// returns all-ones, which is what a guest sees for an absent device, and writes are dropped.
pub const PCI_CONFIG_BASE: u64 = 0xcf8;
pub const PCI_CONFIG_PORTS: u64 = 8;

#[derive(Default)]
pub struct PciConfigStub;

impl BusDevice for PciConfigStub {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) -> Option<DeviceRequest> {
        None
    }
}

/// The POST-code port 0x80: BIOSes write progress codes there and Linux uses it as an I/O
/// delay. Accesses do nothing; the VM's exit loop still counts them in the statistics.
pub const POST_PORT: u64 = 0x80;

#[derive(Default)]
pub struct NullDevice;

impl BusDevice for NullDevice {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) -> Option<DeviceRequest> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_config_reads_all_ones() {
        let mut p = PciConfigStub;
        assert_eq!(p.write(0, &[0, 0, 0, 0x80]), None);
        let mut d = [0u8; 4];
        p.read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xffff_ffff);
    }

    #[test]
    fn null_device_reads_zero() {
        let mut n = NullDevice;
        let mut d = [0xaau8; 2];
        n.read(0, &mut d);
        assert_eq!(d, [0, 0]);
        assert_eq!(n.write(0, &[0x12]), None);
    }
}
