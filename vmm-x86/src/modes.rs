//! Entering a flat binary at guest physical 0x1000 in real, protected or long mode, like
//! dpw/kvm-hello-world: the VMM does what firmware and a boot loader would have done.
//!
//! The GDT and identity page-table helpers are public because booting Linux needs the same
//! 64-bit set-up (the Linux path calls them with its own addresses).
use crate::config::EntryMode;
use common::image::Image;
use common::{Error, Result};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where flat binaries are loaded and entered.
pub const LOAD_ADDR: u64 = 0x1000;
/// Where the flat guests' GDT goes: below the image, clear of the result word at 0x400.
pub const GDT_ADDR: u64 = 0x500;

// GDT layout, chosen to match Linux's boot protocol (__BOOT_CS = 0x10, __BOOT_DS = 0x18).
pub const GDT_CODE32: u16 = 1;
pub const GDT_CODE64: u16 = 2;
pub const GDT_DATA: u16 = 3;
pub const GDT_TSS: u16 = 4;
pub const GDT_ENTRIES: usize = 5;

// Access/flags words for gdt_entry (high nibble: G, D/B, L, AVL; low byte: P, DPL, S, type).
const FLAGS_CODE32: u16 = 0xc09b; // 4 KiB granular, 32-bit, present, code exec/read, accessed
const FLAGS_CODE64: u16 = 0xa09b; // 4 KiB granular, long mode, present, code exec/read, accessed
const FLAGS_DATA: u16 = 0xc093; // 4 KiB granular, 32-bit, present, data read/write, accessed
const FLAGS_TSS: u16 = 0x008b; // byte granular, present, busy 32/64-bit TSS (VM entry insists on a busy TR)

// Control register and EFER bits.
pub const CR0_PE: u64 = 1 << 0;
pub const CR0_MP: u64 = 1 << 1;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

// Page-table entry bits.
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITE: u64 = 1 << 1;
const PTE_HUGE: u64 = 1 << 7;
const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const PAGE: u64 = 4096;

/// Packs one GDT descriptor (the same layout as the kernel's GDT_ENTRY macro).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (flags as u64, base as u64, limit as u64);
    ((base & 0xff00_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
        | ((limit & 0x000f_0000) << 32)
        | ((flags & 0xf0ff) << 40)
}

/// The flat GDT every mode here uses: null, code32, code64, data, TSS.
pub fn flat_gdt() -> [u64; GDT_ENTRIES] {
    [
        0,
        gdt_entry(FLAGS_CODE32, 0, 0xfffff),
        gdt_entry(FLAGS_CODE64, 0, 0xfffff),
        gdt_entry(FLAGS_DATA, 0, 0xfffff),
        gdt_entry(FLAGS_TSS, 0, 0x67),
    ]
}

/// The segment register contents KVM wants for GDT descriptor `entry` at slot `index`:
/// what the CPU would cache after loading that selector.
pub fn segment_from_gdt(entry: u64, index: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    // With 4 KiB granularity the limit counts pages: the last byte is (limit << 12) | 0xfff.
    let limit = if g == 1 { (raw_limit << 12) | 0xfff } else { raw_limit };
    kvm_segment {
        base,
        limit,
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Writes `gdt` at `addr` in guest memory.
pub fn write_gdt(mem: &GuestMemoryMmap, addr: u64, gdt: &[u64]) -> Result<()> {
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(addr + 8 * i as u64))
            .map_err(|_| Error::bad_input(format!("guest RAM too small for the GDT at {addr:#x}")))?;
    }
    Ok(())
}

/// Bytes of page tables needed to identity-map `map_bytes` (rounded up to whole GiB, at most
/// 512 GiB) with 2 MiB pages: one PML4, one PDPT, one page directory per GiB.
pub fn page_table_bytes(map_bytes: u64) -> u64 {
    (2 + gib_count(map_bytes)) * PAGE
}

fn gib_count(map_bytes: u64) -> u64 {
    map_bytes.div_ceil(GIB).clamp(1, 512)
}

/// The page tables as (guest address, entry) pairs: PML4 at `pml4`, PDPT right after it,
/// then the page directories. Pure, so the layout is unit-tested without KVM.
pub fn identity_page_table_entries(pml4: u64, map_bytes: u64) -> Vec<(u64, u64)> {
    let pdpt = pml4 + PAGE;
    let pds = pdpt + PAGE;
    let mut entries = vec![(pml4, pdpt | PTE_PRESENT | PTE_WRITE)];
    for g in 0..gib_count(map_bytes) {
        let pd = pds + g * PAGE;
        entries.push((pdpt + 8 * g, pd | PTE_PRESENT | PTE_WRITE));
        for i in 0..512 {
            entries.push((pd + 8 * i, (g * GIB + i * MIB2) | PTE_PRESENT | PTE_WRITE | PTE_HUGE));
        }
    }
    entries
}

/// Writes identity page tables for the first `map_bytes` of guest physical memory at
/// `pml4` (4 KiB aligned); returns the value for CR3.
pub fn write_identity_page_tables(mem: &GuestMemoryMmap, pml4: u64, map_bytes: u64) -> Result<u64> {
    if pml4 & (PAGE - 1) != 0 {
        return Err(Error::bad_input(format!("page tables at {pml4:#x} are not 4 KiB aligned")));
    }
    let end = pml4 + page_table_bytes(map_bytes);
    // Start from zeroed tables: entries we do not write must read as "not present".
    mem.write_slice(&vec![0u8; (end - pml4) as usize], GuestAddress(pml4))
        .map_err(|_| Error::bad_input(format!("guest RAM too small for page tables at {pml4:#x}")))?;
    for (addr, entry) in identity_page_table_entries(pml4, map_bytes) {
        mem.write_obj(entry, GuestAddress(addr))
            .map_err(|_| Error::bad_input(format!("guest RAM too small for page tables at {pml4:#x}")))?;
    }
    Ok(pml4)
}

fn set_gdtr(sregs: &mut kvm_sregs, gdt_addr: u64) {
    sregs.gdt.base = gdt_addr;
    sregs.gdt.limit = (GDT_ENTRIES * 8 - 1) as u16;
}

fn set_flat_segments(sregs: &mut kvm_sregs, code_index: u16) {
    let gdt = flat_gdt();
    let data = segment_from_gdt(gdt[GDT_DATA as usize], GDT_DATA);
    sregs.cs = segment_from_gdt(gdt[code_index as usize], code_index);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(gdt[GDT_TSS as usize], GDT_TSS);
}

/// 16-bit real mode with CS base 0, so IP = 0x1000 is physical 0x1000.
pub fn set_real_mode(sregs: &mut kvm_sregs) {
    for seg in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.fs, &mut sregs.gs, &mut sregs.ss] {
        seg.base = 0;
        seg.selector = 0;
    }
}

