//! Where the boot structures go in guest memory, the e820 map, and the two ways of telling
//! Linux about them: the zero page (struct boot_params) for the 64-bit boot protocol and
//! hvm_start_info for PVH. The builders are pure; `write_*` copy them into guest RAM.
use common::{Error, Result};
use linux_loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

// The low-memory layout (the same places Firecracker uses; all below the EBDA at 639 KiB).
/// GDT (modes::GDT_ADDR, 0x500) sits below these.
/// PVH: hvm_start_info, then the module list, then the memory map.
pub const START_INFO_ADDR: u64 = 0x6000;
pub const MODLIST_ADDR: u64 = 0x6040;
pub const MEMMAP_ADDR: u64 = 0x6100;
/// The zero page (struct boot_params) for the 64-bit boot protocol.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// The boot stack grows down from here (the kernel switches to its own at once).
pub const BOOT_STACK: u64 = 0x8ff0;
/// Identity page tables for the 64-bit entry (modes::write_identity_page_tables).
pub const PAGE_TABLES_ADDR: u64 = 0x9000;
/// The kernel command line, NUL-terminated.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// The MP table lives in the last KiB of base memory, one of the places Linux scans.
pub const EBDA_START: u64 = 0x9fc00;
/// Memory from 1 MiB up is the kernel's; 0x9fc00..1 MiB is the EBDA, VGA and BIOS hole.
pub const HIMEM_START: u64 = 0x10_0000;

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x100_0000;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// One e820 range: start, length, type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The guest's physical memory map for `mem_size` bytes of RAM at 0: base memory up to the
/// EBDA, the EBDA/VGA/BIOS hole reserved, and everything from 1 MiB as RAM.
pub fn e820_map(mem_size: u64) -> Result<Vec<E820Entry>> {
    if mem_size <= HIMEM_START {
        return Err(Error::bad_input(format!(
            "guest RAM of {} is too small for Linux: it needs memory above 1 MiB",
            common::image::human_size(mem_size)
        )));
    }
    Ok(vec![
        E820Entry { addr: 0, size: EBDA_START, kind: E820_RAM },
        E820Entry { addr: EBDA_START, size: HIMEM_START - EBDA_START, kind: E820_RESERVED },
        E820Entry { addr: HIMEM_START, size: mem_size - HIMEM_START, kind: E820_RAM },
    ])
}

/// What the kernel needs to find: its command line and initramfs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootInfo {
    pub cmdline_addr: u64,
    /// Bytes of the command line without its NUL.
    pub cmdline_len: u64,
    /// (address, size) of the initramfs.
    pub initrd: Option<(u64, u64)>,
}

/// The zero page for the 64-bit boot protocol. `hdr` is the bzImage's own setup header
/// (None for an ELF vmlinux entered at its 64-bit entry, which gets a minimal one).
pub fn zero_page(hdr: Option<setup_header>, e820: &[E820Entry], info: &BootInfo) -> Result<boot_params> {
    let hdr = hdr.unwrap_or(setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        kernel_alignment: KERNEL_MIN_ALIGNMENT,
        ..Default::default()
    });
    let mut params = boot_params { hdr, ..Default::default() };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = info.cmdline_addr as u32;
    params.hdr.cmdline_size = info.cmdline_len as u32;
    if let Some((addr, size)) = info.initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    if e820.len() > params.e820_table.len() {
        return Err(Error::bad_input(format!("too many e820 entries ({})", e820.len())));
    }
    for (slot, e) in params.e820_table.iter_mut().zip(e820) {
        *slot = boot_e820_entry { addr: e.addr, size: e.size, r#type: e.kind };
    }
    params.e820_entries = e820.len() as u8;
    Ok(params)
}

/// The PVH start info, its module list (the initramfs) and its memory map.
pub fn start_info(
    e820: &[E820Entry],
    info: &BootInfo,
) -> (hvm_start_info, Vec<hvm_modlist_entry>, Vec<hvm_memmap_table_entry>) {
    let modules: Vec<_> =
        info.initrd.iter().map(|&(paddr, size)| hvm_modlist_entry { paddr, size, ..Default::default() }).collect();
    let memmap: Vec<_> = e820
        .iter()
        .map(|e| hvm_memmap_table_entry { addr: e.addr, size: e.size, type_: e.kind, reserved: 0 })
        .collect();
    let start = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() { 0 } else { MODLIST_ADDR },
        cmdline_paddr: info.cmdline_addr,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    (start, modules, memmap)
}

fn write<T: ByteValued>(mem: &GuestMemoryMmap, what: &str, value: &T, addr: u64) -> Result<()> {
    mem.write_obj(*value, GuestAddress(addr))
        .map_err(|e| Error::bad_input(format!("cannot write the {what} at {addr:#x} into guest RAM: {e}")))
}

pub fn write_zero_page(mem: &GuestMemoryMmap, params: &boot_params) -> Result<()> {
    write(mem, "zero page", params, ZERO_PAGE_ADDR)
}

