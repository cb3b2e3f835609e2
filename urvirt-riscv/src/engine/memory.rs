//! Guest RAM: a memfd (or the `--mem-file`) mapped at guest physical 0x80000000 in our own address space, and a
//! second time wherever the kernel likes as the monitor's own view ([`GuestMemory::view`]).
//!
//! With satp = Bare the guest's physical addresses are our virtual addresses (with Sv39 the
//! identity window gives way to the software TLB, [`super::paging`]):
//! RAM must sit exactly at 0x80000000 (MAP_FIXED_NOREPLACE, which fails rather than
//! clobbering something of ours). The rest of the 32-bit physical window, [64 KiB, 4 GiB)
//! outside RAM, is reserved PROT_NONE so that no later host mapping (heap, thread stacks,
//! timers' threads) can appear at an address the guest might take for a device: a guest
//! access there faults and becomes an access fault, not a read of monitor memory.
//!
//! The monitor itself: the riscv64 `vmm` is a dynamically linked PIE (see .cargo/config.toml),
//! which the lab kernels place entirely above 2^38 (binary, heap, stacks, libraries, vDSO), so
//! the guest's Sv39 lower half is free. Where a kernel puts some of it lower (an Sv39-only
//! host), `--stats` lists whatever of ours lies in the window through
//! [`host_mappings_in_window`], and guest pages there are interpreted ([`super::paging`]),
//! never mapped over the monitor.
use crate::loader::{Kernel, RAM_BASE};
use common::mem_file::MemFile;
use common::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The 32-bit physical window we keep free of host mappings.
const WINDOW_START: u64 = 0x1_0000;
const WINDOW_END: u64 = 0x1_0000_0000;
/// With Sv39 on, the guest's lower half [0, 2^38) is where its pages get mapped natively. On
/// a host whose own user addresses reach above it (Sv48/Sv57: our stack lies above 2^38) the
/// free gaps of all of it are reserved. On an Sv39-only host that would take the monitor's
/// own address space, so only the 32-bit window is reserved there; guest pages elsewhere
/// are interpreted, never mapped over the monitor.
const SV39_LOWER_HALF_END: u64 = 1 << 38;

/// Where the reservation for guest pages ends on this host.
fn reservation_end() -> u64 {
    let probe = 0u8;
    if std::hint::black_box(&probe) as *const u8 as u64 > SV39_LOWER_HALF_END {
        SV39_LOWER_HALF_END
    } else {
        WINDOW_END
    }
}

pub struct GuestMemory {
    pub base: u64,
    pub size: u64,
    /// The monitor's own view of RAM, a second mapping of the memfd that is never a guest
    /// address: it stays valid when Sv39 takes the identity window away.
    pub view: u64,
    fd: OwnedFd,
    /// PROT_NONE reservations around RAM: (address, length).
    reserved: Vec<(u64, u64)>,
}

fn os_err(what: &str) -> Error {
    let e = std::io::Error::last_os_error();
    Error::bad_input(format!("{what}: {}", common::image::io_reason(&e)))
}

impl GuestMemory {
    /// Creates `size` bytes of zeroed RAM at [`RAM_BASE`].
    pub fn new(size: u64) -> Result<Self> {
        Self::with_file(size, None)
    }

