//! Console output without a trip to vmm per byte. Linux's console path (every printk until
//! init opens the tty) turns the 8250's interrupts off, then for each character polls LSR and
//! writes THR: two exits a byte, about 5,000 of each in a boot. While neither an enabled
//! THR-empty interrupt nor loopback can make a THR write visible to the guest
//! ([`Serial::thr_write_visible`]), such a write changes nothing the guest can see before its
//! next access to another UART register, and that access exits anyway. So KVM is asked to queue
//! THR writes in its coalesced-I/O ring (KVM_REGISTER_COALESCED_MMIO with a port address, as
//! QEMU does for some of its devices), and the run loop replays the ring, in order, before it
//! handles any exit: the UART still sees every write in the order the guest made it, and the
//! console every byte. When the guest enables the THR-empty interrupt (the tty driver's own
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
use std::sync::atomic::{fence, Ordering};

/// KVM's coalesced-I/O ring: one page of the vCPU fd (at the page KVM_CAP_COALESCED_MMIO
/// names), which KVM fills and we empty. Mapped here rather than through kvm-ioctls' copy,
/// because the run loop reads it while the exit it has just got still borrows the VcpuFd.
struct Ring {
    page: *mut kvm_coalesced_mmio_ring,
    page_size: usize,
    /// Entries the page holds (KVM_COALESCED_MMIO_MAX).
    slots: u32,
}

// SAFETY: the mapping is this run's own and only the vCPU thread reads it, one at a time
// (the run loop holds the QueuedThr by &mut).
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
        // SAFETY: `page` is the mapped ring page; `first` is ours to write, `last` KVM's. The
        // fence orders reading `last` before reading the entry KVM published with it.
        unsafe {
            let first = std::ptr::addr_of!((*self.page).first).read_volatile();
            let last = std::ptr::addr_of!((*self.page).last).read_volatile();
            if first == last || first >= self.slots {
                return None;
            }
            fence(Ordering::Acquire);
            let entry = (*self.page).coalesced_mmio.as_ptr().add(first as usize).read_volatile();
            fence(Ordering::Release);
            std::ptr::addr_of_mut!((*self.page).first).write_volatile((first + 1) % self.slots);
            Some(entry)
        }
    }
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
        let mut queue = QueuedThr { ring: Ring::map(kvm, vcpu)?, serial, queuing: false, replayed: 0 };
        queue.follow(vm, COM1_BASE as u16 + 1)?;
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

    /// After the guest wrote the UART register at `port` (any other port is ignored): queue THR
    /// writes exactly while they cannot be visible. An IER, LCR (DLAB) or MCR write is what can
    /// change that, and it exits.
    pub fn follow(&mut self, vm: &VmFd, port: u16) -> Result<()> {
        let uart = COM1_BASE + 1..COM1_BASE + SERIAL_REGS;
        if !uart.contains(&u64::from(port)) {
            return Ok(());
        }
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
