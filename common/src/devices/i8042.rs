//! The i8042 keyboard controller, reduced to what a VMM needs: Linux's `reboot=k` writes the
//! "pulse reset line" command 0xfe to port 0x64, which ends the VM as a clean power-off.
//!
//! Placed at port 0x60 with 5 ports: offset 0 is the data port (0x60), offset 4 the
//! command/status port (0x64). A few controller commands answer so that drivers that probe
//! the controller see a sane, empty one; there is no keyboard behind it.
use crate::bus::{BusDevice, DeviceRequest};

pub const I8042_BASE: u64 = 0x60;
pub const I8042_PORTS: u64 = 5;
const DATA: u64 = 0;
const COMMAND: u64 = 4;

/// Status register: output buffer full (a byte waits at 0x60).
const STATUS_OUTPUT_FULL: u8 = 0x01;
/// Status register: system flag, set once the controller passed its self-test.
const STATUS_SYSTEM: u8 = 0x04;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_RESET_CPU: u8 = 0xfe;

pub struct I8042 {
    /// The controller configuration byte ("command byte").
    ctr: u8,
    output_port: u8,
    /// The byte the guest reads next from port 0x60.
    pending: Option<u8>,
    /// A command that takes its argument from the next write to 0x60.
    awaiting_data: Option<u8>,
}

impl Default for I8042 {
    fn default() -> Self {
        // Translation on, keyboard interrupt on, system flag set; A20 enabled, reset line high.
        I8042 { ctr: 0x45, output_port: 0x03, pending: None, awaiting_data: None }
    }
}

impl I8042 {
    pub fn new() -> Self {
        Self::default()
    }

    fn status(&self) -> u8 {
        let full = if self.pending.is_some() { STATUS_OUTPUT_FULL } else { 0 };
        full | STATUS_SYSTEM
    }

    fn command(&mut self, cmd: u8) -> Option<DeviceRequest> {
        match cmd {
            CMD_READ_CTR => self.pending = Some(self.ctr),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT => self.awaiting_data = Some(cmd),
            CMD_SELF_TEST => self.pending = Some(0x55),
            CMD_KBD_TEST => self.pending = Some(0x00),
            CMD_READ_OUTPUT_PORT => self.pending = Some(self.output_port),
            CMD_RESET_CPU => return Some(DeviceRequest::PowerOff(0)),
            _ => {}
        }
        None
    }

    fn data(&mut self, value: u8) -> Option<DeviceRequest> {
        match self.awaiting_data.take() {
            Some(CMD_WRITE_CTR) => self.ctr = value,
            Some(CMD_WRITE_OUTPUT_PORT) => {
                self.output_port = value;
                // Bit 0 of the output port is the CPU reset line, active low.
                if value & 1 == 0 {
                    return Some(DeviceRequest::PowerOff(0));
                }
            }
            // Bytes for the (absent) keyboard are dropped.
            _ => {}
        }
        None
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            DATA => self.pending.take().unwrap_or(0),
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
            COMMAND => self.command(value),
            DATA => self.data(value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dev: &mut I8042, offset: u64) -> u8 {
        let mut b = [0u8; 1];
        dev.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_powers_off_cleanly() {
        let mut k = I8042::new();
        // Linux's kb_wait() polls until the input buffer (status bit 1) is empty.
        assert_eq!(read(&mut k, COMMAND) & 0x02, 0);
        assert_eq!(k.write(COMMAND, &[0xfe]), Some(DeviceRequest::PowerOff(0)));
        // 0xfe to the data port is a keyboard byte, not a reset.
        assert_eq!(k.write(DATA, &[0xfe]), None);
    }

    #[test]
    fn clearing_the_reset_line_through_the_output_port_also_resets() {
        let mut k = I8042::new();
        assert_eq!(k.write(COMMAND, &[CMD_WRITE_OUTPUT_PORT]), None);
        assert_eq!(k.write(DATA, &[0x03]), None);
        assert_eq!(k.write(COMMAND, &[CMD_WRITE_OUTPUT_PORT]), None);
        assert_eq!(k.write(DATA, &[0x02]), Some(DeviceRequest::PowerOff(0)));
    }

    #[test]
    fn controller_commands_answer_through_the_data_port() {
        let mut k = I8042::new();
        assert_eq!(read(&mut k, COMMAND) & STATUS_OUTPUT_FULL, 0);
        k.write(COMMAND, &[CMD_SELF_TEST]);
        assert_eq!(read(&mut k, COMMAND) & STATUS_OUTPUT_FULL, 1);
        assert_eq!(read(&mut k, DATA), 0x55);
        assert_eq!(read(&mut k, COMMAND) & STATUS_OUTPUT_FULL, 0);
        k.write(COMMAND, &[CMD_WRITE_CTR]);
        k.write(DATA, &[0x30]);
        k.write(COMMAND, &[CMD_READ_CTR]);
        assert_eq!(read(&mut k, DATA), 0x30);
        assert_eq!(k.write(COMMAND, &[]), None);
    }
}
