//! The thread that serves a device's queue: woken through an eventfd by QueueNotify, it pops
//! descriptor chains (virtio-queue), has the device serve them, fills the used ring and raises
//! the interrupt. What it shares with the transport (the register side) is [`Shared`].
use super::{Buffer, VirtioDevice};
use crate::irq::SharedLine;
use crate::memory::GuestRam;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;

/// What the worker thread calls once it runs (besides common::jail's always-allowed write,
/// exit_group, rt_sigreturn): reading its eventfd, the disk I/O (pread64/pwrite64/fsync), the
/// queue's lock (futex), the allocator (a chain's buffer list), and ending the thread, which
/// closes the disk file (close; fcntl is std's debug-build check of the descriptor). A
/// backend's interrupt line may need more (its `extra` list in [`spawn`]); an irqfd only writes.
pub const WORKER_SYSCALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_fsync,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_mmap,
    libc::SYS_mremap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
];

/// The queue and whether the worker may use it.
pub(crate) struct QueueSlot {
    pub queue: Queue,
    /// DRIVER_OK is set and the queue is ready and lies in guest RAM.
    pub live: bool,
    /// Bumped by every reset: a request that was being served across a reset is not completed.
    pub generation: u64,
    /// The worker found the queue unusable (a bad avail index): the device needs a reset.
    pub broken: bool,
    /// The worker is doing a request's I/O on guest buffers: a reset waits for it to end
    /// (after a reset the device must not touch the driver's buffers, virtio 1.2 §2.4).
    pub in_service: bool,
}

/// InterruptStatus and the line it drives: the line is high exactly while a bit is set.
pub(crate) struct Interrupt {
    status: Mutex<u32>,
    line: SharedLine,
}

impl Interrupt {
    fn set(&self, update: impl FnOnce(u32) -> u32) {
        let mut status = lock(&self.status);
        *status = update(*status);
        self.line.set_level(*status != 0);
    }
    pub fn raise(&self, bits: u32) {
        self.set(|s| s | bits);
    }
    pub fn ack(&self, bits: u32) {
        self.set(|s| s & !bits);
    }
    pub fn status(&self) -> u32 {
        *lock(&self.status)
    }
}

/// Between the transport (vCPU thread) and the worker.
pub(crate) struct Shared {
    pub slot: Mutex<QueueSlot>,
    /// Signalled when a request's I/O ends (`in_service` falls).
    idle: Condvar,
    pub interrupt: Interrupt,
    kick: EventFd,
    stop: AtomicBool,
}

impl Shared {
    /// Wakes the worker: one eventfd write, safe inside a signal handler.
    pub fn notify(&self) {
        let _ = self.kick.write(1);
    }
    pub fn slot(&self) -> MutexGuard<'_, QueueSlot> {
        lock(&self.slot)
    }

    /// The slot once no request is being served (at most one request's I/O away).
    pub fn idle_slot(&self) -> MutexGuard<'_, QueueSlot> {
        let mut slot = self.slot();
        while slot.in_service {
            slot = self.idle.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        slot
    }
}

/// A poisoned lock only means another thread panicked; the state is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The worker thread; stopped (and the device finished) when dropped.
pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the worker for `device`. With `jail` (the backend's extra calls), the thread puts
/// itself under [`WORKER_SYSCALLS`] + `jail` before serving anything; an error doing so is
/// returned here.
pub(crate) fn spawn<D: VirtioDevice>(
    mut device: D,
    mem: GuestRam,
    line: SharedLine,
    queue_size: u16,
    jail: Option<&'static [i64]>,
) -> Result<Worker> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::bad_input(format!("virtio worker: {what}: {e}"));
    let queue = Queue::new(queue_size).map_err(|e| fail("queue", &e))?;
    let kick = EventFd::new(libc::EFD_CLOEXEC).map_err(|e| fail("eventfd", &e))?;
    let shared = Arc::new(Shared {
        idle: Condvar::new(),
        slot: Mutex::new(QueueSlot { queue, live: false, generation: 0, broken: false, in_service: false }),
        interrupt: Interrupt { status: Mutex::new(0), line },
        kick,
        stop: AtomicBool::new(false),
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let ours = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("virtio-worker".into())
        .spawn(move || {
            // Process-directed signals belong to the vCPU and main threads.
            crate::console::block_async_signals_on_this_thread();
            let jailed = match jail {
                Some(extra) => crate::jail::apply("virtio worker", &[WORKER_SYSCALLS, extra].concat()),
                None => Ok(()),
            };
            let ok = jailed.is_ok();
            let _ = ready_tx.send(jailed);
            if ok {
                serve_until_stopped(&mut device, &mem, &ours);
            }
            device.finish();
        })
        .map_err(|e| fail("thread", &e))?;
    let worker = Worker { shared, thread: Some(thread) };
    ready_rx.recv().map_err(|e| fail("start", &e))??;
    Ok(worker)
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_until_stopped<D: VirtioDevice>(device: &mut D, mem: &GuestRam, shared: &Shared) {
    loop {
        // Blocks until at least one notify; several notifies read as one.
        if shared.kick.read().is_err() && !shared.stop.load(Ordering::SeqCst) {
            continue; // EINTR
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        while serve_one(device, mem, shared) {}
    }
}

/// Serves the next available chain, if any. The lock is not held during the device's I/O, so
/// the guest's register accesses never wait for the disk.
fn serve_one<D: VirtioDevice>(device: &mut D, mem: &GuestRam, shared: &Shared) -> bool {
    let (head, chain, generation) = {
        let mut slot = shared.slot();
        if !slot.live || slot.broken {
            return false;
        }
        let popped = match slot.queue.iter(mem) {
            Ok(mut available) => available.next(),
            Err(_) => {
                // An avail index more than a ring ahead: nothing sane to serve.
                slot.broken = true;
                drop(slot);
                shared.interrupt.raise(VIRTIO_MMIO_INT_CONFIG);
                return false;
            }
        };
        let Some(popped) = popped else { return false };
        let head = popped.head_index();
        let chain: Vec<Buffer> =
            popped.map(|d| Buffer { addr: d.addr().0, len: d.len(), writable: d.is_write_only() }).collect();
        slot.in_service = true;
        (head, chain, slot.generation)
    };
    let written = device.serve(mem, &chain);
    let mut slot = shared.slot();
    slot.in_service = false;
    shared.idle.notify_all();
    if slot.generation != generation || !slot.live {
        return false; // reset meanwhile: the guest no longer expects this completion
    }
    if slot.queue.add_used(mem, head, written).is_err() {
        // The used ring moved out of guest RAM: say the device needs a reset, as above.
        slot.broken = true;
        drop(slot);
        shared.interrupt.raise(VIRTIO_MMIO_INT_CONFIG);
        return false;
    }
    drop(slot);
    shared.interrupt.raise(VIRTIO_MMIO_INT_VRING);
    true
}
