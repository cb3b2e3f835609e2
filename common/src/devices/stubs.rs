//! Placeholder ports a guest touches but that need no behaviour: reads return a fixed byte,
//! writes are dropped. The VM's exit loop still counts every access in the statistics.
use crate::bus::{BusDevice, DeviceRequest};

/// PCI configuration mechanism #1 (ports 0xcf8-0xcff) with no PCI bus behind it: all-ones is
/// what a guest reads for an absent device.
pub const PCI_CONFIG_BASE: u64 = 0xcf8;
pub const PCI_CONFIG_PORTS: u64 = 8;
pub const PCI_ABSENT: u8 = 0xff;

/// The POST-code port 0x80: BIOSes write progress codes there and Linux uses it as an I/O delay.
pub const POST_PORT: u64 = 0x80;

/// A port whose every byte reads as `self.0` and whose writes are dropped.
pub struct FixedPort(pub u8);

impl BusDevice for FixedPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.0);
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
        let mut p = FixedPort(PCI_ABSENT);
        assert_eq!(p.write(0, &[0, 0, 0, 0x80]), None);
        let mut d = [0u8; 4];
        p.read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xffff_ffff);
    }

    #[test]
    fn post_port_reads_zero() {
        let mut n = FixedPort(0);
        let mut d = [0xaau8; 2];
        n.read(0, &mut d);
        assert_eq!(d, [0, 0]);
        assert_eq!(n.write(0, &[0x12]), None);
    }
}
