//! Recognizing and loading a kernel (bzImage or ELF vmlinux) and its initramfs.
//!
//! linux-loader does the copying; before that, `inspect` checks everything about the file
//! that could make the boot fail later in a confusing way (truncation, wrong magic, another
//! machine's ELF, not enough RAM) and turns it into one clear line. `inspect` and
//! `place_initrd` are pure.
use super::boot_params::HIMEM_START;
use super::regs::Entry;
use common::image::{human_size, Image};
use common::{Error, Result};
use linux_loader::bootparam::setup_header;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use std::io::Cursor;
use std::path::Path;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

const SETUP_HEADER_OFFSET: usize = 0x1f1;
const HDRS_MAGIC: u32 = 0x5372_6448; // "HdrS" at 0x202
const BOOT_FLAG_OFFSET: usize = 0x1fe;
const LOADFLAGS_LOADED_HIGH: u8 = 0x1;
const XLF_KERNEL_64: u16 = 0x1;
/// Boot protocol 2.12 introduced xloadflags, which says whether the 64-bit entry exists.
const PROTOCOL_XLOADFLAGS: u16 = 0x20c;
/// The bzImage's 64-bit entry point is 0x200 past where its protected-mode part is loaded.
const BZIMAGE_ENTRY64_OFFSET: u64 = 0x200;
/// Where a 2.02-2.05 kernel expects the initrd to end at the latest.
const OLD_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// COMMAND_LINE_SIZE on x86 (with its NUL) for kernels that do not say (ELF, old bzImages).
const DEFAULT_CMDLINE_MAX: u64 = 2047;
const PAGE: u64 = 4096;

const ELF_MAGIC: &[u8] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;

/// What `inspect` learned about a kernel file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kernel {
    BzImage {
        hdr: setup_header,
        /// Where the kernel's memory ends once it has decompressed itself.
        end: u64,
    },
    Elf {
        end: u64,
    },
}

/// Where a loaded kernel is entered and what it allows for the rest of the boot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadedKernel {
    pub entry: Entry,
    /// The bzImage's setup header for the zero page (None for an ELF).
    pub hdr: Option<setup_header>,
    /// The end of the memory the kernel needs: the initramfs must go above it.
    pub end: u64,
    /// The initramfs must end at or below this address.
    pub initrd_addr_max: u64,
    pub cmdline_max: u64,
}

/// Whether a file looks like a bzImage, even a damaged one: its setup header magic, or the
/// boot-sector flag 0xaa55 of a file far larger than a boot sector (so a bzImage with a
/// corrupted "HdrS" is reported as such instead of running as a flat binary).
pub fn looks_like_bzimage(bytes: &[u8]) -> bool {
    bytes.get(0x202..0x206) == Some(b"HdrS")
        || (bytes.len() >= 64 << 10 && bytes.get(BOOT_FLAG_OFFSET..0x200) == Some(&[0x55, 0xaa]))
}

pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(ELF_MAGIC)
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        3 => "i386",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "s390",
        40 => "ARM",
        183 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "another machine",
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn too_big(path: &str, end: u64, mem_size: u64) -> Error {
    Error::bad_input(format!(
        "kernel {path} needs guest RAM up to {end:#x} ({}), more than the {} given: use a larger --mem",
        human_size(end.checked_next_multiple_of(1 << 20).unwrap_or(end)),
        human_size(mem_size)
    ))
}

