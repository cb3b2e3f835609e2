//! Console output with one exit per byte instead of two. Linux's console path (every printk
//! until init opens the tty) turns the 8250's interrupts off, then for each character polls LSR
//! and writes THR: two exits a byte, about 5,000 of each in a boot. The LSR read must exit. While neither an enabled
//! THR-empty interrupt nor loopback can make a THR write visible to the guest
//! ([`Serial::thr_write_visible`]), such a write changes nothing the guest can see before its
//! next access to another UART register, and that access exits anyway. So KVM is asked to queue
//! THR writes in its coalesced-I/O ring (KVM_REGISTER_COALESCED_MMIO with a port address, as
//! QEMU does for some of its devices), and the run loop replays the ring, in order, before it
//! handles any exit: the UART still sees every write in the order the guest made it, and the
//! console every byte (a byte may wait for the guest's next exit, which a kick for --timeout
//! or Ctrl-A x also is: none is lost). When the guest enables the THR-empty interrupt (the tty driver's own
//! output) or loopback, the port exits per write again. A full ring costs nothing special: KVM
//! then exits for the write as usual, after the queued ones.
use crate::exits::{self, Action, Devices};
use crate::linux::devices::COM1_BASE;
use crate::linux::SharedSerial;
use common::devices::serial::SERIAL_REGS;
use common::{Error, Result};
use kvm_bindings::{kvm_coalesced_mmio, kvm_coalesced_mmio_ring};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// KVM's coalesced-I/O ring: one page of the vCPU fd (at the page KVM_CAP_COALESCED_MMIO
/// names), which KVM fills and we empty. Mapped here rather than through kvm-ioctls' copy,
/// because the run loop reads it while the exit it has just got still borrows the VcpuFd.
struct Ring {
    page: *mut kvm_coalesced_mmio_ring,
    page_size: usize,
    /// Entries the page holds (KVM_COALESCED_MMIO_MAX).
    slots: u32,
}

// SAFETY: the mapping is owned by the Ring (made and unmapped once, from any thread: a page
// has no thread affinity) and read only through `&mut self`, so by one thread at a time.
unsafe impl Send for Ring {}

impl Ring {
    fn map(kvm: &Kvm, vcpu: &VcpuFd) -> Result<Ring> {
        let page_offset = kvm.check_extension_int(Cap::CoalescedMmio);
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if page_offset <= 0 {
            return Err(Error::bad_input("KVM has no coalesced-I/O ring (KVM_CAP_COALESCED_MMIO)"));
        }
        // SAFETY: a fresh shared mapping of one page of the vCPU fd, at the offset KVM gives.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu.as_raw_fd(),
                page_offset as libc::off_t * page_size as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(Error::bad_input(format!("cannot map KVM's coalesced-I/O ring: {e}")));
        }
        let header = std::mem::size_of::<kvm_coalesced_mmio_ring>();
        let slots = ((page_size - header) / std::mem::size_of::<kvm_coalesced_mmio>()) as u32;
        Ok(Ring { page: addr.cast(), page_size, slots })
    }

    /// The oldest queued write, taken off the ring.
    fn pop(&mut self) -> Option<kvm_coalesced_mmio> {
        // SAFETY: `page` is the mapped ring page, `slots` entries long.
        unsafe { take_oldest(self.page, self.slots) }
    }
}

/// The consumer's half of KVM's ring protocol: KVM writes an entry, then advances `last`; we
/// read the entry, then advance `first` (KVM sees the room). `last` is loaded with Acquire so
/// the entry is read after it; `first` stored with Release after the entry is read.
///
/// # Safety
/// `ring` points to a ring page (header plus `slots` entries) that nobody else consumes.
unsafe fn take_oldest(ring: *mut kvm_coalesced_mmio_ring, slots: u32) -> Option<kvm_coalesced_mmio> {
    // SAFETY: the header's u32s are aligned and live as long as the page (the caller's promise).
    let (first, last) = unsafe {
        (
            AtomicU32::from_ptr(std::ptr::addr_of_mut!((*ring).first)),
            AtomicU32::from_ptr(std::ptr::addr_of_mut!((*ring).last)),
        )
    };
    let (at, end) = (first.load(Ordering::Relaxed), last.load(Ordering::Acquire));
    if at == end || at >= slots {
        return None;
    }
    // SAFETY: `at` < `slots`, so the entry is inside the page.
    let entry = unsafe { (*ring).coalesced_mmio.as_ptr().add(at as usize).read_volatile() };
    first.store((at + 1) % slots, Ordering::Release);
    Some(entry)
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping the page `map` mapped, once.
        unsafe { libc::munmap(self.page.cast(), self.page_size) };
    }
}

/// The THR port's queue, for one Linux run.
pub struct QueuedThr {
    ring: Ring,
    serial: SharedSerial,
    /// The THR port is registered with KVM (writes to it are queued, not exits).
    queuing: bool,
    /// Writes replayed from the ring (a --stats note: they are not exits).
    replayed: u64,
}

