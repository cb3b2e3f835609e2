//! The one translate-then-access path: guest-virtual addresses through the guest's current
//! translation ([`crate::mmu`]) to guest RAM. Instruction fetch for emulation, the
//! interpreter's loads and stores, and anything else the monitor reads at a guest-virtual
//! address go through [`Virt`]; SBI buffers are guest-physical by the SBI spec and use
//! [`GuestRam`] directly.
//!
//! An access that crosses a page boundary is split, each part translated on its own, so a
//! fault names the address of the part that faulted. A physical address outside RAM goes to
//! the device [`common::bus::Bus`] (MMIO: the UART, the PLIC, virtio); one that no device
//! claims, an instruction fetch from a device, or a device access that is not naturally
//! aligned is an access fault of the access type, never a silent zero.
use crate::hart::Access;
use crate::interp::Bus;
use crate::mmu::{self, Fault, Regime, PAGE_SIZE};
use crate::platform::{GuestRam, Platform};
use common::bus::Bus as DeviceBus;

/// Guest RAM and devices seen through the translation `regime`.
pub struct Virt<'a> {
    pub ram: GuestRam<'a>,
    /// The devices behind the physical addresses that are not RAM; None: there are none.
    pub devices: Option<&'a DeviceBus>,
    pub regime: Regime,
}

/// Where one page's part of an access lands.
enum Place {
    Ram(std::ops::Range<usize>),
    /// A device register at this physical address.
    Device(u64),
}

impl<'a> Virt<'a> {
    /// The platform's guest physical memory (RAM and devices) through `regime`.
    pub fn of(platform: &'a mut dyn Platform, regime: Regime) -> Self {
        let (ram, devices) = platform.guest_phys();
        Virt { ram, devices, regime }
    }

    /// Where `[va, va + len)` lands; it must not cross a page.
    fn locate(&mut self, va: u64, len: u64, access: Access) -> Result<Place, Fault> {
        let t = mmu::translate(&mut self.ram, &self.regime, va, access)?;
        if let Some(r) = self.ram.range(t.pa, len as usize) {
            return Ok(Place::Ram(r));
        }
        let outside_ram = self.ram.range(t.pa, 1).is_none();
        match self.devices {
            Some(_) if outside_ram && access != Access::Fetch => Ok(Place::Device(t.pa)),
            _ => Err(mmu::access_fault(access, va)),
        }
    }

    /// A device access: one naturally aligned register of 1, 2, 4 or 8 bytes.
    fn device_ok(pa: u64, len: usize, whole: usize) -> bool {
        len == whole && matches!(len, 1 | 2 | 4 | 8) && pa.is_multiple_of(len as u64)
    }

