//! The virtual supervisor CSR file.
//!
//! The guest kernel runs in U-mode, so every access to an S-mode CSR traps (SIGILL) and lands
//! here. Each CSR keeps only the bits this virtual hart implements; writes to the others are
//! ignored (WARL) and read-only fields read back fixed values, as the privileged spec asks.
//!
//! `satp`: Bare and Sv39 ([`crate::mmu`]). Following the spec's WARL rule for an unsupported
//! MODE ("the entire write has no effect"), a write of Sv48/Sv57 is ignored, so a guest that
//! probes by writing and reading back sees that they are not there. The write is reported as
//! [`WriteEffect::SatpModeIgnored`] so `--stats` shows it.
//!
//! `time`/`cycle`/`instret` come from the host through [`Platform`]. From virtual U-mode they
//! follow the guest's scounteren, as far as they trap at all: Linux lets U-mode read `time`
//! natively (the host's scounteren.TM), so a guest's TM = 0 cannot hide it. The FPU is the host's
//! real FPU, always on: `sstatus.FS` stores what the guest writes, but FS = Off does not make
//! FP instructions trap. Since we cannot see FP writes, any FS other than Off reads back as
//! Dirty (with SD): a guest kernel that trusted Initial or Clean would skip saving FP
//! registers its tasks did change.
use crate::platform::Platform;

pub const SSTATUS: u16 = 0x100;
pub const SIE: u16 = 0x104;
pub const STVEC: u16 = 0x105;
pub const SCOUNTEREN: u16 = 0x106;
pub const SENVCFG: u16 = 0x10a;
pub const SSCRATCH: u16 = 0x140;
pub const SEPC: u16 = 0x141;
pub const SCAUSE: u16 = 0x142;
pub const STVAL: u16 = 0x143;
pub const SIP: u16 = 0x144;
pub const SATP: u16 = 0x180;
pub const CYCLE: u16 = 0xc00;
pub const TIME: u16 = 0xc01;
pub const INSTRET: u16 = 0xc02;

// sstatus fields.
pub const SSTATUS_SIE: u64 = 1 << 1;
pub const SSTATUS_SPIE: u64 = 1 << 5;
pub const SSTATUS_SPP: u64 = 1 << 8;
pub const SSTATUS_FS: u64 = 0b11 << 13;
pub const SSTATUS_SUM: u64 = 1 << 18;
pub const SSTATUS_MXR: u64 = 1 << 19;
/// UXL = 2: U-mode is 64-bit. Read-only.
pub const SSTATUS_UXL_64: u64 = 2 << 32;
pub const SSTATUS_SD: u64 = 1 << 63;
const SSTATUS_WRITABLE: u64 = SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP | SSTATUS_FS | SSTATUS_SUM | SSTATUS_MXR;

// Interrupt bits, the same positions in sie and sip.
pub const IRQ_SSI: u64 = 1;
pub const IRQ_STI: u64 = 5;
pub const IRQ_SEI: u64 = 9;
pub const SIP_SSIP: u64 = 1 << IRQ_SSI;
pub const SIP_STIP: u64 = 1 << IRQ_STI;
pub const SIP_SEIP: u64 = 1 << IRQ_SEI;
const SIE_WRITABLE: u64 = SIP_SSIP | SIP_STIP | SIP_SEIP;
/// Only the software interrupt is pending by guest write; STIP follows the SBI timer and
/// SEIP the PLIC (`trap::set_external`).
const SIP_WRITABLE: u64 = SIP_SSIP;

const SATP_MODE_SHIFT: u32 = 60;

/// The virtual S-mode CSRs of one hart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csrs {
    pub sstatus: u64,
    pub sie: u64,
    pub sip: u64,
    pub stvec: u64,
    pub scounteren: u64,
    pub senvcfg: u64,
    pub sscratch: u64,
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
    pub satp: u64,
    /// The SBI timer deadline in `time` ticks (u64::MAX: none). Not a CSR the guest can name
    /// (we do not offer Sstc's stimecmp); set_timer writes it.
    pub timer_deadline: u64,
}

impl Default for Csrs {
    fn default() -> Self {
        Csrs {
            sstatus: SSTATUS_UXL_64,
            sie: 0,
            sip: 0,
            stvec: 0,
            scounteren: 0,
            senvcfg: 0,
            sscratch: 0,
            sepc: 0,
            scause: 0,
            stval: 0,
            satp: 0,
            timer_deadline: u64::MAX,
        }
    }
}

