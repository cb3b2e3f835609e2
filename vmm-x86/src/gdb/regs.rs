//! KVM's registers <-> gdb's x86-64 register file (gdbstub_arch's `X86_64CoreRegs`, the
//! layout of gdb's 64bit-core.xml and 64bit-sse.xml). Pure, so it is tested without KVM.
use gdbstub_arch::x86::reg::{X86SegmentRegs, X86_64CoreRegs, X87FpuInternalRegs};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

/// gdb's order of the general registers: rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8-r15.
fn general(r: &kvm_regs) -> [u64; 16] {
    [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15]
}

fn set_general(r: &mut kvm_regs, g: &[u64; 16]) {
    [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15] = *g;
}

/// KVM keeps the x87 tag word abridged as FXSAVE does (one bit per register: 1 = in use);
/// gdb shows the full one (two bits per register: 11 = empty). A used register reads as
/// "valid" (00): telling valid, zero and special apart would need the register contents.
fn full_tag(abridged: u8) -> u32 {
    (0..8).filter(|i| abridged & (1 << i) == 0).fold(0, |tag, i| tag | (3 << (2 * i)))
}

fn abridged_tag(full: u32) -> u8 {
    (0..8).filter(|i| (full >> (2 * i)) & 3 != 3).fold(0, |tag, i| tag | (1 << i))
}

/// The register file gdb reads.
pub fn to_gdb(r: &kvm_regs, s: &kvm_sregs, f: &kvm_fpu) -> X86_64CoreRegs {
    let mut st = [[0u8; 10]; 8];
    for (dst, src) in st.iter_mut().zip(f.fpr.iter()) {
        dst.copy_from_slice(&src[..10]);
    }
    X86_64CoreRegs {
        regs: general(r),
        eflags: r.rflags as u32,
        rip: r.rip,
        segments: X86SegmentRegs {
            cs: s.cs.selector.into(),
            ss: s.ss.selector.into(),
            ds: s.ds.selector.into(),
            es: s.es.selector.into(),
            fs: s.fs.selector.into(),
            gs: s.gs.selector.into(),
        },
        st,
        fpu: X87FpuInternalRegs {
            fctrl: f.fcw.into(),
            fstat: f.fsw.into(),
            ftag: full_tag(f.ftwx),
            // KVM_GET_FPU gives the 64-bit FXSAVE layout: no selectors, offsets only.
            fiseg: 0,
            fioff: f.last_ip as u32,
            foseg: 0,
            fooff: f.last_dp as u32,
            fop: f.last_opcode.into(),
        },
        xmm: f.xmm.map(u128::from_le_bytes),
        mxcsr: f.mxcsr,
    }
}

/// What gdb wrote, into KVM's general and FPU/SSE registers (the upper half of rflags is
/// reserved, so gdb's 32-bit eflags is all of it). Segment selectors are not written back:
/// a selector alone, without its descriptor, would leave the CPU inconsistent; the caller
/// refuses a changed one.
pub fn from_gdb(g: &X86_64CoreRegs, r: &mut kvm_regs, f: &mut kvm_fpu) {
    set_general(r, &g.regs);
    r.rip = g.rip;
    r.rflags = g.eflags.into();
    for (dst, src) in f.fpr.iter_mut().zip(g.st.iter()) {
        dst[..10].copy_from_slice(src);
    }
    f.fcw = g.fpu.fctrl as u16;
    f.fsw = g.fpu.fstat as u16;
    f.ftwx = abridged_tag(g.fpu.ftag);
    f.last_opcode = g.fpu.fop as u16;
    f.last_ip = g.fpu.fioff.into();
    f.last_dp = g.fpu.fooff.into();
    f.xmm = g.xmm.map(u128::to_le_bytes);
    f.mxcsr = g.mxcsr;
}

/// Whether gdb asked to change a segment selector (which [`from_gdb`] cannot do).
pub fn segments_changed(g: &X86_64CoreRegs, s: &kvm_sregs) -> bool {
    let now = [s.cs.selector, s.ss.selector, s.ds.selector, s.es.selector, s.fs.selector, s.gs.selector];
    let asked = [g.segments.cs, g.segments.ss, g.segments.ds, g.segments.es, g.segments.fs, g.segments.gs];
    now.iter().zip(asked).any(|(&n, a)| u32::from(n) != a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_registers_in_gdb_order_and_back() {
        let r = kvm_regs {
            rax: 1,
            rbx: 2,
            rcx: 3,
            rdx: 4,
            rsi: 5,
            rdi: 6,
            rbp: 7,
            rsp: 8,
            r8: 9,
            r15: 16,
            rip: 0x1000,
            rflags: 0x202,
            ..Default::default()
        };
        let mut s = kvm_sregs::default();
        s.cs.selector = 0x8;
        s.ds.selector = 0x10;
        let mut f = kvm_fpu { fcw: 0x37f, ftwx: 0b1000_0001, mxcsr: 0x1f80, ..Default::default() };
        f.xmm[2] = 7u128.to_le_bytes();
        f.fpr[0][..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let g = to_gdb(&r, &s, &f);
        assert_eq!(g.regs[..9], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(g.regs[15], 16);
        assert_eq!((g.rip, g.eflags), (0x1000, 0x202));
        assert_eq!((g.segments.cs, g.segments.ds, g.segments.ss), (8, 0x10, 0));
        assert_eq!(g.fpu.fctrl, 0x37f);
        assert_eq!(g.fpu.ftag, 0x3ffc, "st0 and st7 in use, the rest empty");
        assert_eq!(g.xmm[2], 7);
        assert_eq!(g.st[0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(g.mxcsr, 0x1f80);
        assert!(!segments_changed(&g, &s));

        let (mut r2, mut f2) = (kvm_regs::default(), kvm_fpu::default());
        from_gdb(&g, &mut r2, &mut f2);
        assert_eq!((r2.rax, r2.rsp, r2.r8, r2.r15, r2.rip, r2.rflags), (1, 8, 9, 16, 0x1000, 0x202));
        assert_eq!((f2.fcw, f2.ftwx, f2.mxcsr, f2.xmm[2], f2.fpr[0]), (f.fcw, f.ftwx, f.mxcsr, f.xmm[2], f.fpr[0]));

        let mut moved = g.clone();
        moved.segments.ds = 0x18;
        assert!(segments_changed(&moved, &s));
    }

    #[test]
    fn tag_words() {
        assert_eq!(full_tag(0), 0xffff);
        assert_eq!(full_tag(0xff), 0);
        for abridged in [0u8, 1, 0x80, 0x5a, 0xff] {
            assert_eq!(abridged_tag(full_tag(abridged)), abridged);
        }
    }
}
