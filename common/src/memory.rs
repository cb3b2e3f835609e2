//! Guest memory as devices see it: one vm-memory [`GuestRam`] (a `GuestMemoryMmap`) for both
//! backends, so a device reads and writes guest physical addresses the same way everywhere and
//! every access is bounds-checked by vm-memory (an address outside RAM is an error, never a
//! read of monitor memory).
//!
//! - x86: [`anonymous`] maps RAM at guest physical 0; the same mapping is registered with KVM.
//! - URVirt: RAM is a memfd mapped at 0x8000_0000 in the monitor's address space (where the
//!   guest runs on it natively). [`from_fd`] maps the same memfd a second time, shared, so a
//!   device's writes are the guest's writes (one page cache, no copy) and the device's view stays
//!   valid whatever the guest does to its own page tables.
use crate::image::human_size;
use crate::{Error, Result};
use std::fs::File;
use std::os::fd::BorrowedFd;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestRegionMmap, MmapRegion};

pub use vm_memory::{self, Bytes, GuestMemoryMmap};

/// Guest RAM, as every device gets it. Cloning is cheap (the regions are shared).
pub type GuestRam = GuestMemoryMmap<()>;

/// `size` bytes of zeroed, private RAM at guest physical `base`.
pub fn anonymous(base: u64, size: u64) -> Result<GuestRam> {
    GuestRam::from_ranges(&[(GuestAddress(base), checked_len(size)?)])
        .map_err(|e| Error::bad_input(format!("cannot map {} of guest RAM: {e}", human_size(size))))
}

/// A shared mapping of `size` bytes of `fd` from `file_offset`, as guest physical
/// `[guest_base, guest_base + size)`. `fd` is duplicated; the caller keeps its own.
pub fn from_fd(fd: BorrowedFd<'_>, file_offset: u64, guest_base: u64, size: u64) -> Result<GuestRam> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::bad_input(format!("guest RAM for devices: {what}: {e}"));
    let len = checked_len(size)?;
    let file: File = fd.try_clone_to_owned().map_err(|e| fail("dup", &e))?.into();
    // Pages past the end of the file would fault (SIGBUS) on first touch: refuse them now.
    let file_len = file.metadata().map_err(|e| fail("fstat", &e))?.len();
    if file_offset.checked_add(size).is_none_or(|end| end > file_len) {
        return Err(Error::bad_input(format!(
            "guest RAM for devices: {size:#x} bytes from offset {file_offset:#x} run past the end of the file ({file_len:#x})"
        )));
    }
    let region = MmapRegion::from_file(FileOffset::new(file, file_offset), len).map_err(|e| fail("mmap", &e))?;
    let region = GuestRegionMmap::new(region, GuestAddress(guest_base))
        .ok_or_else(|| Error::bad_input(format!("guest RAM at {guest_base:#x}+{size:#x} wraps around")))?;
    GuestRam::from_regions(vec![region]).map_err(|e| fail("regions", &e))
}

/// Whether all of `[addr, addr + len)` is guest RAM.
pub fn contains(mem: &GuestRam, addr: u64, len: u64) -> bool {
    match usize::try_from(len) {
        Ok(0) => mem.address_in_range(GuestAddress(addr)),
        Ok(len) => GuestMemoryBackend::check_range(mem, GuestAddress(addr), len),
        Err(_) => false,
    }
}

/// The host address of guest physical `addr` (0 if it is not RAM), e.g. for KVM's memory slot.
pub fn host_address(mem: &GuestRam, addr: u64) -> u64 {
    mem.get_host_address(GuestAddress(addr)).map(|p| p as u64).unwrap_or(0)
}

fn checked_len(size: u64) -> Result<usize> {
    match usize::try_from(size) {
        Ok(len) if len > 0 => Ok(len),
        _ => Err(Error::bad_input(format!("guest RAM of {size} bytes cannot be mapped"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    fn memfd(size: u64) -> OwnedFd {
        // SAFETY: a valid NUL-terminated name; we own the descriptor returned.
        let raw = unsafe { libc::memfd_create(c"memory-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: `raw` is fresh and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        File::from(fd.try_clone().unwrap()).set_len(size).unwrap();
        fd
    }

    #[test]
    fn anonymous_ram_is_zeroed_and_bounded() {
        let mem = anonymous(0x1000, 0x2000).unwrap();
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x1000)).unwrap(), 0);
        mem.write_obj(0xdead_beef_u32, GuestAddress(0x2ffc)).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x2ffc)).unwrap(), 0xdead_beef);
        // The last word straddles the end; the first lies below RAM.
        assert!(mem.write_obj(1u32, GuestAddress(0x2ffe)).is_err());
        assert!(mem.read_obj::<u8>(GuestAddress(0xfff)).is_err());
        assert!(contains(&mem, 0x1000, 0x2000));
        assert!(!contains(&mem, 0x1000, 0x2001));
        assert!(!contains(&mem, 0xfff, 1));
        assert!(!contains(&mem, u64::MAX, 2));
        assert!(contains(&mem, 0x2fff, 0));
        assert!(!contains(&mem, 0x3000, 0));
        assert!(anonymous(0, 0).is_err());
    }

    #[test]
    fn two_views_of_one_memfd_are_coherent() {
        // URVirt's case: RAM at 0x8000_0000 in a memfd; the device's mapping and another one (the
        // guest's) see each other's writes at once.
        let fd = memfd(0x4000);
        let device = from_fd(fd.as_fd(), 0, 0x8000_0000, 0x4000).unwrap();
        let guest = from_fd(fd.as_fd(), 0, 0x8000_0000, 0x4000).unwrap();
        device.write_slice(b"written by the device", GuestAddress(0x8000_1000)).unwrap();
        let mut buf = [0u8; 21];
        guest.read_slice(&mut buf, GuestAddress(0x8000_1000)).unwrap();
        assert_eq!(&buf, b"written by the device");
        assert!(device.read_obj::<u8>(GuestAddress(0x7fff_ffff)).is_err());
        assert!(device.read_obj::<u8>(GuestAddress(0x8000_4000)).is_err());
        assert_ne!(host_address(&device, 0x8000_0000), host_address(&guest, 0x8000_0000));
        assert_eq!(host_address(&device, 0x1000), 0);
    }

    #[test]
    fn a_file_offset_shifts_the_window() {
        let fd = memfd(0x3000);
        let whole = from_fd(fd.as_fd(), 0, 0, 0x3000).unwrap();
        let tail = from_fd(fd.as_fd(), 0x1000, 0x10_0000, 0x2000).unwrap();
        whole.write_obj(0x1234_u16, GuestAddress(0x1008)).unwrap();
        assert_eq!(tail.read_obj::<u16>(GuestAddress(0x10_0008)).unwrap(), 0x1234);
        // Beyond the file: refused by the mapping, not a SIGBUS later.
        assert!(from_fd(fd.as_fd(), 0x2000, 0, 0x2000).is_err());
    }
}