    /// Fills `buf` from guest-virtual `va`.
    pub fn read_bytes(&mut self, va: u64, buf: &mut [u8], access: Access) -> Result<(), Fault> {
        let mut done = 0;
        while done < buf.len() {
            let at = va.wrapping_add(done as u64);
            let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(buf.len() - done);
            match self.locate(at, n as u64, access)? {
                Place::Ram(r) => buf[done..done + n].copy_from_slice(&self.ram.bytes[r]),
                Place::Device(pa) => {
                    let bus = self.devices.filter(|_| Self::device_ok(pa, n, buf.len()));
                    bus.and_then(|b| b.read(pa, buf).ok()).ok_or(mmu::access_fault(access, va))?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `bytes` at guest-virtual `va`. Every page is translated before any byte is
    /// written, so a store that faults on its second page changes nothing.
    pub fn write_bytes(&mut self, va: u64, bytes: &[u8]) -> Result<(), Fault> {
        let split = ((PAGE_SIZE - va % PAGE_SIZE) as usize).min(bytes.len());
        let first = self.locate(va, split as u64, Access::Store)?;
        let second = match bytes.len() - split {
            0 => None,
            n => Some(self.locate(va.wrapping_add(split as u64), n as u64, Access::Store)?),
        };
        let fault = mmu::access_fault(Access::Store, va);
        match (first, second) {
            (Place::Ram(first), second) => {
                let second = match second {
                    None => None,
                    Some(Place::Ram(r)) => Some(r),
                    // RAM then a device: a store that straddles them is refused whole.
                    Some(Place::Device(_)) => return Err(fault),
                };
                self.ram.bytes[first].copy_from_slice(&bytes[..split]);
                if let Some(r) = second {
                    self.ram.bytes[r].copy_from_slice(&bytes[split..]);
                }
            }
            (Place::Device(pa), None) if Self::device_ok(pa, split, bytes.len()) => {
                // No RISC-V device asks the VM for anything on a write (power-off is an SBI
                // call), so the bus's DeviceRequest is always None here.
                let bus = self.devices.ok_or(fault)?;
                bus.write(pa, bytes).map_err(|_| fault)?;
            }
            (Place::Device(_), _) => return Err(fault),
        }
        Ok(())
    }
}

impl Bus for Virt<'_> {
    fn read(&mut self, va: u64, size: u64, access: Access) -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        self.read_bytes(va, &mut b[..size as usize], access)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write(&mut self, va: u64, size: u64, value: u64) -> Result<(), Fault> {
        self.write_bytes(va, &value.to_le_bytes()[..size as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hart::Mode;
    use crate::mmu::tests::{TestRam, RAM};
    use crate::mmu::{PTE_R, PTE_V, PTE_W, PTE_X};
    use crate::trap;

    #[test]
    fn reads_and_writes_through_the_page_table() {
        let mut t = TestRam::new();
        t.map(0x10000, RAM + 0x10_0000, 0, PTE_V | PTE_R | PTE_W);
        t.map(0x11000, RAM + 0x20_0000, 0, PTE_V | PTE_R | PTE_W | PTE_X);
        let regime = t.regime(Mode::Supervisor);
        let mut v = Virt { ram: t.ram(), devices: None, regime };
        v.write(0x10ffc, 8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(v.read(0x10ffc, 8, Access::Load), Ok(0x1122_3344_5566_7788), "split across two frames");
        assert_eq!(&v.ram.bytes[0x10_0ffc..0x10_1000], &[0x88, 0x77, 0x66, 0x55]);
        assert_eq!(&v.ram.bytes[0x20_0000..0x20_0004], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(v.read(0x10000, 2, Access::Fetch), Err(Fault { cause: 12, tval: 0x10000 }), "not executable");
    }

    #[test]
    fn a_store_faulting_on_its_second_page_writes_nothing() {
        let mut t = TestRam::new();
        t.map(0x10000, RAM + 0x10_0000, 0, PTE_V | PTE_R | PTE_W);
        let regime = t.regime(Mode::Supervisor);
        let mut v = Virt { ram: t.ram(), devices: None, regime };
        assert_eq!(v.write(0x10ffe, 4, 0xffff_ffff), Err(Fault { cause: 15, tval: 0x11000 }));
        assert_eq!(v.read(0x10ffe, 2, Access::Load), Ok(0));
    }

    #[test]
    fn physical_addresses_outside_ram_are_access_faults() {
        let mut t = TestRam::new();
        t.map(0x10000, 0x1000_0000, 0, PTE_V | PTE_R | PTE_W);
        let regime = t.regime(Mode::Supervisor);
        let mut v = Virt { ram: t.ram(), devices: None, regime };
        assert_eq!(v.read(0x10000, 1, Access::Load), Err(Fault { cause: trap::LOAD_ACCESS_FAULT, tval: 0x10000 }));
        let bare = Regime { satp: 0, ..regime };
        let mut v = Virt { ram: t.ram(), devices: None, regime: bare };
        assert_eq!(v.read(RAM + 8, 1, Access::Load), Ok(0), "Bare: physical = virtual");
    }
}
