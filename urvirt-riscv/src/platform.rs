//! What the pure emulation code needs from the outside world, as a trait.
//!
//! The engine implements it with host counters, the real console and the guest RAM mapping;
//! unit tests implement it with plain vectors and made-up clocks. That keeps decode, CSR,
//! trap and SBI logic free of signals and syscalls, so it is tested on any host.

/// The host side of one hart's world.
pub trait Platform {
    /// The `time` counter in timebase ticks (the host's rdtime: the guest sees the host's clock).
    fn time(&mut self) -> u64;
    /// The `cycle` counter.
    fn cycle(&mut self) -> u64;
    /// The `instret` counter.
    fn instret(&mut self) -> u64;
    /// Guest console output.
    fn console_write(&mut self, bytes: &[u8]);
    /// Guest console input: fills `buf` with what is available now, returns how many bytes.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;
    /// Writes guest memory `[gpa, gpa + len)` to the console, straight from RAM; false (and
    /// nothing written) if any byte lies outside guest RAM.
    fn console_write_from_guest(&mut self, gpa: u64, len: usize) -> bool;
    /// Moves the input available now, at most `len` bytes, into guest memory at `gpa`;
    /// returns how many, or None (and nothing consumed) if `[gpa, gpa + len)` is not all RAM.
    fn console_read_into_guest(&mut self, gpa: u64, len: usize) -> Option<usize>;
    /// Guest RAM, for the interpreter's translated accesses ([`crate::vmem::Virt`]). A
    /// platform without it offers none: every interpreted access is then an access fault.
    fn guest_ram(&mut self) -> GuestRam<'_> {
        GuestRam { base: 0, bytes: &mut [] }
    }
    /// Guest physical memory for translated accesses: RAM, and the devices (MMIO) behind
    /// the addresses that are not RAM. A platform without devices has only RAM.
    fn guest_phys(&mut self) -> (GuestRam<'_>, Option<&common::bus::Bus>) {
        (self.guest_ram(), None)
    }
}

/// Guest RAM as a byte slice placed at a guest physical base: bounds checks shared by the
/// engine and the tests.
pub struct GuestRam<'a> {
    pub base: u64,
    pub bytes: &'a mut [u8],
}

impl GuestRam<'_> {
    /// The byte range for `[gpa, gpa + len)` if it lies wholly inside RAM.
    pub fn range(&self, gpa: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = gpa.checked_sub(self.base)?;
        let end = start.checked_add(len as u64)?;
        (end <= self.bytes.len() as u64).then_some(start as usize..end as usize)
    }

    /// The bytes of `[gpa, gpa + len)` if they lie wholly inside RAM.
    pub fn slice_mut(&mut self, gpa: u64, len: usize) -> Option<&mut [u8]> {
        let r = self.range(gpa, len)?;
        Some(&mut self.bytes[r])
    }
}

/// A platform for unit tests and the SBI fuzz target (feature `fake-platform`): a small RAM,
/// a clock the test sets, captured console output.
#[cfg(any(test, feature = "fake-platform"))]
pub mod fake {
    use super::*;

    pub struct FakePlatform {
        pub ram_base: u64,
        pub ram: Vec<u8>,
        pub now: u64,
        pub output: Vec<u8>,
        pub input: std::collections::VecDeque<u8>,
        /// Devices at physical addresses outside RAM (empty unless a test adds some).
        pub devices: common::bus::Bus,
    }

    impl Default for FakePlatform {
        fn default() -> Self {
            Self::new()
        }
    }

    impl FakePlatform {
        pub fn new() -> Self {
            FakePlatform {
                ram_base: 0x8000_0000,
                ram: vec![0; 0x1000],
                now: 1000,
                output: Vec::new(),
                input: Default::default(),
                devices: common::bus::Bus::new(),
            }
        }
    }

    impl Platform for FakePlatform {
        fn time(&mut self) -> u64 {
            self.now
        }
        fn cycle(&mut self) -> u64 {
            self.now * 10
        }
        fn instret(&mut self) -> u64 {
            self.now * 5
        }
        fn console_write(&mut self, bytes: &[u8]) {
            self.output.extend_from_slice(bytes);
        }
        fn console_read(&mut self, buf: &mut [u8]) -> usize {
            let n = buf.len().min(self.input.len());
            for b in buf.iter_mut().take(n) {
                *b = self.input.pop_front().unwrap();
            }
            n
        }
        fn console_write_from_guest(&mut self, gpa: u64, len: usize) -> bool {
            let mut ram = GuestRam { base: self.ram_base, bytes: &mut self.ram };
            match ram.slice_mut(gpa, len) {
                Some(bytes) => {
                    self.output.extend_from_slice(bytes);
                    true
                }
                None => false,
            }
        }
        fn console_read_into_guest(&mut self, gpa: u64, len: usize) -> Option<usize> {
            let mut ram = GuestRam { base: self.ram_base, bytes: &mut self.ram };
            let dst = ram.slice_mut(gpa, len)?;
            let n = dst.len().min(self.input.len());
            for (d, s) in dst.iter_mut().zip(self.input.drain(..n)) {
                *d = s;
            }
            Some(n)
        }
        fn guest_ram(&mut self) -> GuestRam<'_> {
            GuestRam { base: self.ram_base, bytes: &mut self.ram }
        }
        fn guest_phys(&mut self) -> (GuestRam<'_>, Option<&common::bus::Bus>) {
            (GuestRam { base: self.ram_base, bytes: &mut self.ram }, Some(&self.devices))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ram_bounds() {
        let mut bytes = vec![0u8; 16];
        let mut ram = GuestRam { base: 0x8000_0000, bytes: &mut bytes };
        ram.slice_mut(0x8000_000c, 4).unwrap().copy_from_slice(b"abcd");
        assert!(ram.slice_mut(0x8000_000d, 4).is_none(), "one byte past the end");
        assert!(ram.slice_mut(0x7fff_ffff, 1).is_none(), "below the base");
        assert_eq!(ram.slice_mut(0x8000_000e, 2).unwrap(), b"cd");
        assert_eq!(ram.slice_mut(0x8000_0010, 0).unwrap(), b"", "empty range at the end");
        assert!(ram.range(u64::MAX, 2).is_none());
    }
}
