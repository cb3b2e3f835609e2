//! A guest load or store to a device (MMIO), performed on the device bus.
//!
//! The engine leaves every device window unmapped (PROT_NONE), so the access faults (SIGSEGV).
//! Nothing here decodes on its own: the instruction at pc goes through the interpreter's one
//! step ([`crate::interp::step`]): [`crate::rvc`] expands the compressed forms (C.LW, C.SW,
//! C.LD, C.SD, C.LWSP, C.SWSP, C.LDSP, C.SDSP), the executor picks the width and the sign or
//! zero extension, writes rd and advances pc; its memory path ([`crate::vmem::Virt`])
//! translates the address (Bare or Sv39) and sends what is not RAM to the
//! [`common::bus::Bus`]. An address no device claims, a device access that is not naturally
//! aligned, and floating-point accesses to a device are access faults for the guest.
use crate::hart::{self, Action, Handled, Hart};
use crate::interp::{self, Interp, Step};
use crate::mmu::Regime;
use crate::platform::Platform;
use crate::vmem::Virt;

/// Performs the instruction at `hart.pc`, whose data access faulted on `addr` (a device's
/// physical address in Bare, or a guest-virtual one with Sv39). `kind` names the device for
/// statistics.
pub fn perform(hart: &mut Hart, platform: &mut dyn Platform, addr: u64, kind: &'static str) -> Handled {
    // An LR reservation on a device register means nothing: each access stands alone.
    let mut st = Interp::default();
    match interp::step(hart, platform, &mut st) {
        Step::Done => Handled { kind, action: Action::Resume },
        // An access fault (or a page fault on the way) is already delivered, or the run fails.
        Step::Handled(h) => h,
        Step::Native => {
            // Floating point to a device: the devices have integer registers only.
            let raw = interp::fetch(hart, &mut Virt::of(platform, Regime::of(hart))).map_or(0, |(raw, _)| raw);
            hart::on_fault(hart, addr, raw, false, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hart::Mode;
    use crate::platform::fake::FakePlatform;
    use crate::rvc::{i_type, s_type};
    use crate::trap;
    use common::bus::{BusDevice, DeviceRequest};
    use std::sync::{Arc, Mutex};

    const DEV: u64 = 0x1000_0000;
    const RAM: u64 = 0x8000_0000;
    /// Every read of the probe sees these bytes: high bits set, to show sign extension.
    const PATTERN: [u8; 8] = [0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88];

    /// Records each access as (offset, size, bytes written or None for a read).
    #[derive(Default)]
    struct Probe(Vec<(u64, usize, Option<Vec<u8>>)>);
    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.copy_from_slice(&PATTERN[..data.len()]);
            self.0.push((offset, data.len(), None));
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Option<DeviceRequest> {
            self.0.push((offset, data.len(), Some(data.to_vec())));
            None
        }
    }

    /// A platform with the probe at DEV (one page) and `insn` at the start of RAM.
    fn machine(insn: u32) -> (Hart, FakePlatform, Arc<Mutex<Probe>>) {
        let mut p = FakePlatform::new();
        let probe = Arc::new(Mutex::new(Probe::default()));
        p.devices.insert(DEV, 0x1000, "probe", probe.clone()).unwrap();
        p.ram[..4].copy_from_slice(&insn.to_le_bytes());
        let mut h = Hart::new(RAM);
        h.csrs.stvec = RAM + 0x800;
        (h, p, probe)
    }

    fn load(f3: u32, rd: u32, imm: i32) -> u32 {
        i_type(imm, 11, f3, rd, 0x03) // base a1
    }

    fn store(f3: u32, imm: i32) -> u32 {
        s_type(imm, 12, 11, f3, 0x23) // value a2, base a1
    }

    #[test]
    fn loads_of_every_width_extend_as_the_spec_says() {
        assert_eq!(load(2, 10, 4), 0x0045_a503, "lw a0, 4(a1) as GNU as encodes it");
        let cases = [
            (0, 0xffff_ffff_ffff_ff81, "lb"),
            (1, 0xffff_ffff_ffff_8281, "lh"),
            (2, 0xffff_ffff_8483_8281, "lw"),
            (3, 0x8887_8685_8483_8281, "ld"),
            (4, 0x81, "lbu"),
            (5, 0x8281, "lhu"),
            (6, 0x8483_8281, "lwu"),
        ];
        for (f3, want, name) in cases {
            let (mut h, mut p, probe) = machine(load(f3, 10, 8));
            h.x[11] = DEV;
            let r = perform(&mut h, &mut p, DEV + 8, "mmio probe");
            assert_eq!(r, Handled { kind: "mmio probe", action: Action::Resume }, "{name}");
            assert_eq!((h.x[10], h.pc), (want, RAM + 4), "{name}");
            assert_eq!(probe.lock().unwrap().0, vec![(8, 1 << (f3 & 3), None)], "{name}");
        }
    }

    #[test]
    fn stores_send_the_low_bytes_of_rs2() {
        for (f3, bytes) in [(0, 1), (1, 2), (2, 4), (3, 8)] {
            let (mut h, mut p, probe) = machine(store(f3, 16));
            h.x[11] = DEV;
            h.x[12] = 0x1122_3344_5566_7788;
            perform(&mut h, &mut p, DEV + 16, "mmio probe");
            assert_eq!(h.pc, RAM + 4);
            let want = 0x1122_3344_5566_7788u64.to_le_bytes()[..bytes].to_vec();
            assert_eq!(probe.lock().unwrap().0, vec![(16, bytes, Some(want))], "width {bytes}");
        }
    }

    #[test]
    fn compressed_and_sp_relative_forms() {
        // (instruction, base register, its value, what the probe sees, rd and its value)
        let loads = [
            (0x424c, 12, 4, 11, 0xffff_ffff_8483_8281u64, "c.lw a1, 4(a2)"),
            (0x6714, 14, 8, 13, 0x8887_8685_8483_8281, "c.ld a3, 8(a4)"),
            (0x50fe, 2, 252, 1, 0xffff_ffff_8483_8281, "c.lwsp ra, 252(sp)"),
            (0x7dfe, 2, 504, 27, 0x8887_8685_8483_8281, "c.ldsp s11, 504(sp)"),
        ];
        for (insn, base, off, rd, want, name) in loads {
            let (mut h, mut p, probe) = machine(insn);
            h.x[base] = DEV;
            perform(&mut h, &mut p, DEV + off, "mmio probe");
            assert_eq!((h.x[rd], h.pc), (want, RAM + 2), "{name}");
            assert_eq!(probe.lock().unwrap().0[0].0, off, "{name}");
        }
        let stores = [
            (0xc22c, 12, 64, 11, 4, "c.sw a1, 64(a2)"),
            (0xff74, 14, 248, 13, 8, "c.sd a3, 248(a4)"),
            (0xdff6, 2, 252, 29, 4, "c.swsp t4, 252(sp)"),
            (0xff86, 2, 504, 1, 8, "c.sdsp ra, 504(sp)"),
        ];
        for (insn, base, off, rs2, size, name) in stores {
            let (mut h, mut p, probe) = machine(insn);
            h.x[base] = DEV;
            h.x[rs2] = 0x0102_0304_0506_0708;
            perform(&mut h, &mut p, DEV + off, "mmio probe");
            assert_eq!(h.pc, RAM + 2, "{name}");
            let want = 0x0102_0304_0506_0708u64.to_le_bytes()[..size].to_vec();
            assert_eq!(probe.lock().unwrap().0, vec![(off, size, Some(want))], "{name}");
        }
    }

    #[test]
    fn x0_is_never_written() {
        let (mut h, mut p, probe) = machine(load(2, 0, 0));
        h.x[11] = DEV;
        perform(&mut h, &mut p, DEV, "mmio probe");
        assert_eq!((h.x[0], h.pc), (0, RAM + 4));
        assert_eq!(probe.lock().unwrap().0.len(), 1, "the read still happens (it may have side effects)");
    }

    #[test]
    fn unclaimed_misaligned_and_fp_accesses_are_access_faults() {
        // A load where no device is: load access fault at the address, sepc at the load.
        let (mut h, mut p, _) = machine(load(2, 10, 0));
        h.x[11] = DEV + 0x1000;
        h.x[10] = 7;
        perform(&mut h, &mut p, DEV + 0x1000, "mmio unmapped");
        assert_eq!((h.csrs.scause, h.csrs.stval, h.csrs.sepc), (trap::LOAD_ACCESS_FAULT, DEV + 0x1000, RAM));
        assert_eq!((h.pc, h.x[10]), (RAM + 0x800, 7), "rd untouched, at the handler");
        // A misaligned store to a device register.
        let (mut h, mut p, probe) = machine(store(2, 2));
        h.x[11] = DEV;
        perform(&mut h, &mut p, DEV + 2, "mmio probe");
        assert_eq!((h.csrs.scause, h.csrs.stval), (trap::STORE_ACCESS_FAULT, DEV + 2));
        assert!(probe.lock().unwrap().0.is_empty());
        // fsd fa0, 0(a1): floating point is not performed on devices.
        let (mut h, mut p, probe) = machine(s_type(0, 10, 11, 3, 0x27));
        h.x[11] = DEV;
        perform(&mut h, &mut p, DEV, "mmio probe");
        assert_eq!((h.csrs.scause, h.csrs.stval), (trap::STORE_ACCESS_FAULT, DEV));
        assert!(probe.lock().unwrap().0.is_empty());
        // With no trap handler the run ends with a one-line reason instead.
        let (mut h, mut p, _) = machine(load(2, 10, 0));
        h.csrs.stvec = 0;
        h.x[11] = 0x2000_0000;
        let r = perform(&mut h, &mut p, 0x2000_0000, "mmio unmapped");
        assert!(matches!(&r.action, Action::Fail(m) if m.contains("0x20000000")), "{r:?}");
    }

    #[test]
    fn sv39_addresses_are_translated_to_the_device() {
        use crate::mmu::tests::TestRam;
        use crate::mmu::{PTE_A, PTE_D, PTE_R, PTE_V, PTE_W, PTE_X};
        let mut t = TestRam::new();
        // Code at VA 0x40_0000 -> a RAM frame; VA 0x4000_0000 -> the device page.
        let code = t.alloc();
        t.map(0x40_0000, code, 0, PTE_V | PTE_R | PTE_X | PTE_A);
        t.map(0x4000_0000, DEV, 0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);
        let off = (code - crate::mmu::tests::RAM) as usize;
        t.bytes[off..off + 4].copy_from_slice(&store(2, 0x20).to_le_bytes());
        let mut p = FakePlatform::new();
        let probe = Arc::new(Mutex::new(Probe::default()));
        p.devices.insert(DEV, 0x1000, "probe", probe.clone()).unwrap();
        p.ram_base = crate::mmu::tests::RAM;
        p.ram = std::mem::take(&mut t.bytes);
        let mut h = Hart::new(0x40_0000);
        h.csrs.satp = t.satp();
        h.mode = Mode::Supervisor;
        h.x[11] = 0x4000_0000;
        h.x[12] = 0xabcd;
        let r = perform(&mut h, &mut p, 0x4000_0020, "mmio probe");
        assert_eq!(r.action, Action::Resume);
        assert_eq!(h.pc, 0x40_0004);
        assert_eq!(probe.lock().unwrap().0, vec![(0x20, 4, Some(vec![0xcd, 0xab, 0, 0]))]);
    }
}
