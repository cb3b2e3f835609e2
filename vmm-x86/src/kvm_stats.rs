//! KVM's binary statistics of one vCPU (KVM_GET_STATS_FD, Linux 5.14+): what KVM handled
//! itself, without vmm seeing an exit. The header, descriptors and names are read once when
//! the file is opened; each reading after that is one `pread` of the data block, so a mark
//! costs one system call and no allocation.
//!
//! File layout (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD"): a `kvm_stats_header` at
//! offset 0; `num_desc` descriptors at `desc_offset`, each a `kvm_stats_desc` followed by a
//! name of `name_size` bytes; the values (u64s) at `data_offset + desc.offset`.
//! kvm-ioctls 0.25 has no wrapper for the ioctl, so it is issued here; the structs are
//! kvm-bindings'.
use common::{Error, Result};
use kvm_bindings::{kvm_stats_desc, kvm_stats_header, KVM_CAP_BINARY_STATS_FD, KVM_STATS_TYPE_MASK};
use kvm_bindings::{KVM_STATS_TYPE_LINEAR_HIST, KVM_STATS_TYPE_LOG_HIST, KVM_STATS_UNIT_MASK, KVM_STATS_UNIT_NONE};
use kvm_ioctls::{Kvm, VcpuFd};
use std::fs::File;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

/// `_IO(KVMIO, 0xce)`.
const KVM_GET_STATS_FD: libc::c_ulong = 0xAE_CE;

/// One counter: its name, where its value is in the data block, and whether it counts events
/// (unit "none") rather than time or bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub name: String,
    /// Index of the value in the data block, in u64s.
    index: usize,
    pub is_count: bool,
}

/// An open statistics file of one vCPU.
pub struct KvmStats {
    file: File,
    data_offset: u64,
    /// The single-valued counters (histograms are left out), in the file's order.
    pub counters: Vec<Counter>,
    /// The data block as last read, reused by every reading.
    block: Vec<u8>,
}

/// Why there are no statistics, as one note line for --stats.
pub const NO_STATS_NOTE: &str =
    "KVM's own counters: not available (this kernel lacks KVM_CAP_BINARY_STATS_FD); only the exits vmm handles are counted";

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// The header's fields we use.
fn parse_header(bytes: &[u8]) -> Option<kvm_stats_header> {
    Some(kvm_stats_header {
        flags: u32_at(bytes, offset_of!(kvm_stats_header, flags))?,
        name_size: u32_at(bytes, offset_of!(kvm_stats_header, name_size))?,
        num_desc: u32_at(bytes, offset_of!(kvm_stats_header, num_desc))?,
        id_offset: u32_at(bytes, offset_of!(kvm_stats_header, id_offset))?,
        desc_offset: u32_at(bytes, offset_of!(kvm_stats_header, desc_offset))?,
        data_offset: u32_at(bytes, offset_of!(kvm_stats_header, data_offset))?,
    })
}

/// The single-valued counters in a descriptor block of `count` descriptors with names of
/// `name_size` bytes. Pure, so it is tested on made-up blocks.
fn parse_descriptors(block: &[u8], count: usize, name_size: usize) -> Option<Vec<Counter>> {
    let stride = size_of::<kvm_stats_desc>() + name_size;
    let mut counters = Vec::new();
    for i in 0..count {
        let d = block.get(i * stride..(i + 1) * stride)?;
        let flags = u32_at(d, offset_of!(kvm_stats_desc, flags))?;
        let size = u16_at(d, offset_of!(kvm_stats_desc, size))?;
        let offset = u32_at(d, offset_of!(kvm_stats_desc, offset))? as usize;
        let name = &d[size_of::<kvm_stats_desc>()..];
        let name = String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())]);
        let kind = flags & KVM_STATS_TYPE_MASK;
        if size != 1
            || kind == KVM_STATS_TYPE_LINEAR_HIST
            || kind == KVM_STATS_TYPE_LOG_HIST
            || !offset.is_multiple_of(8)
        {
            continue;
        }
        let is_count = flags & KVM_STATS_UNIT_MASK == KVM_STATS_UNIT_NONE;
        counters.push(Counter { name: name.into_owned(), index: offset / 8, is_count });
    }
    Some(counters)
}

