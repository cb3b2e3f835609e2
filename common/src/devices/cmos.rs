//! The CMOS RTC at ports 0x70 (index) and 0x71 (data): the wall-clock time in BCD, 24-hour
//! mode, read from the host clock, and 128 bytes of battery-backed RAM for everything else.
//! Linux reads the time here at boot (and would otherwise print garbage dates).
use crate::bus::{BusDevice, DeviceRequest};

pub const CMOS_BASE: u64 = 0x70;
pub const CMOS_PORTS: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
const REG_STATUS_C: u8 = 0x0c;
const REG_STATUS_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// Status B: 24-hour mode, BCD values, no interrupts.
const STATUS_B_24H: u8 = 0x02;
/// Status D: the battery is good, the RAM valid.
const STATUS_D_VALID: u8 = 0x80;

/// A calendar time, as the RTC shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: u32,
    pub month: u8,
    pub day: u8,
    /// 1 = Sunday, as the MC146818 counts.
    pub weekday: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DateTime {
    /// The UTC calendar time `secs` seconds after 1970-01-01 (proleptic Gregorian calendar,
    /// the days-to-civil algorithm of H. Hinnant).
    pub fn from_unix(secs: u64) -> DateTime {
        let days = (secs / 86400) as i64;
        let rem = secs % 86400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u32;
        DateTime {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday (5 when Sunday is 1).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }
}

fn bcd(v: u32) -> u8 {
    let v = v % 100;
    (((v / 10) << 4) | (v % 10)) as u8
}

fn host_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    clock: Box<dyn Fn() -> u64 + Send>,
}

impl Default for Cmos {
    fn default() -> Self {
        Self::with_clock(Box::new(host_now))
    }
}

impl Cmos {
    /// An RTC that follows the host's clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An RTC whose time comes from `clock` (seconds since 1970, UTC).
    pub fn with_clock(clock: Box<dyn Fn() -> u64 + Send>) -> Self {
        Cmos { index: 0, ram: [0; 128], clock }
    }

    fn register(&self, index: u8) -> u8 {
        let t = DateTime::from_unix((self.clock)());
        match index {
            REG_SECONDS => bcd(t.second.into()),
            REG_MINUTES => bcd(t.minute.into()),
            REG_HOURS => bcd(t.hour.into()),
            REG_WEEKDAY => bcd(t.weekday.into()),
            REG_DAY => bcd(t.day.into()),
            REG_MONTH => bcd(t.month.into()),
            REG_YEAR => bcd(t.year),
            REG_CENTURY => bcd(t.year / 100),
            // Update-in-progress is never set: the time is read atomically from the host.
            REG_STATUS_A => 0x26,
            REG_STATUS_B => STATUS_B_24H,
            REG_STATUS_C => 0,
            REG_STATUS_D => STATUS_D_VALID,
            i => self.ram[usize::from(i & 0x7f)],
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = if offset == 1 { self.register(self.index) } else { 0xff };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest> {
        let &value = data.first()?;
        match offset {
            // Bit 7 of the index port masks NMIs on a PC; it is not part of the index.
            0 => self.index = value & 0x7f,
            1 if self.index > REG_STATUS_D && self.index != REG_CENTURY => self.ram[usize::from(self.index)] = value,
            // Writes to the clock registers (setting the time) are ignored.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_to_calendar() {
        let epoch = DateTime::from_unix(0);
        assert_eq!((epoch.year, epoch.month, epoch.day, epoch.weekday), (1970, 1, 1, 5));
        // 2000-02-29 12:34:56 UTC, a Tuesday (leap day of a century leap year).
        let t = DateTime::from_unix(951_827_696);
        assert_eq!((t.year, t.month, t.day, t.weekday), (2000, 2, 29, 3));
        assert_eq!((t.hour, t.minute, t.second), (12, 34, 56));
        // 2026-11-21 06:00:00 UTC, a Saturday.
        let t = DateTime::from_unix(1_795_240_800);
        assert_eq!((t.year, t.month, t.day, t.weekday, t.hour), (2026, 11, 21, 7, 6));
    }

    fn read_reg(c: &mut Cmos, index: u8) -> u8 {
        c.write(0, &[index | 0x80]);
        let mut b = [0u8; 1];
        c.read(1, &mut b);
        b[0]
    }

    #[test]
    fn time_registers_are_bcd() {
        let mut c = Cmos::with_clock(Box::new(|| 951_827_696));
        assert_eq!(read_reg(&mut c, REG_SECONDS), 0x56);
        assert_eq!(read_reg(&mut c, REG_MINUTES), 0x34);
        assert_eq!(read_reg(&mut c, REG_HOURS), 0x12);
        assert_eq!(read_reg(&mut c, REG_DAY), 0x29);
        assert_eq!(read_reg(&mut c, REG_MONTH), 0x02);
        assert_eq!(read_reg(&mut c, REG_YEAR), 0x00);
        assert_eq!(read_reg(&mut c, REG_CENTURY), 0x20);
        assert_eq!(read_reg(&mut c, REG_STATUS_A) & 0x80, 0, "no update in progress");
        assert_eq!(read_reg(&mut c, REG_STATUS_B), STATUS_B_24H);
        assert_eq!(read_reg(&mut c, REG_STATUS_D), STATUS_D_VALID);
    }

    #[test]
    fn ram_keeps_what_is_written_and_clock_ignores_writes() {
        let mut c = Cmos::with_clock(Box::new(|| 0));
        c.write(0, &[0x40]);
        c.write(1, &[0xab]);
        assert_eq!(read_reg(&mut c, 0x40), 0xab);
        c.write(0, &[REG_SECONDS]);
        c.write(1, &[0x59]);
        assert_eq!(read_reg(&mut c, REG_SECONDS), 0x00);
    }
}
