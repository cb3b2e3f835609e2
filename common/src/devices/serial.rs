//! The 16550A UART, vm-superio's model, as a bus device.
//!
//! The same device sits at port 0x3f8 on x86 and at MMIO 0x10000000 on RISC-V: only the bus
//! and the interrupt differ. The interrupt is vm-superio's [`Trigger`], so each backend passes
//! its own way to raise the line: on x86 an irqfd EventFd registered for GSI 4 (an edge), on
//! RISC-V a PLIC input ([`Serial::with_line`]), which is a level and must also fall.
use crate::bus::{BusDevice, DeviceRequest};
use crate::console::Console;
use crate::irq::SharedLine;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};
pub use vm_superio::Trigger;
use vm_superio::{serial::NoEvents, Serial as Uart};

/// The 8 registers of a 16550.
pub const SERIAL_REGS: u64 = 8;
/// How long input waits for the guest to drain a full receive FIFO before bytes are dropped.
const INPUT_PATIENCE: Duration = Duration::from_millis(200);

/// Guest output goes to the console, one byte at a time as the guest writes it.
pub struct ConsoleWriter(Console);

impl io::Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raises an [`crate::irq::InterruptLine`] when vm-superio raises its interrupt.
pub struct LineTrigger(pub SharedLine);

impl Trigger for LineTrigger {
    type E = ();
    fn trigger(&self) -> Result<(), ()> {
        self.0.set_level(true);
        Ok(())
    }
}

const DATA: u64 = 0;
const IER: u64 = 1;
const IIR: u64 = 2;
/// IIR's "no interrupt pending" bit and its two causes in vm-superio's model.
const IIR_NONE: u8 = 0x01;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
/// IER's THR-empty interrupt enable, and MCR's loopback bit.
const IER_THR_EMPTY: u8 = 0x02;
const MCR_LOOP: u8 = 0x10;

pub struct Serial<T: Trigger> {
    uart: Uart<T, NoEvents, ConsoleWriter>,
    /// A level line to lower when the UART stops asking (None: an edge trigger, x86's irqfd).
    line: Option<SharedLine>,
}

impl Serial<LineTrigger> {
    /// A UART whose interrupt output is the level `line`: high while an enabled interrupt is
    /// identified, low once the guest has read it away (IIR, the data) or disabled it (IER).
    pub fn with_line(line: SharedLine, console: Console) -> Self {
        Serial { uart: Uart::new(LineTrigger(line.clone()), ConsoleWriter(console)), line: Some(line) }
    }
}

impl<T: Trigger> Serial<T> {
    pub fn new(interrupt: T, console: Console) -> Self {
        Serial { uart: Uart::new(interrupt, ConsoleWriter(console)), line: None }
    }

    /// Drives the level line from what the UART identifies and has enabled. vm-superio only
    /// raises its trigger, and not again for a cause it still holds: reading IIR or the data
    /// and writing IER are what change the level otherwise.
    fn drive_line(&self, offset: u64) {
        let Some(line) = &self.line else { return };
        if !matches!(offset, DATA | IER | IIR) {
            return;
        }
        // state() copies the small receive FIFO: only on these three registers.
        let st = self.uart.state();
        let (iir, ier) = (st.interrupt_identification, st.interrupt_enable);
        let asking =
            iir & IIR_NONE == 0 && (iir & IIR_RDA != 0 && ier & 1 != 0 || iir & IIR_THR_EMPTY != 0 && ier & 2 != 0);
        line.set_level(asking);
    }

    /// Whether a byte written to THR could change what the guest sees before its next access to
    /// another of the UART's registers: only with the THR-empty interrupt enabled (each write
    /// raises it) or in loopback (the byte comes back as input). Otherwise the byte only goes
    /// to the console, and x86 may let KVM queue such writes (vmm-x86's coalesced.rs).
    pub fn thr_write_visible(&self) -> bool {
        let st = self.uart.state();
        st.interrupt_enable & IER_THR_EMPTY != 0 || st.modem_control & MCR_LOOP != 0
    }