pub fn write_start_info(
    mem: &GuestMemoryMmap,
    start: &hvm_start_info,
    modules: &[hvm_modlist_entry],
    memmap: &[hvm_memmap_table_entry],
) -> Result<()> {
    write(mem, "PVH start info", start, START_INFO_ADDR)?;
    for (i, m) in modules.iter().enumerate() {
        write(mem, "PVH module list", m, MODLIST_ADDR + (i * size_of::<hvm_modlist_entry>()) as u64)?;
    }
    for (i, e) in memmap.iter().enumerate() {
        write(mem, "PVH memory map", e, MEMMAP_ADDR + (i * size_of::<hvm_memmap_table_entry>()) as u64)?;
    }
    Ok(())
}

/// Writes the command line, NUL-terminated, at CMDLINE_ADDR; `max` is the longest the kernel
/// accepts (without the NUL).
pub fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str, max: u64) -> Result<BootInfo> {
    if cmdline.contains('\0') {
        return Err(Error::bad_input("the kernel command line contains a NUL byte"));
    }
    if cmdline.len() as u64 > max {
        return Err(Error::bad_input(format!(
            "the kernel command line is {} bytes; this kernel accepts at most {max}",
            cmdline.len()
        )));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|e| Error::bad_input(format!("cannot write the kernel command line into guest RAM: {e}")))?;
    Ok(BootInfo { cmdline_addr: CMDLINE_ADDR, cmdline_len: cmdline.len() as u64, initrd: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_reserves_the_bios_hole_and_covers_ram() {
        let m = e820_map(256 << 20).unwrap();
        assert_eq!(m[0], E820Entry { addr: 0, size: 0x9fc00, kind: E820_RAM });
        assert_eq!(m[1].kind, E820_RESERVED);
        assert_eq!(m[1].addr + m[1].size, HIMEM_START);
        assert_eq!(m[2], E820Entry { addr: 0x10_0000, size: (256 << 20) - 0x10_0000, kind: E820_RAM });
        // Entries are sorted and do not overlap.
        assert!(m.windows(2).all(|w| w[0].addr + w[0].size <= w[1].addr));
        assert!(e820_map(1 << 20).is_err());
    }

    #[test]
    fn zero_page_carries_cmdline_initrd_and_e820() {
        let e820 = e820_map(64 << 20).unwrap();
        let info = BootInfo { cmdline_addr: CMDLINE_ADDR, cmdline_len: 12, initrd: Some((0x3f0_0000, 0x1234)) };
        let hdr = setup_header {
            header: KERNEL_HDR_MAGIC,
            version: 0x20f,
            initrd_addr_max: 0x7fff_ffff,
            ..Default::default()
        };
        let p = zero_page(Some(hdr), &e820, &info).unwrap();
        let h = p.hdr;
        assert_eq!({ h.type_of_loader }, 0xff);
        assert_eq!({ h.cmd_line_ptr }, 0x20000);
        assert_eq!({ h.cmdline_size }, 12);
        assert_eq!(({ h.ramdisk_image }, { h.ramdisk_size }), (0x3f0_0000, 0x1234));
        assert_eq!({ h.version }, 0x20f, "the kernel's own header is kept");
        assert_eq!(p.e820_entries, 3);
        let last = p.e820_table[2];
        assert_eq!(({ last.addr }, { last.size }, { last.r#type }), (0x10_0000, (64 << 20) - 0x10_0000, E820_RAM));
        // The zero page is exactly one page, with the header at 0x1f1 as the protocol says.
        assert_eq!(size_of::<boot_params>(), 4096);
        let bytes = p.as_slice();
        assert_eq!(&bytes[0x202..0x206], b"HdrS");
        assert_eq!(bytes[0x1e8], 3);
    }

    #[test]
    fn elf_zero_page_gets_a_minimal_header() {
        let p = zero_page(None, &e820_map(64 << 20).unwrap(), &BootInfo::default()).unwrap();
        assert_eq!(({ p.hdr.boot_flag }, { p.hdr.header }), (0xaa55, KERNEL_HDR_MAGIC));
        assert_eq!({ p.hdr.ramdisk_image }, 0);
    }

    #[test]
    fn pvh_start_info_lists_initrd_and_memory() {
        let e820 = e820_map(64 << 20).unwrap();
        let info = BootInfo { cmdline_addr: CMDLINE_ADDR, cmdline_len: 3, initrd: Some((0x300_0000, 99)) };
        let (s, mods, map) = start_info(&e820, &info);
        assert_eq!(({ s.magic }, { s.version }), (XEN_HVM_START_MAGIC, 1));
        assert_eq!(({ s.nr_modules }, { s.modlist_paddr }), (1, MODLIST_ADDR));
        assert_eq!(({ s.memmap_entries }, { s.memmap_paddr }), (3, MEMMAP_ADDR));
        assert_eq!(({ mods[0].paddr }, { mods[0].size }), (0x300_0000, 99));
        assert_eq!(map.len(), 3);
        // The tables must not overlap each other in guest memory.
        assert!(START_INFO_ADDR + size_of::<hvm_start_info>() as u64 <= MODLIST_ADDR);
        assert!(MODLIST_ADDR + size_of::<hvm_modlist_entry>() as u64 <= MEMMAP_ADDR);
        assert!(MEMMAP_ADDR + 3 * size_of::<hvm_memmap_table_entry>() as u64 <= ZERO_PAGE_ADDR);
        let (s, mods, _) = start_info(&e820, &BootInfo::default());
        assert_eq!(({ s.nr_modules }, { s.modlist_paddr }, mods.len()), (0, 0, 0));
    }
}
