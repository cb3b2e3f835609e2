//! The one translate-then-access path: guest-virtual addresses through the guest's current
//! translation ([`crate::mmu`]) to guest RAM. Instruction fetch for emulation, the
//! interpreter's loads and stores, and anything else the monitor reads at a guest-virtual
//! address go through [`Virt`]; SBI buffers are guest-physical by the SBI spec and use
//! [`GuestRam`] directly.
//!
//! An access that crosses a page boundary is split, each part translated on its own, so a
//! fault names the address of the part that faulted. A physical address outside RAM is an
//! access fault of the access type (URVirt has no MMIO devices behind translation).
use crate::hart::Access;
use crate::interp::Bus;
use crate::mmu::{self, Fault, Regime, PAGE_SIZE};
use crate::platform::GuestRam;

/// Guest RAM seen through the translation `regime`.
pub struct Virt<'a> {
    pub ram: GuestRam<'a>,
    pub regime: Regime,
}

impl Virt<'_> {
    /// The RAM offset range for `[va, va + len)`, which must not cross a page.
    fn locate(&mut self, va: u64, len: u64, access: Access) -> Result<std::ops::Range<usize>, Fault> {
        let t = mmu::translate(&mut self.ram, &self.regime, va, access)?;
        self.ram.range(t.pa, len as usize).ok_or(mmu::access_fault(access, va))
    }

    /// Fills `buf` from guest-virtual `va`.
    pub fn read_bytes(&mut self, va: u64, buf: &mut [u8], access: Access) -> Result<(), Fault> {
        let mut done = 0;
        while done < buf.len() {
            let at = va.wrapping_add(done as u64);
            let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(buf.len() - done);
            let r = self.locate(at, n as u64, access)?;
            buf[done..done + n].copy_from_slice(&self.ram.bytes[r]);
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
        self.ram.bytes[first].copy_from_slice(&bytes[..split]);
        if let Some(r) = second {
            self.ram.bytes[r].copy_from_slice(&bytes[split..]);
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
        let mut v = Virt { ram: t.ram(), regime };
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
        let mut v = Virt { ram: t.ram(), regime };
        assert_eq!(v.write(0x10ffe, 4, 0xffff_ffff), Err(Fault { cause: 15, tval: 0x11000 }));
        assert_eq!(v.read(0x10ffe, 2, Access::Load), Ok(0));
    }

    #[test]
    fn physical_addresses_outside_ram_are_access_faults() {
        let mut t = TestRam::new();
        t.map(0x10000, 0x1000_0000, 0, PTE_V | PTE_R | PTE_W);
        let regime = t.regime(Mode::Supervisor);
        let mut v = Virt { ram: t.ram(), regime };
        assert_eq!(v.read(0x10000, 1, Access::Load), Err(Fault { cause: trap::LOAD_ACCESS_FAULT, tval: 0x10000 }));
        let bare = Regime { satp: 0, ..regime };
        let mut v = Virt { ram: t.ram(), regime: bare };
        assert_eq!(v.read(RAM + 8, 1, Access::Load), Ok(0), "Bare: physical = virtual");
    }
}