fn inspect_bzimage(bytes: &[u8], path: &str, mem_size: u64) -> Result<Kernel> {
    let hdr_end = SETUP_HEADER_OFFSET + size_of::<setup_header>();
    if bytes.len() < hdr_end {
        return Err(Error::bad_input(format!(
            "truncated bzImage {path}: {} bytes, too short for the setup header",
            bytes.len()
        )));
    }
    let mut hdr = setup_header::default();
    hdr.as_mut_slice().copy_from_slice(&bytes[SETUP_HEADER_OFFSET..hdr_end]);
    if hdr.header != HDRS_MAGIC {
        return Err(Error::bad_input(format!(
            "{path} is not a valid bzImage: the setup header magic \"HdrS\" at 0x202 is missing"
        )));
    }
    if hdr.version < PROTOCOL_XLOADFLAGS
        || hdr.xloadflags & XLF_KERNEL_64 == 0
        || hdr.loadflags & LOADFLAGS_LOADED_HIGH == 0
    {
        return Err(Error::bad_input(format!(
            "bzImage {path} has no 64-bit entry point (boot protocol {}.{:02}); vmm needs 2.12+ with XLF_KERNEL_64",
            { hdr.version } >> 8,
            { hdr.version } & 0xff
        )));
    }
    let setup_sects = if hdr.setup_sects == 0 { 4 } else { u64::from(hdr.setup_sects) };
    let setup_size = (setup_sects + 1) * 512;
    let expected = setup_size + u64::from(hdr.syssize) * 16;
    if (bytes.len() as u64) < expected {
        return Err(Error::bad_input(format!(
            "truncated bzImage {path}: {} bytes, but its header says {expected}",
            bytes.len()
        )));
    }
    let payload = bytes.len() as u64 - setup_size;
    if payload <= BZIMAGE_ENTRY64_OFFSET {
        return Err(Error::bad_input(format!(
            "truncated bzImage {path}: {payload} bytes of kernel after the setup sectors, too few for its 64-bit entry at {BZIMAGE_ENTRY64_OFFSET:#x}"
        )));
    }
    // The compressed kernel is loaded at 1 MiB; it decompresses itself to its preferred
    // address (at least 16 MiB for a relocatable kernel) and needs init_size bytes there.
    let payload_end = HIMEM_START + payload;
    let run_at = hdr.pref_address.max(HIMEM_START.next_multiple_of(u64::from(hdr.kernel_alignment.max(1))));
    let run_end = run_at.checked_add(u64::from(hdr.init_size)).ok_or_else(|| too_big(path, u64::MAX, mem_size))?;
    let end = payload_end.max(run_end);
    if end > mem_size {
        return Err(too_big(path, end, mem_size));
    }
    Ok(Kernel::BzImage { hdr, end })
}

fn inspect_elf(bytes: &[u8], path: &str, mem_size: u64) -> Result<Kernel> {
    if bytes.len() < 64 {
        return Err(Error::bad_input(format!("truncated ELF kernel {path}: {} bytes", bytes.len())));
    }
    if bytes[4] != ELFCLASS64 {
        return Err(Error::bad_input(format!("ELF kernel {path} is not a 64-bit ELF; vmm boots x86_64 kernels")));
    }
    if bytes[5] != ELFDATA2LSB {
        return Err(Error::bad_input(format!("ELF kernel {path} is big-endian; vmm boots x86_64 kernels")));
    }
    let machine = u16_at(bytes, 18);
    if machine != EM_X86_64 {
        return Err(Error::bad_input(format!(
            "ELF kernel {path} is for {} (e_machine {machine}), not x86_64",
            machine_name(machine)
        )));
    }
    let (phoff, phentsize, phnum) = (u64_at(bytes, 32), u64::from(u16_at(bytes, 54)), u64::from(u16_at(bytes, 56)));
    let table_end = phoff.checked_add(phentsize * phnum).filter(|&e| e <= bytes.len() as u64 && phentsize >= 56);
    if table_end.is_none() {
        return Err(Error::bad_input(format!("truncated ELF kernel {path}: its program headers are missing")));
    }
    let mut end = 0u64;
    for i in 0..phnum {
        let ph = &bytes[(phoff + i * phentsize) as usize..];
        if u32_at(ph, 0) != PT_LOAD {
            continue;
        }
        let (offset, paddr, filesz, memsz) = (u64_at(ph, 8), u64_at(ph, 24), u64_at(ph, 32), u64_at(ph, 40));
        if offset.checked_add(filesz).is_none_or(|e| e > bytes.len() as u64) {
            return Err(Error::bad_input(format!(
                "truncated ELF kernel {path}: a segment reaches past the end of the file ({} bytes)",
                bytes.len()
            )));
        }
        // linux-loader copies p_filesz bytes: the kernel's end from p_memsz would be short.
        if filesz > memsz {
            return Err(Error::bad_input(format!(
                "ELF kernel {path} has a segment with more file bytes ({filesz}) than memory ({memsz})"
            )));
        }
        let seg_end = paddr.checked_add(memsz).ok_or_else(|| too_big(path, u64::MAX, mem_size))?;
        if paddr < HIMEM_START {
            return Err(Error::bad_input(format!(
                "ELF kernel {path} loads at {paddr:#x}, below 1 MiB; not a Linux vmlinux"
            )));
        }
        end = end.max(seg_end);
    }
    if end == 0 {
        return Err(Error::bad_input(format!("ELF kernel {path} has nothing to load")));
    }
    if end > mem_size {
        return Err(too_big(path, end, mem_size));
    }
    Ok(Kernel::Elf { end })
}