impl KvmStats {
    /// Opens `vcpu`'s statistics. `Ok(None)`: the kernel has none (no KVM_CAP_BINARY_STATS_FD).
    pub fn open(kvm: &Kvm, vcpu: &VcpuFd) -> Result<Option<KvmStats>> {
        if kvm.check_extension_raw(KVM_CAP_BINARY_STATS_FD.into()) <= 0 {
            return Ok(None);
        }
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new file descriptor (or -1);
        // the vCPU fd is valid for the call.
        let fd = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_GET_STATS_FD as _) };
        if fd < 0 {
            return Err(crate::kvm::setup_error(
                "KVM_GET_STATS_FD",
                kvm_ioctls::Error::new(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
            ));
        }
        // SAFETY: `fd` was just returned to us by the kernel and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        let bad = |what: &str| Error::bad_input(format!("KVM statistics: {what}"));
        let mut head = [0u8; size_of::<kvm_stats_header>()];
        file.read_exact_at(&mut head, 0).map_err(|_| bad("cannot read the header"))?;
        let header = parse_header(&head).ok_or_else(|| bad("short header"))?;
        let stride = size_of::<kvm_stats_desc>() + header.name_size as usize;
        let mut descs = vec![0u8; stride * header.num_desc as usize];
        file.read_exact_at(&mut descs, header.desc_offset.into()).map_err(|_| bad("cannot read the descriptors"))?;
        let counters = parse_descriptors(&descs, header.num_desc as usize, header.name_size as usize)
            .ok_or_else(|| bad("malformed descriptors"))?;
        let words = counters.iter().map(|c| c.index + 1).max().unwrap_or(0);
        Ok(Some(KvmStats { file, data_offset: header.data_offset.into(), counters, block: vec![0; words * 8] }))
    }

    /// The counters' names, in the order [`KvmStats::read`] gives their values.
    pub fn names(&self) -> Vec<String> {
        self.counters.iter().map(|c| c.name.clone()).collect()
    }

    /// Reads every counter into `values` (in [`KvmStats::counters`] order; extra slots are
    /// left alone). One pread; no allocation. A failed read leaves `values` unchanged.
    pub fn read(&mut self, values: &mut [u64]) {
        if self.file.read_exact_at(&mut self.block, self.data_offset).is_err() {
            return;
        }
        for (slot, c) in values.iter_mut().zip(&self.counters) {
            let at = c.index * 8;
            *slot = u64::from_le_bytes(self.block[at..at + 8].try_into().unwrap_or([0; 8]));
        }
    }

    /// Every counter now, as a new vector.
    pub fn snapshot(&mut self) -> Vec<u64> {
        let mut v = vec![0; self.counters.len()];
        self.read(&mut v);
        v
    }
}

/// The --stats note lines for the counters that changed from `before` to `after`: the
/// counting ones (not times), "name delta" pairs, a few per line.
pub fn changed_notes(counters: &[Counter], before: &[u64], after: &[u64]) -> Vec<String> {
    let changed: Vec<String> = counters
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(c, (b, a))| c.is_count && a != b)
        .map(|(c, (b, a))| format!("{} {}", c.name, a.wrapping_sub(*b)))
        .collect();
    if changed.is_empty() {
        return vec!["handled inside KVM (its binary statistics, change over the run): no counter changed".into()];
    }
    let mut lines =
        vec!["handled inside KVM (its binary statistics, change over the run; vmm saw only the rows above):".into()];
    for chunk in changed.chunks(6) {
        lines.push(format!("  {}", chunk.join(", ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{KVM_STATS_TYPE_CUMULATIVE, KVM_STATS_TYPE_PEAK, KVM_STATS_UNIT_SECONDS};

    fn desc(flags: u32, size: u16, offset: u32, name: &str, name_size: usize) -> Vec<u8> {
        let mut d = vec![0u8; size_of::<kvm_stats_desc>() + name_size];
        d[0..4].copy_from_slice(&flags.to_le_bytes());
        d[6..8].copy_from_slice(&size.to_le_bytes());
        d[8..12].copy_from_slice(&offset.to_le_bytes());
        d[16..16 + name.len()].copy_from_slice(name.as_bytes());
        d
    }

    #[test]
    fn descriptors_keep_single_values_and_know_counts_from_times() {
        let mut block = desc(KVM_STATS_TYPE_CUMULATIVE, 1, 0, "exits", 48);
        block.extend(desc(KVM_STATS_TYPE_LOG_HIST, 32, 8, "halt_poll_success_hist", 48));
        block.extend(desc(KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_SECONDS, 1, 264, "halt_wait_ns", 48));
        block.extend(desc(KVM_STATS_TYPE_PEAK, 1, 272, "max_mmu_page_hash_collisions", 48));
        let c = parse_descriptors(&block, 4, 48).unwrap();
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["exits", "halt_wait_ns", "max_mmu_page_hash_collisions"]);
        assert_eq!((c[0].index, c[1].index, c[2].index), (0, 33, 34));
        assert!(c[0].is_count && !c[1].is_count);
        assert!(parse_descriptors(&block, 5, 48).is_none(), "a short block is refused");
    }

    #[test]
    fn header_fields_by_offset() {
        let mut b = [0u8; 24];
        for (i, v) in [0u32, 48, 47, 24, 88, 4000].iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let h = parse_header(&b).unwrap();
        assert_eq!((h.name_size, h.num_desc, h.desc_offset, h.data_offset), (48, 47, 88, 4000));
        assert!(parse_header(&b[..20]).is_none());
    }

    #[test]
    fn notes_show_only_changed_counts() {
        let c = |name: &str, is_count| Counter { name: name.into(), index: 0, is_count };
        let counters = [c("exits", true), c("halt_wait_ns", false), c("pf_taken", true), c("io_exits", true)];
        let notes = changed_notes(&counters, &[10, 0, 5, 1], &[25, 900, 5, 3]);
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[1], "  exits 15, io_exits 2");
        assert!(changed_notes(&counters, &[1, 2, 3, 4], &[1, 2, 3, 4])[0].ends_with("no counter changed"));
    }

    /// The probe the task asked for: what this host's kernel offers.
    #[test]
    fn this_hosts_vcpu_statistics() {
        let Ok(kvm) = Kvm::new() else { panic!("MISSING PREREQUISITE: /dev/kvm") };
        let vm = kvm.create_vm().unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        match KvmStats::open(&kvm, &vcpu).unwrap() {
            None => eprintln!("{NO_STATS_NOTE}"),
            Some(mut s) => {
                let names = s.names();
                eprintln!("{} single-valued vCPU counters: {}", names.len(), names.join(" "));
                assert!(names.iter().any(|n| n == "exits"), "{names:?}");
                assert!(names.len() <= common::marks::MAX_COUNTERS);
                let v = s.snapshot();
                assert_eq!(v.len(), names.len());
            }
        }
    }
}
