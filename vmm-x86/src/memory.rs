//! Guest RAM: one anonymous mapping ([`common::memory::anonymous`], the vm-memory type every
//! device uses) registered with KVM as memory slot 0, so guest physical address 0 is the first
//! byte of the mapping. With `--mem-file` the mapping is of that file instead.
use common::image::human_size;
use common::mem_file::MemFile;
use common::{Error, Result};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

/// The smallest RAM a flat guest can have: the page at 0 (GDT, result at 0x400) and one for code.
pub const MIN_MEM: u64 = 0x2000;
/// Above this the single slot would run into the 32-bit MMIO hole where the Linux path puts devices.
pub const MAX_MEM: u64 = 3 << 30;

/// Maps `size` bytes of guest RAM at guest physical 0 and tells KVM about it.
pub fn create(vm: &VmFd, size: u64) -> Result<GuestMemoryMmap> {
    create_backed(vm, size, None)
}

/// The same, from `file` (`--mem-file`: shared or private, see common::mem_file) when given.
pub fn create_backed(vm: &VmFd, size: u64, file: Option<&MemFile>) -> Result<GuestMemoryMmap> {
    if !(MIN_MEM..=MAX_MEM).contains(&size) {
        return Err(Error::bad_input(format!(
            "bad --mem {}: guest RAM must be between {} and {}",
            human_size(size),
            human_size(MIN_MEM),
            human_size(MAX_MEM)
        )));
    }
    if size & 0xfff != 0 {
        return Err(Error::bad_input(format!("bad --mem {size}: guest RAM must be a multiple of 4 KiB")));
    }
    let mem = match file {
        Some(f) => f.guest_ram(0)?,
        None => common::memory::anonymous(0, size)?,
    };
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: size,
        userspace_addr: host_address(&mem),
    };
    // SAFETY: the region describes memory owned by `mem`, which the VM (X86Vm) keeps alive
    // for as long as the VmFd, so KVM never sees a dangling mapping.
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| crate::kvm::setup_error("KVM_SET_USER_MEMORY_REGION", e))?;
    Ok(mem)
}

/// The host address of guest physical 0: what `rss_excluding` must skip.
pub fn host_address(mem: &GuestMemoryMmap) -> u64 {
    common::memory::host_address(mem, 0)
}