/// Checks a kernel file without touching guest memory. Pure.
pub fn inspect(bytes: &[u8], path: &str, mem_size: u64) -> Result<Kernel> {
    if is_elf(bytes) {
        inspect_elf(bytes, path, mem_size)
    } else {
        inspect_bzimage(bytes, path, mem_size)
    }
}

/// Copies the kernel into guest RAM and decides its entry.
pub fn load_kernel(mem: &GuestMemoryMmap, image: &Image, mem_size: u64) -> Result<LoadedKernel> {
    let path = image.path.display().to_string();
    let kernel = inspect(&image.bytes, &path, mem_size)?;
    let failed = |e: linux_loader::loader::Error| Error::bad_input(format!("cannot load kernel {path}: {e}"));
    let mut file = Cursor::new(image.bytes.as_slice());
    match kernel {
        Kernel::BzImage { hdr, end } => {
            let r = BzImage::load(mem, Some(GuestAddress(HIMEM_START)), &mut file, None).map_err(failed)?;
            let mut hdr = r.setup_header.unwrap_or(hdr);
            hdr.code32_start = HIMEM_START as u32;
            let initrd_addr_max =
                if hdr.initrd_addr_max == 0 { OLD_INITRD_ADDR_MAX } else { u64::from(hdr.initrd_addr_max) };
            Ok(LoadedKernel {
                entry: Entry::Linux64(r.kernel_load.0 + BZIMAGE_ENTRY64_OFFSET),
                hdr: Some(hdr),
                end,
                initrd_addr_max,
                cmdline_max: u64::from(hdr.cmdline_size).max(255),
            })
        }
        Kernel::Elf { end } => {
            let r = Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(failed)?;
            let entry = match r.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(addr) => Entry::Pvh(addr.0),
                _ => Entry::Linux64(r.kernel_load.0),
            };
            // An entry outside the loaded kernel would only show up as a triple fault.
            let (Entry::Pvh(at) | Entry::Linux64(at)) = entry;
            if !(HIMEM_START..end).contains(&at) {
                return Err(Error::bad_input(format!(
                    "ELF kernel {path} is entered at {at:#x}, outside the memory it loads ({HIMEM_START:#x}..{end:#x})"
                )));
            }
            // ramdisk_image in the zero page is 32 bits; the PVH module list could go higher,
            // but RAM ends below 4 GiB anyway.
            Ok(LoadedKernel {
                entry,
                hdr: None,
                end,
                initrd_addr_max: u32::MAX.into(),
                cmdline_max: DEFAULT_CMDLINE_MAX,
            })
        }
    }
}

/// The address for an initramfs of `size` bytes: as high as allowed (page-aligned), above the
/// kernel. Pure.
pub fn place_initrd(size: u64, kernel_end: u64, addr_max: u64, mem_size: u64) -> Option<u64> {
    let limit = mem_size.min(addr_max.saturating_add(1));
    let start = limit.checked_sub(size)? & !(PAGE - 1);
    (start >= kernel_end.next_multiple_of(PAGE)).then_some(start)
}

