//! Console input for the guest: one queue, two ways out.
//!
//! The console's reader thread queues the keys ([`queue_input`]); the guest takes them either
//! with the SBI (legacy getchar, DBCN read: [`take_input`]) or through the 16550's receive
//! FIFO ([`ConsoleUart`]: filled from the queue when the guest reads the UART, and by the
//! reader while the UART's receive interrupt is enabled, which raises its PLIC line). Lock
//! order everywhere: the UART, then the queue.
use super::signals;
use common::bus::{BusDevice, DeviceRequest};
use common::console::Console;
use common::devices::serial::{LineTrigger, Serial};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

/// Set by the console thread on Ctrl-A x.
pub static QUIT: AtomicBool = AtomicBool::new(false);
/// Keys typed for the guest, queued by the console's reader thread.
static INPUT: Mutex<VecDeque<u8>> = Mutex::new(VecDeque::new());
/// Signalled when the guest takes input, for a reader waiting on a full queue.
static INPUT_TAKEN: Condvar = Condvar::new();
/// The most input queued for the guest. Like a UART FIFO with flow control, a full queue
/// makes the reader thread wait (it stops reading stdin) until the guest reads, for at most
/// [`INPUT_PATIENCE`]: `yes | vmm ...` holds at most this much, not all of memory.
pub const INPUT_LIMIT: usize = 64 << 10;
/// How long the reader waits for room before it drops what it holds and reads on.
const INPUT_PATIENCE: Duration = Duration::from_secs(2);
/// The thread that runs the guest: Ctrl-A x and device interrupts wake it with SIGALRM.
static GUEST_TID: AtomicI32 = AtomicI32::new(0);
static INPUT_STARTED: Once = Once::new();
/// The UART of the run in progress, for the reader thread (None between runs).
static UART: Mutex<Option<Arc<Mutex<ConsoleUart>>>> = Mutex::new(None);

/// The guest thread's id (0 before the first run).
pub fn guest_tid() -> libc::pid_t {
    GUEST_TID.load(Ordering::SeqCst)
}

/// Starts the console's stdin reader (once per process) and aims Ctrl-A x and device
/// interrupts at the calling thread, which is about to run the guest with `uart`. Called by
/// the monitor before entering the guest, never from a handler.
pub fn start_input(console: &Console, uart: &Arc<Mutex<ConsoleUart>>) {
    // SAFETY: gettid has no preconditions.
    GUEST_TID.store(unsafe { libc::gettid() }, Ordering::SeqCst);
    *UART.lock().unwrap_or_else(|e| e.into_inner()) = Some(uart.clone());
    INPUT_STARTED.call_once(|| {
        if std::env::var_os(::lab::keys::ENV).is_some() {
            // Inside the lab host: the outer vmm sends the user's Ctrl-A x in band.
            let mut keys = common::console::EscapeState::default();
            console.start_input(
                move |b| {
                    let (bytes, quit) = keys.feed(b);
                    if quit {
                        // The run ends: keys typed just before do not matter, and queueing
                        // them could wait on a full queue forever.
                        user_quit();
                    } else {
                        deliver(&bytes);
                    }
                },
                || {},
            )
        } else {
            console.start_input(deliver, user_quit)
        }
    });
}

