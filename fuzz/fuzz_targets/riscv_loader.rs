//! The RISC-V loader (urvirt-riscv/src/loader.rs): any bytes as a raw or ELF kernel for a
//! guest of 1 to 8 MiB.
//!
//! Invariants: no panic; an accepted kernel's segments lie inside [RAM_BASE, device tree),
//! carry no more bytes than their memory size, and come from the file (a raw image is the
//! whole file); the entry is in RAM; a raw image larger than the RAM is refused.
#![no_main]

use arbitrary::Arbitrary;
use common::image::Image;
use libfuzzer_sys::fuzz_target;
use urvirt_riscv::fdt::fdt_address;
use urvirt_riscv::loader::{parse, KERNEL_ADDR, RAM_BASE};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Guest RAM: 1 + (this % 8) MiB. Corpus files are this byte, then the image.
    mem_mib: u8,
    image: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let mem_size = (1 + u64::from(input.mem_mib % 8)) << 20;
    let ram_limit = fdt_address(RAM_BASE, mem_size);
    let image = Image { path: "fuzz".into(), bytes: input.image.to_vec() };
    let kernel = match parse(&image, ram_limit, mem_size) {
        Ok(k) => k,
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "bad input: {}", e.message);
            assert!(!e.message.is_empty() && !e.message.contains('\n'), "one line: {:?}", e.message);
            return;
        }
    };
    assert!((RAM_BASE..ram_limit).contains(&kernel.entry), "entry {:#x}", kernel.entry);
    let is_elf = input.image.starts_with(b"\x7fELF");
    if !is_elf {
        assert_eq!(kernel.entry, KERNEL_ADDR);
        assert_eq!(kernel.segments.len(), 1);
        assert_eq!(kernel.segments[0].bytes, input.image, "a raw image is loaded whole");
        assert!(KERNEL_ADDR + input.image.len() as u64 <= ram_limit, "a raw image larger than RAM was accepted");
    }
    // Where the engine copies each segment: all of it inside the usable RAM.
    let ram_len = ram_limit - RAM_BASE;
    for s in &kernel.segments {
        assert!(s.gpa >= RAM_BASE && s.gpa.checked_add(s.mem_len).is_some_and(|e| e <= ram_limit), "{:#x}", s.gpa);
        assert!(s.bytes.len() as u64 <= s.mem_len, "more file bytes than memory");
        assert!(s.bytes.len() <= input.image.len());
        assert!(s.gpa - RAM_BASE + s.mem_len <= ram_len);
    }
});