/// The largest initramfs `place_initrd` can place: the RAM between the kernel's end and the
/// initrd's upper limit. Pure.
pub fn initrd_room(kernel_end: u64, addr_max: u64, mem_size: u64) -> u64 {
    mem_size.min(addr_max.saturating_add(1)).saturating_sub(kernel_end.next_multiple_of(PAGE))
}

/// Reads the initramfs at `path` straight into guest RAM (never a copy in our heap: a large
/// initramfs would stay in the monitor's RSS) and returns (address, size). A device, a FIFO or
/// a file larger than the room above the kernel is refused before anything is read.
pub fn load_initrd(mem: &GuestMemoryMmap, path: &Path, kernel: &LoadedKernel, mem_size: u64) -> Result<(u64, u64)> {
    let room = initrd_room(kernel.end, kernel.initrd_addr_max, mem_size);
    let (mut file, size) = Image::open_limited(path, "initrd", room).map_err(|mut e| {
        // "... does not fit in N of guest RAM": say which RAM, and what to do about it.
        if e.message.ends_with("of guest RAM") {
            e.message += &format!(" above the kernel (which ends at {:#x}): use a larger --mem", kernel.end);
        }
        e
    })?;
    let addr = place_initrd(size, kernel.end, kernel.initrd_addr_max, mem_size).ok_or_else(|| {
        Error::bad_input(format!(
            "initrd {} is {size} bytes; it does not fit in the {} of guest RAM above the kernel (which ends at {:#x}): use a larger --mem",
            path.display(),
            human_size(mem_size),
            kernel.end
        ))
    })?;
    // A file that shrank since it was opened ends the read early: an error, not a short initrd.
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| Error::bad_input(format!("cannot read initrd {} into guest RAM: {e}", path.display())))?;
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up bzImage: setup sectors, header and a payload of `payload` bytes.
    fn bzimage(payload: usize) -> Vec<u8> {
        let setup_sects = 3u8;
        let mut b = vec![0u8; (setup_sects as usize + 1) * 512 + payload];
        let h = SETUP_HEADER_OFFSET;
        b[h] = setup_sects;
        b[0x1f4..0x1f8].copy_from_slice(&((payload / 16) as u32).to_le_bytes()); // syssize
        b[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        b[0x211] = LOADFLAGS_LOADED_HIGH;
        b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
        b[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes()); // kernel_alignment
        b[0x236..0x238].copy_from_slice(&XLF_KERNEL_64.to_le_bytes());
        b[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
        b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes()); // pref_address
        b[0x260..0x264].copy_from_slice(&0x40_0000u32.to_le_bytes()); // init_size
        b
    }

    #[test]
    fn a_good_bzimage_is_accepted_with_its_memory_needs() {
        let b = bzimage(4096);
        assert!(looks_like_bzimage(&b));
        match inspect(&b, "bz", 64 << 20).unwrap() {
            Kernel::BzImage { hdr, end } => {
                assert_eq!(end, 0x140_0000, "decompresses at 16 MiB and needs init_size there");
                assert_eq!({ hdr.cmdline_size }, 2048);
            }
            k => panic!("{k:?}"),
        }
        let e = inspect(&b, "bz", 16 << 20).unwrap_err();
        assert!(e.message.contains("use a larger --mem"), "{}", e.message);
    }

    #[test]
    fn bzimage_damage_is_named() {
        let b = bzimage(4096);
        let e = inspect(&b[..b.len() - 100], "bz", 64 << 20).unwrap_err();
        assert!(e.message.starts_with("truncated bzImage bz"), "{}", e.message);
        let e = inspect(&b[..0x210], "bz", 64 << 20).unwrap_err();
        assert!(e.message.contains("too short for the setup header"), "{}", e.message);
        let mut bad = bzimage(64 << 10);
        bad[0x202] = b'X';
        assert!(looks_like_bzimage(&bad), "a large file with the boot flag is still taken for a bzImage");
        let e = inspect(&bad, "bz", 64 << 20).unwrap_err();
        assert!(e.message.contains("\"HdrS\""), "{}", e.message);
        let mut old = bzimage(4096);
        old[0x236] = 0;
        assert!(inspect(&old, "bz", 64 << 20).unwrap_err().message.contains("no 64-bit entry point"));
        // A boot sector is not a bzImage: it runs as a flat binary.
        assert!(!looks_like_bzimage(&bad[..512]));
    }

    /// Reproduced by fuzz/x86_linux_loader (corpus file bzimage-pref-address-wraps): a
    /// pref_address near 2^64 overflowed adding init_size (and wrapped to "fits" in release).
    #[test]
    fn a_preferred_address_at_the_top_of_the_address_space_is_too_big() {
        let mut b = bzimage(4096);
        b[0x258..0x260].copy_from_slice(&0xffff_ffff_ffff_ff00u64.to_le_bytes()); // pref_address
        let e = inspect(&b, "bz", 64 << 20).unwrap_err();
        assert!(e.message.starts_with("kernel bz needs guest RAM up to 0xffffffffffffffff ("), "{}", e.message);
    }

    /// Found by fuzz/x86_linux_loader (corpus file bzimage-without-kernel): a bzImage with
    /// setup sectors and nothing after them was accepted, to be entered at 1 MiB + 0x200 in
    /// memory the loader never wrote.
    #[test]
    fn a_bzimage_with_no_kernel_after_its_setup_is_truncated() {
        let e = inspect(&bzimage(0), "bz", 64 << 20).unwrap_err();
        assert_eq!(
            e.message,
            "truncated bzImage bz: 0 bytes of kernel after the setup sectors, too few for its 64-bit entry at 0x200"
        );
        assert!(inspect(&bzimage(0x210), "bz", 64 << 20).is_ok());
    }

    /// A made-up ELF64 with one PT_LOAD of `filesz` bytes at `paddr`.
    fn elf(machine: u16, paddr: u64, filesz: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(ELF_MAGIC);
        b[4] = ELFCLASS64;
        b[5] = ELFDATA2LSB;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[24..32].copy_from_slice(&paddr.to_le_bytes()); // e_entry
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = &mut b[64..];
        ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&filesz.to_le_bytes());
        ph[40..48].copy_from_slice(&(filesz * 2).to_le_bytes());
        b.resize(120 + filesz as usize, 0x90);
        b
    }

    #[test]
    fn elf_checks_machine_size_and_fit() {
        assert_eq!(inspect(&elf(EM_X86_64, 0x100_0000, 4096), "v", 64 << 20).unwrap(), Kernel::Elf { end: 0x100_2000 });
        let e = inspect(&elf(243, 0x100_0000, 4096), "v", 64 << 20).unwrap_err();
        assert_eq!(e.message, "ELF kernel v is for RISC-V (e_machine 243), not x86_64");
        let e = inspect(&elf(EM_X86_64, 0x100_0000, 4096), "v", 16 << 20).unwrap_err();
        assert!(e.message.contains("needs guest RAM up to 0x1002000"), "{}", e.message);
        let full = elf(EM_X86_64, 0x100_0000, 4096);
        let e = inspect(&full[..1000], "v", 64 << 20).unwrap_err();
        assert!(e.message.starts_with("truncated ELF kernel v"), "{}", e.message);
        let e = inspect(&full[..40], "v", 64 << 20).unwrap_err();
        assert!(e.message.starts_with("truncated ELF kernel v"), "{}", e.message);
        let mut c32 = full.clone();
        c32[4] = 1;
        assert!(inspect(&c32, "v", 64 << 20).unwrap_err().message.contains("not a 64-bit ELF"));
    }

    /// Found by fuzz/x86_linux_loader (corpus file elf-filesz-over-memsz): linux-loader copies
    /// p_filesz bytes, but the kernel's end was computed from p_memsz, so the initramfs could
    /// be placed over the kernel's tail.
    #[test]
    fn a_segment_with_more_file_bytes_than_memory_is_refused() {
        let mut b = elf(EM_X86_64, 0x100_0000, 10);
        b[64 + 40..64 + 48].copy_from_slice(&4u64.to_le_bytes()); // p_memsz < p_filesz
        let e = inspect(&b, "v", 64 << 20).unwrap_err();
        assert_eq!(e.message, "ELF kernel v has a segment with more file bytes (10) than memory (4)");
    }

    /// Found by fuzz/x86_linux_loader (corpus file elf-entry-outside-ram): an e_entry past the
    /// loaded segments was accepted and the guest would have died of a triple fault.
    #[test]
    fn an_entry_outside_the_loaded_kernel_is_refused() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap();
        let mut b = elf(EM_X86_64, 0x100_0000, 16);
        let image = |b: &[u8]| Image { path: "v".into(), bytes: b.to_vec() };
        assert_eq!(load_kernel(&mem, &image(&b), 32 << 20).unwrap().entry, Entry::Linux64(0x100_0000));
        b[24..32].copy_from_slice(&0xffff_ffba_0100_0000u64.to_le_bytes()); // e_entry
        let e = load_kernel(&mem, &image(&b), 32 << 20).unwrap_err();
        assert_eq!(
            e.message,
            "ELF kernel v is entered at 0xffffffba01000000, outside the memory it loads (0x100000..0x1000020)"
        );
    }

    /// Found by fuzz/x86_linux_loader (corpus file elf-memsz-wraps): a segment whose end wraps
    /// past 2^64 panicked while rounding that end up to a MiB for the message.
    #[test]
    fn a_segment_reaching_past_the_address_space_is_too_big() {
        let mut b = elf(EM_X86_64, 0x100_0000, 16);
        b[64 + 40..64 + 48].copy_from_slice(&u64::MAX.to_le_bytes()); // p_memsz
        let e = inspect(&b, "v", 64 << 20).unwrap_err();
        assert!(e.message.starts_with("kernel v needs guest RAM up to 0xffffffffffffffff ("), "{}", e.message);
    }

    #[test]
    fn initrd_goes_high_but_below_limits_and_above_the_kernel() {
        let mib = 1u64 << 20;
        // Top of a 64 MiB guest, page aligned.
        assert_eq!(
            place_initrd(mib + 5, 20 * mib, u64::from(u32::MAX), 64 * mib),
            Some(64 * mib - 2 * mib + mib - PAGE)
        );
        // initrd_addr_max below the end of RAM wins.
        assert_eq!(place_initrd(PAGE, 20 * mib, 32 * mib - 1, 64 * mib), Some(32 * mib - PAGE));
        // No room above the kernel.
        assert_eq!(place_initrd(50 * mib, 20 * mib, u64::from(u32::MAX), 64 * mib), None);
        assert_eq!(place_initrd(100 * mib, 0, u64::from(u32::MAX), 64 * mib), None);
    }

    #[test]
    fn initrd_room_is_exactly_what_place_initrd_accepts() {
        let mib = 1u64 << 20;
        for (kernel_end, addr_max, mem) in
            [(20 * mib + 5, u64::from(u32::MAX), 64 * mib), (20 * mib, 32 * mib - 1, 64 * mib), (3 * PAGE, 0x7fff, mib)]
        {
            let room = initrd_room(kernel_end, addr_max, mem);
            assert!(place_initrd(room, kernel_end, addr_max, mem).is_some(), "{room:#x} must fit");
            assert!(place_initrd(room + 1, kernel_end, addr_max, mem).is_none(), "{room:#x}+1 must not fit");
        }
        assert_eq!(initrd_room(70 * mib, u64::from(u32::MAX), 64 * mib), 0, "no room at all");
    }
}