/// The guest named a CSR it may not access: the instruction is illegal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalCsr;

/// Anything notable a write did besides storing bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    Stored,
    /// satp was written with a translation mode we do not implement; nothing changed.
    SatpModeIgnored {
        mode: u64,
    },
}

/// Whether virtual U-mode may read the counter `csr` (cycle, time, instret, hpmcounterN at
/// 0xc00..=0xc1f): only if the guest kernel set its bit in scounteren. Other CSRs: true.
pub fn counter_enabled_for_user(csr: u16, scounteren: u64) -> bool {
    match csr {
        0xc00..=0xc1f => scounteren & (1 << (csr - 0xc00)) != 0,
        _ => true,
    }
}

/// CSRs whose number has bits 11:10 = 0b11 are read-only by encoding.
pub fn is_read_only(csr: u16) -> bool {
    csr >> 10 == 0b11
}

impl Csrs {
    /// sstatus as the guest reads it: an FPU that is on is always Dirty (the real FPU may have
    /// been written behind our back), and SD summarizes that.
    fn sstatus_value(&self) -> u64 {
        if self.sstatus & SSTATUS_FS == 0 {
            return self.sstatus;
        }
        self.sstatus | SSTATUS_FS | SSTATUS_SD
    }

    pub fn read(&self, csr: u16, platform: &mut dyn Platform) -> Result<u64, IllegalCsr> {
        Ok(match csr {
            SSTATUS => self.sstatus_value(),
            SIE => self.sie,
            STVEC => self.stvec,
            SCOUNTEREN => self.scounteren,
            SENVCFG => self.senvcfg,
            SSCRATCH => self.sscratch,
            SEPC => self.sepc,
            SCAUSE => self.scause,
            STVAL => self.stval,
            SIP => self.sip,
            SATP => self.satp,
            CYCLE => platform.cycle(),
            TIME => platform.time(),
            INSTRET => platform.instret(),
            _ => return Err(IllegalCsr),
        })
    }

