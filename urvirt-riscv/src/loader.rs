//! Turning a kernel image into bytes at guest physical addresses.
//!
//! Two formats: a RISC-V ELF64 (each PT_LOAD at its physical address, entry from the
//! header) or a raw binary, copied to 0x80200000 and entered there (what OpenSBI's
//! fw_jump does, and what a Linux `Image` expects). Files that are recognizably something
//! else (text, gzip, an x86 kernel, an ELF for another machine) are bad input, as is
//! anything that does not fit below the device tree.
use common::image::{human_size, Image};
use common::{Error, Result};

/// Guest RAM starts here, as on QEMU virt.
pub const RAM_BASE: u64 = 0x8000_0000;
/// Raw kernels are loaded and entered here (2 MiB into RAM, after where firmware would be).
pub const KERNEL_ADDR: u64 = 0x8020_0000;

/// One piece of the kernel: `bytes` copied to `gpa`, then zeros up to `mem_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub gpa: u64,
    pub bytes: Vec<u8>,
    pub mem_len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub entry: u64,
    pub segments: Vec<Segment>,
}

const EM_RISCV: u16 = 243;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;

fn bad(image: &Image, why: impl std::fmt::Display) -> Error {
    Error::bad_input(format!("{} is not a RISC-V kernel: {why}", image.path.display()))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

/// Parses `image` for a guest whose usable RAM is `[RAM_BASE, ram_limit)` (the device tree
/// sits at `ram_limit`). `mem_size` is only for the error message.
pub fn parse(image: &Image, ram_limit: u64, mem_size: u64) -> Result<Kernel> {
    let b = &image.bytes;
    let kernel = if b.starts_with(b"\x7fELF") {
        parse_elf(image)?
    } else {
        reject_foreign(image)?;
        Kernel {
            entry: KERNEL_ADDR,
            segments: vec![Segment { gpa: KERNEL_ADDR, bytes: b.clone(), mem_len: b.len() as u64 }],
        }
    };
    for s in &kernel.segments {
        let end = s.gpa.checked_add(s.mem_len);
        if s.gpa < RAM_BASE || end.is_none_or(|e| e > ram_limit) {
            return Err(Error::bad_input(format!(
                "kernel {} is {} bytes; at {:#x} (+{:#x} bytes) it does not fit in {} of guest RAM at {RAM_BASE:#x} \
                 (the last {} hold the device tree)",
                image.path.display(),
                b.len(),
                s.gpa,
                s.mem_len,
                human_size(mem_size),
                human_size(crate::fdt::FDT_MAX_SIZE),
            )));
        }
    }
    if !(RAM_BASE..ram_limit).contains(&kernel.entry) {
        return Err(bad(image, format_args!("its entry point {:#x} is outside guest RAM", kernel.entry)));
    }
    Ok(kernel)
}

/// Raw binaries can hold anything, so only refuse what is clearly not RISC-V code.
fn reject_foreign(image: &Image) -> Result<()> {
    let b = &image.bytes;
    if b.len() < 4 {
        return Err(bad(image, format_args!("{} bytes is not even one instruction plus a jump", b.len())));
    }
    if b.starts_with(&[0x1f, 0x8b]) {
        return Err(bad(image, "it is gzip-compressed (decompress it first)"));
    }
    if b.get(0x202..0x206) == Some(b"HdrS") {
        return Err(bad(image, "it is an x86 Linux bzImage (use --arch x86)"));
    }
    // A Linux RISC-V Image starts with an "MZ" stub too, but carries "RSC\x05" at 0x38.
    if b.starts_with(b"MZ") && b.get(0x38..0x3c) != Some(b"RSC\x05") {
        return Err(bad(image, "it is a PE/EFI file for another architecture"));
    }
    let head = &b[..b.len().min(256)];
    if head.iter().all(|&c| c == b'\n' || c == b'\r' || c == b'\t' || (0x20..0x7f).contains(&c)) {
        return Err(bad(image, "it is text"));
    }
    Ok(())
}

fn parse_elf(image: &Image) -> Result<Kernel> {
    let b = &image.bytes;
    let truncated = || bad(image, "truncated ELF header");
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err(bad(image, "only little-endian 64-bit ELF files are supported"));
    }
    let machine = u16_at(b, 18).ok_or_else(truncated)?;
    if machine != EM_RISCV {
        return Err(bad(image, format_args!("it is an ELF file for machine {machine}, not RISC-V ({EM_RISCV})")));
    }
    let entry = u64_at(b, 24).ok_or_else(truncated)?;
    let phoff = u64_at(b, 32).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(b, 54).ok_or_else(truncated)? as usize;
    let phnum = u16_at(b, 56).ok_or_else(truncated)? as usize;
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize).ok_or_else(truncated)?).ok_or_else(truncated)?;
        let field = |off: usize| u64_at(b, ph + off).ok_or_else(|| bad(image, "truncated program header"));
        if u32_at(b, ph).ok_or_else(|| bad(image, "truncated program header"))? != PT_LOAD {
            continue;
        }
        let (offset, paddr, filesz, memsz) = (field(8)?, field(24)?, field(32)?, field(40)?);
        let data = offset
            .checked_add(filesz)
            .filter(|_| filesz <= memsz)
            .and_then(|end| b.get(offset as usize..end as usize))
            .ok_or_else(|| bad(image, format_args!("segment {i} lies outside the file")))?;
        segments.push(Segment { gpa: paddr, bytes: data.to_vec(), mem_len: memsz });
    }
    if segments.iter().all(|s| s.mem_len == 0) {
        return Err(bad(image, "the ELF file has nothing to load"));
    }
    Ok(Kernel { entry, segments })
}