/// The run is over: its UART gets no more input.
pub fn stop_input() {
    *UART.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Ctrl-A x: end the run, waking the guest thread. After a run the thread keeps SIGALRM
/// blocked, so a late quit leaves the signal pending instead of killing us.
fn user_quit() {
    QUIT.store(true, Ordering::SeqCst);
    signals::poke(guest_tid());
}

/// The reader thread's sink: queue, then fill the UART's FIFO if the guest takes its interrupt.
fn deliver(bytes: &[u8]) {
    queue_input(bytes);
    let uart = UART.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(uart) = uart {
        uart.lock().unwrap_or_else(|e| e.into_inner()).push();
    }
}

/// Queues `bytes`, waiting while the queue is full. A wait is bounded ([`INPUT_PATIENCE`])
/// and a quit ends it, so the reader always gets back to stdin and a Ctrl-A x typed behind a
/// guest that reads nothing is still seen; what did not fit by then is dropped, as a UART
/// overruns.
fn queue_input(mut bytes: &[u8]) {
    let mut q = INPUT.lock().unwrap_or_else(|e| e.into_inner());
    let give_up = Instant::now() + INPUT_PATIENCE;
    while !bytes.is_empty() {
        let room = INPUT_LIMIT.saturating_sub(q.len());
        if room == 0 {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() || QUIT.load(Ordering::SeqCst) {
                return;
            }
            q = INPUT_TAKEN.wait_timeout(q, left.min(Duration::from_millis(100))).unwrap_or_else(|e| e.into_inner()).0;
            continue;
        }
        let n = room.min(bytes.len());
        q.extend(&bytes[..n]);
        bytes = &bytes[n..];
    }
}

/// Moves up to `dst.len()` queued input bytes into `dst`; returns how many. Called in a
/// handler on the guest thread, which holds the lock nowhere else.
pub fn take_input(dst: &mut [u8]) -> usize {
    let mut q = INPUT.lock().unwrap_or_else(|e| e.into_inner());
    let n = dst.len().min(q.len());
    for (d, s) in dst.iter_mut().zip(q.drain(..n)) {
        *d = s;
    }
    if n > 0 {
        INPUT_TAKEN.notify_one();
    }
    n
}

/// The 16550 on the guest's bus, fed from the input queue when the guest reads from it.
///
/// Keys stay in the queue (where SBI getchar finds them) until the guest shows it reads the
/// UART: a read of the line status or data register pulls queued keys into the receive FIFO
/// first (a polling driver then sees "data ready"), and while the receive interrupt is enabled
/// the reader thread pushes new keys in as they come (raising the interrupt). A kernel that
/// only probes the UART and reads its console through the SBI (Linux with `console=hvc0`)
/// keeps getting its keys there.
pub struct ConsoleUart {
    serial: Serial<LineTrigger>,
    /// LCR.DLAB: offsets 0 and 1 are the divisor latch, not data and IER.
    dlab: bool,
    /// IER's received-data interrupt bit.
    rx_interrupt: bool,
}

/// The receive FIFO's size in vm-superio's model: the most one refill moves.
const FIFO: usize = 64;
const DATA: u64 = 0;
const IER: u64 = 1;
const LCR: u64 = 3;
const LSR: u64 = 5;

impl ConsoleUart {
    pub fn new(serial: Serial<LineTrigger>) -> Self {
        ConsoleUart { serial, dlab: false, rx_interrupt: false }
    }

    /// Moves queued input into the receive FIFO, as much as fits.
    fn refill(&mut self) {
        let mut q = INPUT.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = [0u8; FIFO];
        let n = q.len().min(FIFO);
        for (d, s) in buf.iter_mut().zip(q.iter()) {
            *d = *s;
        }
        let taken = self.serial.enqueue(&buf[..n]);
        if taken > 0 {
            q.drain(..taken);
            INPUT_TAKEN.notify_one();
        }
    }

    /// The reader thread's push: only to a guest that takes the receive interrupt.
    fn push(&mut self) {
        if self.rx_interrupt {
            self.refill();
        }
    }
}

impl BusDevice for ConsoleUart {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let receiving = offset == LSR || offset == DATA && !self.dlab;
        if receiving {
            self.refill();
        }
        self.serial.read(offset, data);
        if receiving {
            self.refill();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        let value = data.first().copied().unwrap_or(0);
        match offset {
            LCR => self.dlab = value & 0x80 != 0,
            IER if !self.dlab => self.rx_interrupt = value & 1 != 0,
            _ => {}
        }
        let r = self.serial.write(offset, data);
        // Keys typed before the interrupt was enabled are waiting in the queue.
        self.push();
        r
    }
}