    /// Stores `value` with the CSR's write mask applied.
    pub fn write(&mut self, csr: u16, value: u64) -> Result<WriteEffect, IllegalCsr> {
        if is_read_only(csr) {
            return Err(IllegalCsr);
        }
        match csr {
            SSTATUS => self.sstatus = (self.sstatus & !SSTATUS_WRITABLE) | (value & SSTATUS_WRITABLE),
            SIE => self.sie = value & SIE_WRITABLE,
            SIP => self.sip = (self.sip & !SIP_WRITABLE) | (value & SIP_WRITABLE),
            // MODE 0 direct and 1 vectored. MODE 2 and 3 are reserved: WARL keeps the old MODE
            // (a write of a reserved mode never makes the hart vectored), the BASE still changes.
            STVEC => {
                let mode = if value & 0b11 <= 1 { value & 0b11 } else { self.stvec & 0b11 };
                self.stvec = (value & !0b11) | mode;
            }
            SCOUNTEREN => self.scounteren = value & 0b111,
            // Only FIOM (bit 0) exists on this hart.
            SENVCFG => self.senvcfg = value & 1,
            SSCRATCH => self.sscratch = value,
            // IALIGN is 16 (the C extension): bit 0 of sepc is always zero.
            SEPC => self.sepc = value & !1,
            SCAUSE => self.scause = value,
            STVAL => self.stval = value,
            SATP => {
                let mode = value >> SATP_MODE_SHIFT;
                if !crate::mmu::satp_mode_supported(mode) {
                    return Ok(WriteEffect::SatpModeIgnored { mode });
                }
                // Bare or Sv39. Under Bare, ASID and PPN have no effect; kept as WARL storage.
                self.satp = value;
            }
            _ => return Err(IllegalCsr),
        }
        Ok(WriteEffect::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fake::FakePlatform;

    #[test]
    fn sstatus_masks_and_read_only_fields() {
        let mut c = Csrs::default();
        let mut p = FakePlatform::new();
        c.write(SSTATUS, u64::MAX).unwrap();
        let v = c.read(SSTATUS, &mut p).unwrap();
        assert_eq!(v & SSTATUS_SIE, SSTATUS_SIE);
        assert_eq!(v & SSTATUS_SPP, SSTATUS_SPP);
        assert_eq!(v & SSTATUS_SD, SSTATUS_SD, "FS dirty shows as SD");
        assert_eq!((v >> 32) & 0b11, 2, "UXL stays 64-bit");
        assert_eq!(v & (1 << 3), 0, "MIE is not visible in sstatus");
        c.write(SSTATUS, 0).unwrap();
        assert_eq!(c.read(SSTATUS, &mut p).unwrap(), SSTATUS_UXL_64);
    }

    #[test]
    fn fs_on_always_reads_dirty() {
        let mut c = Csrs::default();
        let mut p = FakePlatform::new();
        for (written, name) in [(1u64, "Initial"), (2, "Clean"), (3, "Dirty")] {
            c.write(SSTATUS, written << 13).unwrap();
            let v = c.read(SSTATUS, &mut p).unwrap();
            assert_eq!(v & SSTATUS_FS, SSTATUS_FS, "FS written {name} reads Dirty");
            assert_eq!(v & SSTATUS_SD, SSTATUS_SD, "FS written {name}: SD set");
        }
        c.write(SSTATUS, 0).unwrap();
        let v = c.read(SSTATUS, &mut p).unwrap();
        assert_eq!(v & (SSTATUS_FS | SSTATUS_SD), 0, "Off stays Off, without SD");
    }

    #[test]
    fn interrupt_registers_keep_only_their_bits() {
        let mut c = Csrs::default();
        let mut p = FakePlatform::new();
        c.write(SIE, u64::MAX).unwrap();
        assert_eq!(c.read(SIE, &mut p).unwrap(), 0x222);
        c.sip = SIP_STIP;
        c.write(SIP, 0).unwrap();
        assert_eq!(c.sip, SIP_STIP, "the guest cannot clear STIP by writing sip");
        c.write(SIP, u64::MAX).unwrap();
        assert_eq!(c.sip, SIP_STIP | SIP_SSIP, "and cannot set SEIP");
    }

    #[test]
    fn warl_registers() {
        let mut c = Csrs::default();
        c.write(STVEC, 0x8020_0003).unwrap();
        assert_eq!(c.stvec, 0x8020_0000, "reserved mode 3 keeps the old mode (direct), not vectored");
        c.write(STVEC, 0x8020_0101).unwrap();
        assert_eq!(c.stvec, 0x8020_0101, "vectored");
        c.write(STVEC, 0x8030_0002).unwrap();
        assert_eq!(c.stvec, 0x8030_0001, "reserved mode 2: new base, mode stays vectored");
        c.write(STVEC, 0x8030_0000).unwrap();
        assert_eq!(c.stvec, 0x8030_0000, "direct");
        c.write(SEPC, 0x8020_0007).unwrap();
        assert_eq!(c.sepc, 0x8020_0006);
        c.write(SSCRATCH, 0xdead_beef).unwrap();
        assert_eq!(c.sscratch, 0xdead_beef);
    }

    #[test]
    fn satp_bare_and_sv39_only() {
        let mut c = Csrs::default();
        assert_eq!(c.write(SATP, 0x1234), Ok(WriteEffect::Stored));
        assert_eq!(c.satp, 0x1234);
        let sv39 = (8u64 << 60) | (3 << 44) | 0x80200;
        assert_eq!(c.write(SATP, sv39), Ok(WriteEffect::Stored));
        assert_eq!(c.satp, sv39);
        let sv48 = (9u64 << 60) | 0x80200;
        assert_eq!(c.write(SATP, sv48), Ok(WriteEffect::SatpModeIgnored { mode: 9 }));
        assert_eq!(c.satp, sv39, "an unsupported mode leaves satp unchanged");
    }

    #[test]
    fn counters_read_host_and_refuse_writes() {
        let mut c = Csrs::default();
        let mut p = FakePlatform::new();
        p.now = 42;
        assert_eq!(c.read(TIME, &mut p), Ok(42));
        assert_eq!(c.read(CYCLE, &mut p), Ok(420));
        assert_eq!(c.read(INSTRET, &mut p), Ok(210));
        assert_eq!(c.write(TIME, 1), Err(IllegalCsr));
        assert_eq!(c.read(0x300, &mut p), Err(IllegalCsr), "mstatus is not an S-mode CSR");
        assert_eq!(c.write(0x300, 0), Err(IllegalCsr));
    }
}
