//! The x86 Linux loader (vmm-x86/src/linux/loader.rs): any bytes as a bzImage or ELF vmlinux,
//! checked and copied into a small guest RAM, then an initramfs placed above it.
//!
//! Invariants: no panic; `inspect` and `load_kernel` agree; a loaded kernel needs no more
//! than the RAM it was given; nothing is written below 1 MiB (the zero page, command line and
//! page tables live there), past the kernel's declared end (where the initramfs may go) or
//! past the RAM the loader was told about; the initramfs goes where `initrd_room` says it fits.
#![no_main]

use arbitrary::Arbitrary;
use common::image::Image;
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_x86::linux::boot_params::HIMEM_START;
use vmm_x86::linux::loader::{self, Kernel};
use vmm_x86::linux::regs::Entry;

const PAGE: u64 = 4096;
/// Real RAM past the end the loader is told about: it must stay zero.
const GUARD: u64 = 64 << 10;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Guest RAM is 1 MiB plus this many pages (1 MiB to 257 MiB; mapped lazily).
    extra_pages: u16,
    /// An initramfs of this many bytes (at least 1: an empty one is refused when read).
    initrd_size: u32,
    /// The kernel file. Corpus files are these 6 bytes of header, then the image.
    image: &'a [u8],
}

static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Whether guest RAM `[start, end)` is all zero.
fn untouched(mem: &GuestMemoryMmap, start: u64, end: u64) -> bool {
    if start >= end {
        return true;
    }
    let host = mem.get_host_address(GuestAddress(start)).expect("inside the mapping");
    // SAFETY: [start, end) lies inside the one mapping `mem` owns, which outlives this
    // borrow, and nothing writes guest memory meanwhile.
    let bytes = unsafe { std::slice::from_raw_parts(host, (end - start) as usize) };
    // Compared a MiB at a time through memcmp: a byte loop would be traced compare by compare.
    bytes.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

fuzz_target!(|input: Input<'_>| {
    let mem_size = (1 << 20) + u64::from(input.extra_pages) * PAGE;
    let bytes = input.image;
    // Recognizing a kernel must not panic either.
    let _ = vmm_x86::linux::is_linux_kernel(bytes);
    let inspected = loader::inspect(bytes, "fuzz", mem_size);
    // Mapping the full RAM costs more than most inputs: a refused one gets a page (which
    // load_kernel must then not need, as it refuses before copying anything).
    let mapped = if inspected.is_ok() { mem_size + GUARD } else { PAGE };
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mapped as usize)]).unwrap();
    let image = Image { path: "fuzz".into(), bytes: bytes.to_vec() };
    let loaded = loader::load_kernel(&mem, &image, mem_size);
    let (kind, k) = match (inspected, loaded) {
        (Ok(kind), Ok(k)) => (kind, k),
        (Err(e), Ok(_)) => panic!("inspect refused ({}) but load_kernel accepted", e.message),
        (_, Err(e)) => {
            assert!(!e.message.is_empty() && !e.message.contains('\n'), "one line: {:?}", e.message);
            return;
        }
    };
    let end = match kind {
        Kernel::BzImage { end, .. } | Kernel::Elf { end } => end,
    };
    assert_eq!(end, k.end);
    assert!(k.end <= mem_size, "kernel needs up to {:#x}, RAM is {mem_size:#x}", k.end);
    assert!(k.end > HIMEM_START, "a loaded kernel occupies something above 1 MiB");
    assert!(k.cmdline_max > 0);
    let entry = match k.entry {
        Entry::Pvh(a) | Entry::Linux64(a) => a,
    };
    assert!((HIMEM_START..k.end).contains(&entry), "entry {entry:#x} outside the kernel's memory");
    assert!(untouched(&mem, 0, HIMEM_START), "the loader wrote below 1 MiB");
    assert!(untouched(&mem, mem_size, mem_size + GUARD), "the loader wrote past the end of RAM");
    assert!(
        untouched(&mem, k.end, (k.end + GUARD).min(mem_size)),
        "the loader wrote past the kernel's end {:#x}",
        k.end
    );

    // The initramfs: placed only where initrd_room says it fits, never over the kernel.
    let size = u64::from(input.initrd_size).max(1);
    let room = loader::initrd_room(k.end, k.initrd_addr_max, mem_size);
    match loader::place_initrd(size, k.end, k.initrd_addr_max, mem_size) {
        Some(at) => {
            assert!(size <= room, "placed {size} bytes but the room is {room}");
            assert_eq!(at % PAGE, 0);
            assert!(at >= k.end, "initrd at {at:#x} overlaps the kernel ending at {:#x}", k.end);
            assert!(at + size <= mem_size && at + size - 1 <= k.initrd_addr_max);
        }
        None => assert!(size > room, "{size} bytes fit in the room {room} but were not placed"),
    }
});
