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
    /// Reads guest physical memory; false if any byte lies outside guest RAM.
    fn read_guest(&mut self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Writes guest physical memory; false if any byte lies outside guest RAM.
    fn write_guest(&mut self, gpa: u64, bytes: &[u8]) -> bool;
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

    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        match self.range(gpa, buf.len()) {
            Some(r) => {
                buf.copy_from_slice(&self.bytes[r]);
                true
            }
            None => false,
        }
    }

    pub fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        match self.range(gpa, data.len()) {
            Some(r) => {
                self.bytes[r].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// A platform for unit tests: a small RAM, a clock the test sets, captured console output.
#[cfg(test)]
pub mod fake {
    use super::*;

    pub struct FakePlatform {
        pub ram_base: u64,
        pub ram: Vec<u8>,
        pub now: u64,
        pub output: Vec<u8>,
        pub input: std::collections::VecDeque<u8>,
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
        fn read_guest(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
            GuestRam { base: self.ram_base, bytes: &mut self.ram }.read(gpa, buf)
        }
        fn write_guest(&mut self, gpa: u64, bytes: &[u8]) -> bool {
            GuestRam { base: self.ram_base, bytes: &mut self.ram }.write(gpa, bytes)
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
        assert!(ram.write(0x8000_000c, b"abcd"));
        assert!(!ram.write(0x8000_000d, b"abcd"), "one byte past the end");
        assert!(!ram.write(0x7fff_ffff, b"a"), "below the base");
        let mut buf = [0u8; 2];
        assert!(ram.read(0x8000_000e, &mut buf));
        assert_eq!(&buf, b"cd");
        assert!(ram.range(u64::MAX, 2).is_none());
    }
}