    /// Puts as many of `bytes` as fit into the receive FIFO (raising the interrupt);
    /// returns how many were taken.
    pub fn enqueue(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() || self.uart.fifo_capacity() == 0 {
            return 0;
        }
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

/// Feeds host input to a shared UART: waits a little while the guest drains a full FIFO, then
/// drops what is left, so a guest that never reads cannot block the input thread (which must
/// stay free to see Ctrl-A x).
pub fn feed_input<T: Trigger>(serial: &Mutex<Serial<T>>, mut bytes: &[u8]) {
    let mut waiting_since = Instant::now();
    while !bytes.is_empty() {
        let taken = serial.lock().unwrap().enqueue(bytes);
        if taken > 0 {
            bytes = &bytes[taken..];
            waiting_since = Instant::now();
        } else if waiting_since.elapsed() > INPUT_PATIENCE {
            return;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl<T: Trigger + Send> BusDevice for Serial<T> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The registers are bytes; a wider access reads the register and zeros the rest.
        data.fill(0);
        if let (Some(first), Ok(reg)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(reg);
            self.drive_line(offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        if let (Some(&value), Ok(reg)) = (data.first(), u8::try_from(offset)) {
            // A failed console write or interrupt cannot be reported to the guest; the UART
            // model already counts the byte as sent, as a real line would lose it.
            let _ = self.uart.write(reg, value);
            self.drive_line(offset);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts how often the interrupt line was raised.
    #[derive(Clone, Default)]
    struct Counter(Arc<AtomicUsize>);
    impl Trigger for Counter {
        type E = ();
        fn trigger(&self) -> Result<(), ()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    const LSR: u64 = 5;

    #[test]
    fn output_reaches_the_console_and_raises_thre() {
        let console = Console::capture();
        let irq = Counter::default();
        let mut s = Serial::new(irq.clone(), console.clone());
        s.write(IER, &[0x02]); // enable the transmitter-empty interrupt
        let mut iir = [0u8; 1];
        s.read(IIR, &mut iir); // the guest acknowledges it
        assert_eq!(iir[0] & 0x0f, 0x02, "THR empty was pending");
        let before = irq.0.load(Ordering::SeqCst);
        for b in b"ok\n" {
            assert_eq!(s.write(0, &[*b]), None);
        }
        assert_eq!(console.captured(), b"ok\n");
        assert!(irq.0.load(Ordering::SeqCst) > before);
        let mut lsr = [0u8; 1];
        s.read(LSR, &mut lsr);
        assert_eq!(lsr[0] & 0x20, 0x20, "transmitter holding register empty");
    }

    #[test]
    fn thr_writes_are_visible_only_with_the_thr_interrupt_or_loopback() {
        let mut s = Serial::new(Counter::default(), Console::capture());
        assert!(!s.thr_write_visible(), "a UART out of reset raises nothing");
        s.write(IER, &[0x01]); // received-data interrupt only: a THR write still shows nothing
        assert!(!s.thr_write_visible());
        s.write(IER, &[0x03]);
        assert!(s.thr_write_visible(), "THR empty enabled: each write raises it");
        s.write(IER, &[0x00]);
        s.write(4, &[0x10]); // MCR loopback: the byte comes back as input
        assert!(s.thr_write_visible());
        s.write(4, &[0x00]);
        assert!(!s.thr_write_visible());
    }

    #[test]
    fn input_is_received_in_order_with_an_interrupt() {
        let irq = Counter::default();
        let mut s = Serial::new(irq.clone(), Console::capture());
        s.write(IER, &[0x01]); // enable the received-data interrupt
        assert_eq!(s.enqueue(b"hi"), 2);
        assert!(irq.0.load(Ordering::SeqCst) > 0);
        let mut b = [0u8; 1];
        s.read(LSR, &mut b);
        assert_eq!(b[0] & 1, 1, "data ready");
        s.read(0, &mut b);
        assert_eq!(b[0], b'h');
        s.read(0, &mut b);
        assert_eq!(b[0], b'i');
        s.read(LSR, &mut b);
        assert_eq!(b[0] & 1, 0, "drained");
    }

    #[test]
    fn a_full_fifo_drops_input_instead_of_blocking() {
        let s = Mutex::new(Serial::new(Counter::default(), Console::capture()));
        let big = vec![b'x'; 1000];
        let t = Instant::now();
        feed_input(&s, &big);
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(s.lock().unwrap().enqueue(b"y"), 0, "the FIFO is full, the rest was dropped");
    }

    #[test]
    fn wide_and_odd_accesses_are_harmless() {
        let mut s = Serial::new(Counter::default(), Console::capture());
        let mut wide = [0xffu8; 4];
        s.read(LSR, &mut wide);
        assert_eq!(&wide[1..], &[0, 0, 0]);
        assert_eq!(s.write(u64::MAX, &[1]), None);
        assert_eq!(s.write(0, &[]), None);
    }

    /// Records the level of a line.
    #[derive(Default)]
    struct Level(std::sync::atomic::AtomicBool);
    impl crate::irq::InterruptLine for Level {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_level_line_rises_with_input_and_falls_when_read() {
        let level = Arc::new(Level::default());
        let high = || level.0.load(Ordering::SeqCst);
        let mut s = Serial::with_line(level.clone(), Console::capture());
        assert_eq!(s.enqueue(b"k"), 1);
        assert!(!high(), "the receive interrupt is not enabled");
        s.write(IER, &[0x01]);
        assert!(high(), "enabling it with data waiting raises the line");
        let mut b = [0u8; 1];
        s.read(IIR, &mut b);
        assert_eq!(b[0] & 0x0f, 0x04, "received data identified");
        assert!(!high(), "read away");
        s.enqueue(b"j");
        assert!(high());
        s.write(IER, &[0x00]);
        assert!(!high(), "disabled");
        s.write(IER, &[0x01]);
        assert!(high(), "enabled again with the data still waiting");
        s.read(DATA, &mut b);
        s.read(DATA, &mut b);
        assert_eq!(b[0], b'j');
        assert!(!high(), "the data is read");
    }
}