impl QueuedThr {
    /// Maps `vcpu`'s ring and starts queuing if the UART allows it (it does at reset). None where
    /// KVM cannot queue port writes (no KVM_CAP_COALESCED_PIO): the UART then exits per write.
    pub fn new(kvm: &Kvm, vm: &VmFd, vcpu: &VcpuFd, serial: SharedSerial) -> Result<Option<QueuedThr>> {
        if !kvm.check_extension(Cap::CoalescedPio) {
            return Ok(None);
        }
        // Without the ring the UART exits per write: slower, never wrong.
        let Ok(ring) = Ring::map(kvm, vcpu) else { return Ok(None) };
        let mut queue = QueuedThr { ring, serial, queuing: false, replayed: 0 };
        queue.sync(vm)?;
        Ok(Some(queue))
    }

    /// Replays every queued write through the bus, oldest first.
    pub fn replay(&mut self, devices: &Devices) {
        while let Some(entry) = self.ring.pop() {
            let len = (entry.len as usize).min(entry.data.len());
            let Ok(port) = u16::try_from(entry.phys_addr) else { continue };
            exits::apply(Action::PioWrite { port, size: len, data: &entry.data[..len] }, devices);
            self.replayed += 1;
        }
    }

    /// After the guest wrote the UART register at `port` (any other port is ignored): an IER or
    /// MCR write can change whether THR writes are visible, and such writes always exit (only
    /// THR is queued). Checked on every UART register write but THR's: a few hundred a boot.
    pub fn follow(&mut self, vm: &VmFd, port: u16) -> Result<()> {
        let uart = COM1_BASE + 1..COM1_BASE + SERIAL_REGS;
        if !uart.contains(&u64::from(port)) {
            return Ok(());
        }
        self.sync(vm)
    }

    /// Queues THR writes exactly while the UART says they cannot be visible.
    fn sync(&mut self, vm: &VmFd) -> Result<()> {
        let queue = !self.serial.lock().unwrap_or_else(|e| e.into_inner()).thr_write_visible();
        if queue == self.queuing {
            return Ok(());
        }
        let thr = IoEventAddress::Pio(COM1_BASE);
        let (result, what) = if queue {
            (vm.register_coalesced_mmio(thr, 1), "KVM_REGISTER_COALESCED_MMIO")
        } else {
            (vm.unregister_coalesced_mmio(thr, 1), "KVM_UNREGISTER_COALESCED_MMIO")
        };
        match result {
            Ok(()) => self.queuing = queue,
            // Not queuing is always correct, only slower.
            Err(_) if queue => {}
            // Still queuing while the guest waits for THR-empty interrupts would stall its output.
            Err(e) => return Err(Error::bad_input(format!("{what} for the UART: {e}"))),
        }
        Ok(())
    }

    /// The --stats note.
    pub fn note(&self) -> String {
        format!("UART THR writes KVM queued instead of exiting: {} (replayed in order at the next exit)", self.replayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring page on the heap, with `first` and `last` set and entry i holding byte i.
    fn fake_page(slots: u32, first: u32, last: u32) -> Vec<u64> {
        let bytes =
            std::mem::size_of::<kvm_coalesced_mmio_ring>() + slots as usize * std::mem::size_of::<kvm_coalesced_mmio>();
        let mut page = vec![0u64; bytes.div_ceil(8)];
        let ring = page.as_mut_ptr() as *mut kvm_coalesced_mmio_ring;
        // SAFETY: the vector is large enough and 8-byte aligned for the header and entries.
        unsafe {
            (*ring).first = first;
            (*ring).last = last;
            for i in 0..slots as usize {
                let e = (*ring).coalesced_mmio.as_mut_ptr().add(i);
                (*e).phys_addr = 0x3f8;
                (*e).len = 1;
                (*e).data[0] = i as u8;
            }
        }
        page
    }

    fn drain(page: &mut [u64], slots: u32) -> Vec<u8> {
        let ring = page.as_mut_ptr() as *mut kvm_coalesced_mmio_ring;
        // SAFETY: a fake page made by fake_page with `slots` entries, consumed only here.
        std::iter::from_fn(|| unsafe { take_oldest(ring, slots) }).map(|e| e.data[0]).collect()
    }

    #[test]
    fn entries_come_out_oldest_first_across_the_wrap() {
        let mut page = fake_page(4, 2, 1); // entries 2, 3, then 0 after the wrap
        assert_eq!(drain(&mut page, 4), [2, 3, 0]);
        // SAFETY: reading the header of the fake page.
        let first = unsafe { (*(page.as_ptr() as *const kvm_coalesced_mmio_ring)).first };
        assert_eq!(first, 1, "the consumer's index ends where KVM's is: the ring is empty");
        assert!(drain(&mut page, 4).is_empty());
    }

    #[test]
    fn a_corrupt_index_reads_nothing() {
        let mut page = fake_page(4, 9, 1);
        assert!(drain(&mut page, 4).is_empty(), "an index past the page is never followed");
    }
}
