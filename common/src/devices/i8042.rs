//! The i8042 keyboard controller, with its two ports (keyboard and AUX) and no device behind
//! either: enough that Linux's driver probes it at once and finds it sane and empty, and that
//! `reboot=k` (the "pulse reset line" command 0xfe to port 0x64) ends the VM as a clean power-off.
//!
//! Placed at port 0x60 with 5 ports: offset 0 is the data port (0x60), offset 4 the
//! command/status port (0x64).
//!
//! Why not a stub that ignores what it does not need: Linux's probe sends commands that expect an
//! answer (the AUX loopback 0xd3, the AUX interface test 0xa9) and polls the status port up to
//! 10,000 times for each one that never comes. Against a stub that was some 20,000 exits and over
//! two seconds of a boot. Every command here answers at once, as a real controller does.
//! (vm-superio's i8042 answers nothing but the reset, so it has the same problem.)
use crate::bus::{BusDevice, DeviceRequest};
use crate::irq::{NoLine, SharedLine};
use std::sync::Arc;

pub const I8042_BASE: u64 = 0x60;
pub const I8042_PORTS: u64 = 5;
/// The ISA interrupts of the two ports.
pub const KBD_IRQ: u32 = 1;
pub const AUX_IRQ: u32 = 12;
const DATA: u64 = 0;
const COMMAND: u64 = 4;

// Status register bits.
/// A byte waits at 0x60.
const STATUS_OUTPUT_FULL: u8 = 0x01;
/// Set once the controller passed its self-test.
const STATUS_SYSTEM: u8 = 0x04;
/// The last write went to the command port.
const STATUS_COMMAND: u8 = 0x08;
/// The keyboard is not inhibited by the (absent) key lock; clear, Linux warns "Keylock active".
const STATUS_UNLOCKED: u8 = 0x10;
/// The waiting byte came from the AUX port.
const STATUS_AUX_DATA: u8 = 0x20;
/// The device a byte was sent to did not answer (there is none).
const STATUS_TIMEOUT: u8 = 0x40;

// Controller configuration byte ("command byte") bits.
const CTR_KBD_INT: u8 = 0x01;
const CTR_AUX_INT: u8 = 0x02;
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_AUX_DISABLED: u8 = 0x20;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_KBD_LOOP: u8 = 0xd2;
const CMD_AUX_LOOP: u8 = 0xd3;
const CMD_AUX_SEND: u8 = 0xd4;
const CMD_RESET_CPU: u8 = 0xfe;

/// What the controller returns for a byte sent to a device that is not there.
const NO_DEVICE: u8 = 0xfe;
/// The self-test's "passed".
const SELF_TEST_OK: u8 = 0x55;

/// Which port a byte in the output buffer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Controller,
    Keyboard,
    Aux,
}

pub struct I8042 {
    ctr: u8,
    output_port: u8,
    /// The byte the guest reads next from port 0x60, and where it came from.
    pending: Option<(u8, Port)>,
    /// The byte in the output buffer was a device's failure to answer.
    timeout: bool,
    /// A command that takes its argument from the next write to 0x60.
    awaiting_data: Option<u8>,
    last_was_command: bool,
    kbd_irq: SharedLine,
    aux_irq: SharedLine,
}

impl Default for I8042 {
    fn default() -> Self {
        I8042::new(Arc::new(NoLine), Arc::new(NoLine))
    }
}