/// 32-bit protected mode, flat 4 GiB segments, paging off. The GDT must be at `gdt_addr`.
pub fn set_protected_mode(sregs: &mut kvm_sregs, gdt_addr: u64) {
    set_gdtr(sregs, gdt_addr);
    set_flat_segments(sregs, GDT_CODE32);
    sregs.cr0 |= CR0_PE | CR0_ET;
}

/// 64-bit long mode: the GDT at `gdt_addr`, page tables at `cr3`, paging and PAE on, EFER.LME|LMA.
pub fn set_long_mode(sregs: &mut kvm_sregs, gdt_addr: u64, cr3: u64) {
    set_gdtr(sregs, gdt_addr);
    set_flat_segments(sregs, GDT_CODE64);
    sregs.cr3 = cr3;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
}

/// The CPUID a flat guest needs before its registers are set: in long mode, one that has long
/// mode, since SVM (and VMX) refuse EFER.LME/LMA in KVM_SET_SREGS otherwise (kvm-pvm does not
/// check); the same filtered CPUID a Linux guest gets. Real and protected mode need none.
pub fn set_flat_cpuid(kvm: &kvm_ioctls::Kvm, vcpu: &kvm_ioctls::VcpuFd, mode: EntryMode) -> Result<()> {
    match mode {
        EntryMode::Long => crate::linux::cpuid::setup(kvm, vcpu, 0, 1),
        EntryMode::Real | EntryMode::Protected => Ok(()),
    }
}

/// Where things go for one flat guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatLayout {
    /// Page tables (long mode only), 4 KiB aligned right after the image.
    pub page_tables: Option<u64>,
    /// Initial stack pointer.
    pub stack: u64,
}

/// Decides the layout for `image` in `mem_size` of RAM, or says why it does not fit. Reading
/// the image already refused one larger than RAM; here it must also fit above 0x1000 and, in
/// long mode, leave room for the page tables. Pure.
pub fn flat_layout(mode: EntryMode, image: &Image, mem_size: u64) -> Result<FlatLayout> {
    image.check_fits("image", LOAD_ADDR, mem_size)?;
    let image_end = LOAD_ADDR + image.bytes.len() as u64;
    match mode {
        EntryMode::Real => Ok(FlatLayout { page_tables: None, stack: 0 }),
        // A 32-bit stack pointer cannot reach past 4 GiB; memory.rs caps RAM below that anyway.
        EntryMode::Protected => Ok(FlatLayout { page_tables: None, stack: mem_size.min(1 << 32) }),
        EntryMode::Long => {
            let tables = image_end.next_multiple_of(PAGE);
            if tables + page_table_bytes(mem_size) > mem_size {
                return Err(Error::bad_input(format!(
                    "image {} leaves no room for long-mode page tables ({} KiB after the image) in {} of guest RAM",
                    image.path.display(),
                    page_table_bytes(mem_size) / 1024,
                    common::image::human_size(mem_size)
                )));
            }
            Ok(FlatLayout { page_tables: Some(tables), stack: mem_size })
        }
    }
}

