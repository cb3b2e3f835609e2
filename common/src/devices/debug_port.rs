//! The debug console port: every byte written is a character on the console.
//! Port 0xf1 is the classic kvm-hello-world port; 0xe9 is the Bochs/QEMU debugcon port.
use crate::bus::{BusDevice, DeviceRequest};
use crate::console::Console;

pub const HELLO_PORT: u64 = 0xf1;
pub const BOCHS_PORT: u64 = 0xe9;

pub struct DebugPort {
    console: Console,
}

impl DebugPort {
    pub fn new(console: Console) -> Self {
        DebugPort { console }
    }
}

impl BusDevice for DebugPort {
    /// Reading 0xe9 returns 0xe9 on Bochs and QEMU: guests use it to detect the port.
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(BOCHS_PORT as u8);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        // A wider `out` still carries one character, in its low byte.
        if let Some(&b) = data.first() {
            self.console.write(&[b]);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reach_the_console() {
        let console = Console::capture();
        let mut port = DebugPort::new(console.clone());
        for b in b"Hi\n" {
            assert_eq!(port.write(0, &[*b]), None);
        }
        port.write(0, &[b'!', 0, 0, 0]);
        assert_eq!(console.captured(), b"Hi\n!");
        let mut r = [0u8; 1];
        port.read(0, &mut r);
        assert_eq!(r, [0xe9]);
    }
}
