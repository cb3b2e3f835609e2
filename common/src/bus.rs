//! A bus maps address ranges to devices. One type serves x86 port I/O, x86 MMIO and RISC-V
//! MMIO, so the same device (say the 16550 UART) can sit behind any of them.
//!
//! Ranges live in a BTreeMap keyed by base address; inserting a range that overlaps an
//! existing one is refused, so two devices can never both claim an access.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a device may ask of the VM after an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// Stop the VM as a normal power-off with this exit status (e.g. i8042 reset with reboot=k).
    PowerOff(i32),
}

/// A device on a bus. `offset` is relative to the base the device was inserted at.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest>;
}

pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    Overlap {
        base: u64,
        len: u64,
    },
    EmptyRange,
    /// No device claims this address.
    Unmapped(u64),
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Overlap { base, len } => {
                write!(f, "range {base:#x}+{len:#x} overlaps a device already on the bus")
            }
            BusError::EmptyRange => write!(f, "a device range cannot be empty"),
            BusError::Unmapped(a) => write!(f, "no device at {a:#x}"),
        }
    }
}

#[derive(Clone)]
struct Slot {
    len: u64,
    name: &'static str,
    device: SharedDevice,
}

#[derive(Clone, Default)]
pub struct Bus {
    slots: BTreeMap<u64, Slot>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base+len)`. Fails if any byte is already claimed.
    pub fn insert(&mut self, base: u64, len: u64, name: &'static str, device: SharedDevice) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(BusError::EmptyRange)?;
        // The nearest range starting at or below our last byte is the only one that can overlap.
        if let Some((&b, s)) = self.slots.range(..end).next_back() {
            if b + s.len > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.slots.insert(base, Slot { len, name, device });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &Slot)> {
        let (&base, slot) = self.slots.range(..=addr).next_back()?;
        (addr - base < slot.len).then_some((base, slot))
    }

    /// Reads from the device at `addr`; returns its name (for statistics).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Result<&'static str, BusError> {
        let (base, slot) = self.find(addr).ok_or(BusError::Unmapped(addr))?;
        slot.device.lock().unwrap().read(addr - base, data);
        Ok(slot.name)
    }

    /// Writes to the device at `addr`; returns its name (for statistics) and what it asks for.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(&'static str, Option<DeviceRequest>), BusError> {
        let (base, slot) = self.find(addr).ok_or(BusError::Unmapped(addr))?;
        Ok((slot.name, slot.device.lock().unwrap().write(addr - base, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers the last write and answers reads with its offset.
    struct Probe(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest> {
            self.0.push((offset, data.to_vec()));
            (data == [0xfe]).then_some(DeviceRequest::PowerOff(0))
        }
    }

    fn probe() -> Arc<Mutex<Probe>> {
        Arc::new(Mutex::new(Probe(Vec::new())))
    }

    #[test]
    fn rejects_overlaps_accepts_neighbours() {
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, "uart", probe()).unwrap();
        assert!(bus.insert(0x3f0, 8, "left", probe()).is_ok());
        assert!(bus.insert(0x400, 1, "right", probe()).is_ok());
        assert_eq!(bus.insert(0x3ff, 2, "x", probe()), Err(BusError::Overlap { base: 0x3ff, len: 2 }));
        assert_eq!(bus.insert(0x3f7, 2, "x", probe()), Err(BusError::Overlap { base: 0x3f7, len: 2 }));
        assert_eq!(bus.insert(0x300, 0x200, "x", probe()), Err(BusError::Overlap { base: 0x300, len: 0x200 }));
        assert_eq!(bus.insert(0x10, 0, "x", probe()), Err(BusError::EmptyRange));
        assert_eq!(bus.insert(u64::MAX, 2, "x", probe()), Err(BusError::EmptyRange));
    }

    #[test]
    fn routes_by_offset_and_reports_unmapped() {
        let mut bus = Bus::new();
        let p = probe();
        bus.insert(0x1000, 0x10, "probe", p.clone()).unwrap();
        let mut b = [0u8; 2];
        assert_eq!(bus.read(0x1003, &mut b), Ok("probe"));
        assert_eq!(b, [3, 3]);
        assert_eq!(bus.write(0x100f, &[7]).unwrap(), ("probe", None));
        assert_eq!(bus.write(0x1000, &[0xfe]).unwrap(), ("probe", Some(DeviceRequest::PowerOff(0))));
        assert_eq!(p.lock().unwrap().0[0], (0xf, vec![7]));
        assert_eq!(bus.read(0x1010, &mut b), Err(BusError::Unmapped(0x1010)));
        assert_eq!(bus.write(0xfff, &[1]), Err(BusError::Unmapped(0xfff)));
    }
}