/// Whether the ELF64 file `b` names a program interpreter (PT_INTERP): a dynamically linked
/// executable, such as a riscv64 `vmm` built without crt-static.
pub fn has_interpreter(b: &[u8]) -> bool {
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(b, 32), u16_at(b, 54), u16_at(b, 56)) else {
        return false;
    };
    (0..phnum as usize).any(|i| u32_at(b, phoff as usize + i * phentsize as usize) == Some(PT_INTERP))
}

/// The smallest ELF64 this loader accepts: one PT_LOAD of `code` at `paddr` (physical and
/// virtual), `bss` zero bytes after it, entry at `paddr`. Tests build kernels with it, and it
/// shows exactly which header fields the loader reads.
pub fn minimal_elf(machine: u16, paddr: u64, code: &[u8], bss: u64) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let mut b = vec![0u8; EHDR + PHDR];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // ELFCLASS64
    b[5] = 1; // little-endian
    b[6] = 1; // EV_CURRENT
    b[16] = 2; // ET_EXEC
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b[24..32].copy_from_slice(&paddr.to_le_bytes()); // e_entry
    b[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    b[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
    b[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = EHDR;
    b[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
    b[ph + 8..ph + 16].copy_from_slice(&((EHDR + PHDR) as u64).to_le_bytes()); // p_offset
    b[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes()); // p_vaddr
    b[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes()); // p_paddr
    b[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes()); // p_filesz
    b[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64 + bss).to_le_bytes()); // p_memsz
    b.extend_from_slice(code);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = RAM_BASE + (4 << 20);

    fn img(bytes: Vec<u8>) -> Image {
        Image { path: "k.bin".into(), bytes }
    }

    fn elf(machine: u16, paddr: u64, code: &[u8], bss: u64) -> Vec<u8> {
        minimal_elf(machine, paddr, code, bss)
    }

    #[test]
    fn program_interpreter_is_found() {
        let mut b = elf(EM_RISCV, 0x8020_0000, &[0x13, 0, 0, 0], 0);
        assert!(!has_interpreter(&b), "a static image");
        let ph = u64_at(&b, 32).unwrap() as usize;
        b[ph..ph + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
        assert!(has_interpreter(&b));
        assert!(!has_interpreter(b"\x7fELF"), "truncated");
    }

    #[test]
    fn raw_binary_goes_to_kernel_addr() {
        let k = parse(&img(vec![0x73, 0, 0, 0, 0x6f, 0, 0, 0]), LIMIT, 4 << 20).unwrap();
        assert_eq!(k.entry, KERNEL_ADDR);
        assert_eq!(k.segments[0].gpa, KERNEL_ADDR);
        assert_eq!(k.segments[0].bytes.len(), 8);
    }

    #[test]
    fn elf_segments_at_physical_addresses() {
        let k = parse(&img(elf(EM_RISCV, 0x8020_0000, &[1, 2, 3, 4], 12)), LIMIT, 4 << 20).unwrap();
        assert_eq!(k.entry, 0x8020_0000);
        assert_eq!(k.segments, vec![Segment { gpa: 0x8020_0000, bytes: vec![1, 2, 3, 4], mem_len: 16 }]);
    }

    /// Found by fuzz/riscv_loader (corpus file elf-phoff-near-usize-max): reading a field at
    /// an offset near usize::MAX overflowed instead of reporting a truncated file.
    #[test]
    fn program_headers_at_the_end_of_the_address_space_are_truncated() {
        let mut b = elf(EM_RISCV, 0x8020_0000, &[1, 2], 0);
        b[32..40].copy_from_slice(&(u64::MAX - 1).to_le_bytes()); // e_phoff
        let e = parse(&img(b), LIMIT, 4 << 20).unwrap_err();
        assert_eq!(e.message, "k.bin is not a RISC-V kernel: truncated program header");
    }

    #[test]
    fn too_big_and_foreign_images_are_bad_input() {
        let e = parse(&img(vec![0x13; 3 << 20]), LIMIT, 4 << 20).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("does not fit in 4 MiB"), "{}", e.message);
        let e = parse(&img(elf(62, 0x8020_0000, &[1], 0)), LIMIT, 4 << 20).unwrap_err();
        assert!(e.message.contains("machine 62"), "{}", e.message);
        let e = parse(&img(elf(EM_RISCV, 0x1000, &[1], 0)), LIMIT, 4 << 20).unwrap_err();
        assert!(e.message.contains("does not fit"), "{}", e.message);
        let mut truncated = elf(EM_RISCV, 0x8020_0000, &[1, 2], 0);
        truncated.truncate(100);
        assert!(parse(&img(truncated), LIMIT, 4 << 20).unwrap_err().message.contains("truncated"));
        let text = b"this is not a kernel, just some words\n".to_vec();
        assert!(parse(&img(text), LIMIT, 4 << 20).unwrap_err().message.contains("text"));
        assert!(parse(&img(vec![0x1f, 0x8b, 8, 0, 0]), LIMIT, 4 << 20).unwrap_err().message.contains("gzip"));
        assert!(parse(&img(vec![0x13, 0]), LIMIT, 4 << 20).is_err());
    }
}