    /// The same, backed by `--mem-file`: with --mem-share the file's descriptor serves every
    /// mapping in place of the memfd (all of them shared, so they stay one memory and the
    /// guest's writes land in the file); without it the memfd starts as a copy of the file.
    pub fn with_file(size: u64, file: Option<&MemFile>) -> Result<Self> {
        crate::config::check_mem(size)?;
        let fd = match file {
            Some(f) if f.shared => {
                f.require_exec()?;
                f.fd().try_clone_to_owned().map_err(|_| os_err("cannot use the --mem-file (dup)"))?
            }
            _ => new_memfd(size)?,
        };
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; on success the range
        // [RAM_BASE, RAM_BASE+size) is ours.
        let p = unsafe {
            libc::mmap(
                RAM_BASE as *mut libc::c_void,
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED || p as u64 != RAM_BASE {
            return Err(os_err(&format!("cannot map guest RAM at {RAM_BASE:#x} (something of ours is there)")));
        }
        // SAFETY: a fresh shared mapping of our memfd wherever the kernel puts it.
        let view = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if view == libc::MAP_FAILED {
            return Err(os_err("cannot map the monitor's view of guest RAM"));
        }
        let mut mem = GuestMemory { base: RAM_BASE, size, view: view as u64, fd, reserved: Vec::new() };
        if let Some(f) = file.filter(|f| !f.shared) {
            // SAFETY: the guest is not running yet; this is the only view.
            f.read_into(unsafe { mem.bytes() })?;
        }
        mem.reserve_window();
        Ok(mem)
    }

    /// Reserves every free gap of the physical window with PROT_NONE.
    fn reserve_window(&mut self) {
        let mut taken: Vec<(u64, u64)> = mappings().iter().map(|m| (m.start, m.end)).collect();
        taken.sort();
        let window_end = reservation_end();
        let mut cursor = WINDOW_START;
        for (start, end) in taken.into_iter().chain(std::iter::once((window_end, window_end))) {
            let end_of_gap = start.min(window_end);
            if end_of_gap > cursor {
                let len = end_of_gap - cursor;
                // A gap /proc/self/maps shows as free; if a race filled it, we skip it.
                if reserve_none(cursor, len, Placement::OnlyIfFree) {
                    self.reserved.push((cursor, len));
                }
            }
            cursor = cursor.max(end);
            if cursor >= window_end {
                break;
            }
        }
    }

    /// Guest RAM as a byte slice.
    ///
    /// # Safety
    /// The caller must not hold two of these at once, nor one while the guest runs.
    pub unsafe fn bytes<'a>(&self) -> &'a mut [u8] {
        // SAFETY: the view lives as long as `self`; exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.view as *mut u8, self.size as usize) }
    }

    /// The memfd behind RAM, for mapping guest pages at guest-virtual addresses.
    pub fn memfd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// The memfd, for a device's own mapping of guest RAM.
    pub fn memfd_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The PROT_NONE reservations as [start, end): where guest pages may be mapped.
    pub fn reserved_ranges(&self) -> Vec<(u64, u64)> {
        self.reserved.iter().map(|&(a, l)| (a, a + l)).collect()
    }

    /// Copies the kernel's segments and the device tree into RAM.
    pub fn load(&mut self, kernel: &Kernel, fdt_addr: u64, fdt: &[u8]) {
        // SAFETY: the guest is not running yet; this is the only view.
        let ram = unsafe { self.bytes() };
        for s in &kernel.segments {
            let off = (s.gpa - self.base) as usize;
            ram[off..off + s.bytes.len()].copy_from_slice(&s.bytes);
            ram[off + s.bytes.len()..off + s.mem_len as usize].fill(0);
        }
        let off = (fdt_addr - self.base) as usize;
        ram[off..off + fdt.len()].copy_from_slice(fdt);
        self.flush_icache();
    }

    /// Makes code we just wrote into RAM visible to instruction fetch on every hart this
    /// thread may run on (a plain fence.i would cover only the current one).
    pub fn flush_icache(&self) {
        flush_icache_range(self.base, self.size);
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr.wrapping_sub(self.base) < self.size
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the ranges we mapped; nothing refers to them any more.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.size as usize);
            libc::munmap(self.view as *mut libc::c_void, self.size as usize);
            for &(a, l) in &self.reserved {
                libc::munmap(a as *mut libc::c_void, l as usize);
            }
        }
    }
}

/// [`GuestMemory::flush_icache`] for `size` bytes of RAM at `base` (also after the debugger
/// patched or wrote guest code).
pub fn flush_icache_range(base: u64, size: u64) {
    /// __NR_riscv_flush_icache: __NR_arch_specific_syscall (244) + 15.
    const SYS_RISCV_FLUSH_ICACHE: libc::c_long = 259;
    // SAFETY: the syscall only takes an address range; flags 0 means all threads.
    unsafe { libc::syscall(SYS_RISCV_FLUSH_ICACHE, base, base + size, 0) };
}