/// Copies a flat binary to 0x1000 and prepares the registers for `mode`. Only the sregs and
/// regs are returned; the caller hands them to the vCPU.
pub fn load_flat(
    mem: &GuestMemoryMmap,
    image: &Image,
    mode: EntryMode,
    mem_size: u64,
    sregs: &mut kvm_sregs,
) -> Result<kvm_regs> {
    let layout = flat_layout(mode, image, mem_size)?;
    mem.write_slice(&image.bytes, GuestAddress(LOAD_ADDR))
        .map_err(|e| Error::bad_input(format!("cannot copy image into guest RAM: {e}")))?;
    match mode {
        EntryMode::Real => set_real_mode(sregs),
        EntryMode::Protected => {
            write_gdt(mem, GDT_ADDR, &flat_gdt())?;
            set_protected_mode(sregs, GDT_ADDR);
        }
        EntryMode::Long => {
            write_gdt(mem, GDT_ADDR, &flat_gdt())?;
            let pml4 = layout.page_tables.expect("long mode layout has page tables");
            let cr3 = write_identity_page_tables(mem, pml4, mem_size)?;
            set_long_mode(sregs, GDT_ADDR, cr3);
        }
    }
    // Bit 1 of RFLAGS is reserved and must be set.
    Ok(kvm_regs { rip: LOAD_ADDR, rflags: 0x2, rsp: layout.stack, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_known_values() {
        // The same values Firecracker and the kernel's GDT_ENTRY macro produce.
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(0x808b, 0, 0xfffff), 0x008f_8b00_0000_ffff);
        assert_eq!(gdt_entry(0x008b, 0, 0x67), 0x0000_8b00_0000_0067);
    }

    #[test]
    fn segments_decode_their_descriptors() {
        let gdt = flat_gdt();
        let cs64 = segment_from_gdt(gdt[GDT_CODE64 as usize], GDT_CODE64);
        assert_eq!((cs64.selector, cs64.l, cs64.db, cs64.type_, cs64.present), (0x10, 1, 0, 0xb, 1));
        let cs32 = segment_from_gdt(gdt[GDT_CODE32 as usize], GDT_CODE32);
        assert_eq!((cs32.selector, cs32.l, cs32.db, cs32.limit, cs32.g), (0x08, 0, 1, 0xffff_ffff, 1));
        let ds = segment_from_gdt(gdt[GDT_DATA as usize], GDT_DATA);
        assert_eq!((ds.selector, ds.type_, ds.s), (0x18, 3, 1));
        let tr = segment_from_gdt(gdt[GDT_TSS as usize], GDT_TSS);
        assert_eq!((tr.type_, tr.s, tr.limit, tr.g), (0xb, 0, 0x67, 0));
    }

    #[test]
    fn page_tables_identity_map_with_2m_pages() {
        let e = identity_page_table_entries(0x3000, 256 << 20);
        assert_eq!(page_table_bytes(256 << 20), 0x3000);
        assert_eq!(e[0], (0x3000, 0x4000 | 3));
        assert_eq!(e[1], (0x4000, 0x5000 | 3));
        assert_eq!(e[2], (0x5000, 0x83));
        assert_eq!(*e.last().unwrap(), (0x5000 + 511 * 8, (511 * MIB2) | 0x83));
        // A second GiB gets a second page directory.
        let e2 = identity_page_table_entries(0x3000, GIB + 1);
        assert!(e2.contains(&(0x4008, 0x6000 | 3)));
        assert!(e2.contains(&(0x6000, GIB | 0x83)));
    }

    fn image(len: usize, path: &str) -> Image {
        Image { path: path.into(), bytes: vec![0xf4; len] }
    }

    #[test]
    fn layouts_refuse_what_does_not_fit() {
        assert_eq!(flat_layout(EntryMode::Real, &image(25, "h"), 0x2000).unwrap().page_tables, None);
        let l = flat_layout(EntryMode::Long, &image(0x1001, "h"), 1 << 20).unwrap();
        assert_eq!(l.page_tables, Some(0x3000));
        assert_eq!(l.stack, 1 << 20);
        // Fits in RAM (so reading it succeeded) but not above 0x1000.
        let e = flat_layout(EntryMode::Real, &image(64 << 10, "big.bin"), 64 << 10).unwrap_err();
        assert_eq!(e.message, "image big.bin is 65536 bytes; at offset 0x1000 it does not fit in 64 KiB of guest RAM");
        let e = flat_layout(EntryMode::Long, &image(0x7000, "h"), 0x8000 + 0x1000).unwrap_err();
        assert_eq!(
            e.message,
            "image h leaves no room for long-mode page tables (12 KiB after the image) in 36 KiB of guest RAM"
        );
    }

    #[test]
    fn long_mode_sets_paging_and_efer() {
        let mut s = kvm_sregs::default();
        set_long_mode(&mut s, GDT_ADDR, 0x3000);
        assert_eq!(s.cr3, 0x3000);
        assert!(s.cr0 & CR0_PG != 0 && s.cr0 & CR0_PE != 0 && s.cr4 & CR4_PAE != 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((s.cs.l, s.cs.selector, s.gdt.base), (1, 0x10, GDT_ADDR));
    }
}