impl I8042 {
    /// A controller raising `kbd_irq` (IRQ 1) and `aux_irq` (IRQ 12) for its ports' bytes,
    /// when the configuration byte enables them.
    pub fn new(kbd_irq: SharedLine, aux_irq: SharedLine) -> Self {
        // Translation on, keyboard interrupt on, system flag set; A20 enabled, reset line high.
        I8042 {
            ctr: 0x45,
            output_port: 0x03,
            pending: None,
            timeout: false,
            awaiting_data: None,
            last_was_command: false,
            kbd_irq,
            aux_irq,
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYSTEM | STATUS_UNLOCKED;
        if let Some((_, port)) = self.pending {
            s |= STATUS_OUTPUT_FULL;
            if port == Port::Aux {
                s |= STATUS_AUX_DATA;
            }
        }
        if self.timeout {
            s |= STATUS_TIMEOUT;
        }
        if self.last_was_command {
            s |= STATUS_COMMAND;
        }
        s
    }

    /// Puts `byte` in the output buffer and drives the interrupt lines to match.
    fn output(&mut self, byte: u8, port: Port) {
        self.pending = Some((byte, port));
        self.update_irqs();
    }

    /// A port's line is high while its byte waits and the configuration byte enables it.
    fn update_irqs(&self) {
        let from = self.pending.map(|(_, p)| p);
        self.kbd_irq.set_level(from == Some(Port::Keyboard) && self.ctr & CTR_KBD_INT != 0);
        self.aux_irq.set_level(from == Some(Port::Aux) && self.ctr & CTR_AUX_INT != 0);
    }

    fn command(&mut self, cmd: u8) -> Option<DeviceRequest> {
        match cmd {
            CMD_READ_CTR => self.output(self.ctr, Port::Controller),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT | CMD_KBD_LOOP | CMD_AUX_LOOP | CMD_AUX_SEND => {
                self.awaiting_data = Some(cmd)
            }
            CMD_AUX_DISABLE => self.ctr |= CTR_AUX_DISABLED,
            CMD_AUX_ENABLE => self.ctr &= !CTR_AUX_DISABLED,
            CMD_KBD_DISABLE => self.ctr |= CTR_KBD_DISABLED,
            CMD_KBD_ENABLE => self.ctr &= !CTR_KBD_DISABLED,
            // Interface tests: 0 means the clock and data lines are fine.
            CMD_AUX_TEST | CMD_KBD_TEST => self.output(0x00, Port::Controller),
            CMD_SELF_TEST => self.output(SELF_TEST_OK, Port::Controller),
            CMD_READ_OUTPUT_PORT => self.output(self.output_port, Port::Controller),
            CMD_RESET_CPU => return Some(DeviceRequest::PowerOff(0)),
            _ => {}
        }
        None
    }

    fn data(&mut self, value: u8) -> Option<DeviceRequest> {
        match self.awaiting_data.take() {
            Some(CMD_WRITE_CTR) => {
                self.ctr = value;
                self.update_irqs();
            }
            Some(CMD_WRITE_OUTPUT_PORT) => {
                self.output_port = value;
                // Bit 0 of the output port is the CPU reset line, active low.
                if value & 1 == 0 {
                    return Some(DeviceRequest::PowerOff(0));
                }
            }
            // Loopback: the byte comes back as if that port's device had sent it.
            Some(CMD_KBD_LOOP) => self.output(value, Port::Keyboard),
            Some(CMD_AUX_LOOP) => self.output(value, Port::Aux),
            // A byte for the mouse, or (no command pending) for the keyboard: neither is
            // there, so the controller times out and says so, as real ones do.
            Some(CMD_AUX_SEND) => self.no_device(Port::Aux),
            _ => self.no_device(Port::Keyboard),
        }
        None
    }

    fn no_device(&mut self, port: Port) {
        self.timeout = true;
        self.output(NO_DEVICE, port);
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            DATA => match self.pending.take() {
                Some((byte, _)) => {
                    self.timeout = false;
                    self.update_irqs();
                    byte
                }
                None => 0,
            },
            COMMAND => self.status(),
            _ => 0xff,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        let &value = data.first()?;
        match offset {
            COMMAND => {
                self.last_was_command = true;
                self.command(value)
            }
            DATA => {
                self.last_was_command = false;
                self.data(value)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::InterruptLine;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn read(dev: &mut I8042, offset: u64) -> u8 {
        let mut b = [0u8; 1];
        dev.read(offset, &mut b);
        b[0]
    }

    /// A command and its answer, the way Linux's i8042_command does it.
    fn ask(k: &mut I8042, cmd: u8, param: Option<u8>) -> (u8, u8) {
        k.write(COMMAND, &[cmd]);
        if let Some(p) = param {
            k.write(DATA, &[p]);
        }
        let status = read(k, COMMAND);
        assert_ne!(status & STATUS_OUTPUT_FULL, 0, "command {cmd:#x} must answer at once");
        (read(k, DATA), status)
    }

    #[test]
    fn reset_command_powers_off_cleanly() {
        let mut k = I8042::default();
        // Linux's kb_wait() polls until the input buffer (status bit 1) is empty.
        assert_eq!(read(&mut k, COMMAND) & 0x02, 0);
        assert_eq!(k.write(COMMAND, &[0xfe]), Some(DeviceRequest::PowerOff(0)));
        // 0xfe to the data port is a keyboard byte, not a reset.
        assert_eq!(k.write(DATA, &[0xfe]), None);
    }

    #[test]
    fn clearing_the_reset_line_through_the_output_port_also_resets() {
        let mut k = I8042::default();
        assert_eq!(k.write(COMMAND, &[CMD_WRITE_OUTPUT_PORT]), None);
        assert_eq!(k.write(DATA, &[0x03]), None);
        assert_eq!(k.write(COMMAND, &[CMD_WRITE_OUTPUT_PORT]), None);
        assert_eq!(k.write(DATA, &[0x02]), Some(DeviceRequest::PowerOff(0)));
    }

    #[test]
    fn linux_probe_gets_every_answer_at_once() {
        let mut k = I8042::default();
        assert_eq!(read(&mut k, COMMAND) & STATUS_OUTPUT_FULL, 0);
        // No "Keylock active" warning.
        assert_ne!(read(&mut k, COMMAND) & STATUS_UNLOCKED, 0);
        assert_eq!(ask(&mut k, CMD_SELF_TEST, None).0, SELF_TEST_OK);
        assert_eq!(read(&mut k, COMMAND) & STATUS_OUTPUT_FULL, 0);
        k.write(COMMAND, &[CMD_WRITE_CTR]);
        k.write(DATA, &[0x30]);
        assert_eq!(ask(&mut k, CMD_READ_CTR, None).0, 0x30);
        // The AUX loopback returns the byte as AUX data; then the interface test passes.
        let (byte, status) = ask(&mut k, CMD_AUX_LOOP, Some(0x5a));
        assert_eq!((byte, status & STATUS_AUX_DATA), (0x5a, STATUS_AUX_DATA));
        assert_eq!(ask(&mut k, CMD_AUX_TEST, None), (0x00, STATUS_SYSTEM | STATUS_UNLOCKED | STATUS_COMMAND | 1));
        assert_eq!(ask(&mut k, CMD_KBD_TEST, None).0, 0x00);
        // Enabling and disabling the ports shows in the configuration byte (Linux reads it back).
        k.write(COMMAND, &[CMD_AUX_DISABLE]);
        assert_ne!(ask(&mut k, CMD_READ_CTR, None).0 & CTR_AUX_DISABLED, 0);
        k.write(COMMAND, &[CMD_AUX_ENABLE]);
        assert_eq!(ask(&mut k, CMD_READ_CTR, None).0 & CTR_AUX_DISABLED, 0);
        assert_eq!(k.write(COMMAND, &[]), None);
    }

    #[test]
    fn bytes_for_absent_devices_time_out_with_0xfe() {
        let mut k = I8042::default();
        // A keyboard command (0xf2, identify) written to the data port.
        k.write(DATA, &[0xf2]);
        let status = read(&mut k, COMMAND);
        assert_eq!(
            status & (STATUS_OUTPUT_FULL | STATUS_TIMEOUT | STATUS_AUX_DATA),
            STATUS_OUTPUT_FULL | STATUS_TIMEOUT
        );
        assert_eq!(read(&mut k, DATA), NO_DEVICE);
        assert_eq!(read(&mut k, COMMAND) & STATUS_TIMEOUT, 0, "reading the byte clears the timeout");
        let (byte, status) = ask(&mut k, CMD_AUX_SEND, Some(0xf2));
        assert_eq!((byte, status & (STATUS_TIMEOUT | STATUS_AUX_DATA)), (NO_DEVICE, STATUS_TIMEOUT | STATUS_AUX_DATA));
    }

    #[derive(Default)]
    struct Line(AtomicBool);
    impl InterruptLine for Line {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::SeqCst);
        }
    }

    #[test]
    fn each_port_raises_its_own_line_while_its_byte_waits() {
        let (kbd, aux) = (Arc::new(Line::default()), Arc::new(Line::default()));
        let mut k = I8042::new(kbd.clone(), aux.clone());
        let level = |l: &Arc<Line>| l.0.load(Ordering::SeqCst);
        // Both interrupts enabled.
        k.write(COMMAND, &[CMD_WRITE_CTR]);
        k.write(DATA, &[CTR_KBD_INT | CTR_AUX_INT]);
        k.write(COMMAND, &[CMD_AUX_LOOP]);
        k.write(DATA, &[0xa5]);
        assert!(level(&aux) && !level(&kbd), "Linux's AUX IRQ test waits for IRQ 12");
        assert_eq!(read(&mut k, DATA), 0xa5);
        assert!(!level(&aux), "reading the byte lowers the line");
        k.write(COMMAND, &[CMD_KBD_LOOP]);
        k.write(DATA, &[0x1c]);
        assert!(level(&kbd) && !level(&aux));
        // A controller byte (the configuration byte itself) raises neither.
        read(&mut k, DATA);
        k.write(COMMAND, &[CMD_READ_CTR]);
        assert!(!level(&kbd) && !level(&aux));
        // With the interrupts off, no line rises.
        read(&mut k, DATA);
        k.write(COMMAND, &[CMD_WRITE_CTR]);
        k.write(DATA, &[0]);
        k.write(COMMAND, &[CMD_AUX_LOOP]);
        k.write(DATA, &[0x5a]);
        assert!(!level(&aux));
    }
}