/// `size` bytes of zeroed, anonymous shared memory.
fn new_memfd(size: u64) -> Result<OwnedFd> {
    // SAFETY: memfd_create with a valid NUL-terminated name; we own the returned fd.
    let raw = unsafe { libc::memfd_create(c"urvirt-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(os_err("cannot create guest RAM (memfd_create)"));
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ftruncate on our own memfd.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
        return Err(os_err("cannot size guest RAM (ftruncate)"));
    }
    Ok(fd)
}

/// One line of /proc/self/maps.
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    /// The path or [heap]/[stack]/...; empty for anonymous memory.
    name: String,
}

/// Every mapping of this process, from /proc/self/maps (empty if it cannot be read).
fn mappings() -> Vec<Mapping> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (a, b) = parts.next()?.split_once('-')?;
            let perms = parts.next()?.to_string();
            // offset, device, inode, then the name (which may be absent).
            let name = parts.nth(3).unwrap_or("").to_string();
            Some(Mapping {
                start: u64::from_str_radix(a, 16).ok()?,
                end: u64::from_str_radix(b, 16).ok()?,
                perms,
                name,
            })
        })
        .collect()
}

/// Host mappings (other than RAM and our reservations) inside the guest's physical window,
/// adjacent ones merged, as "start-end name". Empty when the guest sees nothing of the host.
pub fn host_mappings_in_window(mem: &GuestMemory) -> Vec<String> {
    let mut merged: Vec<(u64, u64, String)> = Vec::new();
    for m in mappings() {
        if !(WINDOW_START..WINDOW_END).contains(&m.start)
            || mem.contains(m.start)
            || mem.reserved.iter().any(|&(r, _)| r == m.start)
            || m.perms.starts_with("---")
        {
            continue;
        }
        match merged.last_mut() {
            Some(last) if last.1 == m.start => {
                last.1 = m.end;
                if last.2.is_empty() {
                    last.2 = m.name;
                }
            }
            _ => merged.push((m.start, m.end, m.name)),
        }
    }
    merged.into_iter().map(|(a, b, n)| format!("{a:#x}-{b:#x} {n}").trim_end().to_string()).collect()
}

/// Fails unless every device window in `windows` (base, size) lies inside one of the PROT_NONE
/// reservations: a guest access there must fault, never reach a host mapping.
pub fn check_device_windows(mem: &GuestMemory, windows: &[(u64, u64)]) -> Result<()> {
    for &(base, size) in windows {
        if !mem.reserved.iter().any(|&(a, l)| a <= base && base + size <= a + l) {
            return Err(Error::bad_input(format!(
                "a host mapping sits on the guest's device window {base:#x}+{size:#x}, so its accesses would not trap"
            )));
        }
    }
    Ok(())
}

/// The executable mapping that holds `addr` (the monitor's code), as [start, end).
pub fn code_range_of(addr: u64) -> Option<(u64, u64)> {
    mappings().into_iter().find(|m| m.perms.contains('x') && (m.start..m.end).contains(&addr)).map(|m| (m.start, m.end))
}

/// Whether [`reserve_none`] may replace what is mapped there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The range is ours (guest RAM, a guest page): replace it.
    Replace,
    /// Only where nothing is mapped (a gap in the address space).
    OnlyIfFree,
}

/// Puts a PROT_NONE reservation over `[va, va + len)`; true if it is there now. The one place
/// URVirt makes such a mapping, for the window's gaps and for guest pages it takes back.
pub fn reserve_none(va: u64, len: u64, placement: Placement) -> bool {
    let fixed = match placement {
        Placement::Replace => libc::MAP_FIXED,
        Placement::OnlyIfFree => libc::MAP_FIXED_NOREPLACE,
    };
    // SAFETY: Replace is only asked for ranges we own (so nothing of the monitor is unmapped);
    // OnlyIfFree cannot replace anything: the kernel refuses when the range is in use.
    let p = unsafe {
        libc::mmap(
            va as *mut libc::c_void,
            len as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | fixed,
            -1,
            0,
        )
    };
    p as u64 == va
}
