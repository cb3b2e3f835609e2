//! `--mem-file PATH [--mem-share]`: guest RAM backed by a file, for both backends.
//!
//! - With `--mem-share` the file is mapped MAP_SHARED: the guest's RAM *is* the file's page
//!   cache, so every write the guest makes is in the file at once, whichever way the run ends
//!   (halt, failure, timeout, Ctrl-A x, even a crash of vmm). A missing file is created, a
//!   short one grown to the RAM size. Through a lab host (`--arch riscv` on x86, `--lab`) the
//!   file is a virtual disk of the lab host: the guest's writes sit in the lab kernel's page
//!   cache until the inner vmm's [`MemFile::sync`] and init's sync() at the end of the run, so
//!   there every normal end (halt, failure, timeout, Ctrl-A x) keeps them, but killing the
//!   outer vmm or its QEMU loses what was not synced yet.
//! - Without it (QEMU's share=off) the file is the guest's *initial* RAM: it is opened
//!   read-only and never written; the guest's writes stay private to the run.
//!
//! [`open`] checks everything before the VM is made (and before a lab host boots), so each bad
//! case is one line naming the reason and the file system (statfs f_type): a directory, a
//! device that is not a block device, a read-only mount, a file too small that cannot grow, a
//! file system that cannot map the file shared and writable (some FUSE file systems), ...
//! The guest's RAM is always the first `size` bytes of the file (offset 0).
use crate::image::{human_size, io_reason};
use crate::memory::GuestRam;
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// What `--mem-file PATH [--mem-share]` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemFileConfig {
    pub path: PathBuf,
    /// `--mem-share`: MAP_SHARED, the guest's writes land in the file.
    pub shared: bool,
}

/// An opened, checked and sized mem file, ready to map.
#[derive(Debug)]
pub struct MemFile {
    file: File,
    pub path: PathBuf,
    pub shared: bool,
    /// Guest RAM in bytes: the length every mapping of the file takes.
    pub size: u64,
    /// Whether it is a block device (the RISC-V lab host's /dev/vmm-mem), not a regular file.
    pub block_device: bool,
    /// The file system it lives on, for messages.
    pub fs: String,
}

impl MemFile {
    /// The descriptor both backends map (from offset 0).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The whole of guest RAM as one vm-memory region at guest physical `base` (x86: 0):
    /// shared, or a private copy-on-write mapping of the file.
    pub fn guest_ram(&self, base: u64) -> Result<GuestRam> {
        if self.shared && !self.block_device {
            return crate::memory::from_fd(self.fd(), 0, base, self.size);
        }
        // A private mapping, or a block device (a lab host's /dev/vmm-mem), whose length
        // from_fd's fstat check cannot see (open() checked it with BLKGETSIZE64).
        use vm_memory::{FileOffset, GuestAddress, GuestRegionMmap, MmapRegion};
        let flags = if self.shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        let fail = |e: &dyn std::fmt::Display| self.error(&format!("cannot map it: {e}"));
        let file = self.file.try_clone().map_err(|e| fail(&io_reason(&e)))?;
        let region = MmapRegion::build(
            Some(FileOffset::new(file, 0)),
            self.size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | libc::MAP_NORESERVE,
        )
        .map_err(|e| fail(&e))?;
        let region = GuestRegionMmap::new(region, GuestAddress(base)).ok_or_else(|| fail(&"address wraps"))?;
        GuestRam::from_regions(vec![region]).map_err(|e| fail(&e))
    }

    /// Copies the file's first `self.size` bytes into `ram` (URVirt without --mem-share: its RAM
    /// is a memfd mapped several times, which one private file mapping could not serve).
    pub fn read_into(&self, ram: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let len = ram.len().min(self.size as usize);
        self.file
            .read_exact_at(&mut ram[..len], 0)
            .map_err(|e| self.error(&format!("cannot read it: {}", io_reason(&e))))
    }

    /// URVirt runs the guest's code straight from its RAM mappings (PROT_EXEC), which a
    /// `noexec` mount refuses: say so instead of a failed mmap at 0x80000000.
    pub fn require_exec(&self) -> Result<()> {
        let Ok(c) = std::ffi::CString::new(self.path.as_os_str().as_bytes()) else { return Ok(()) };
        // SAFETY: statvfs is plain data that the call fills; `c` is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let noexec = unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_NOEXEC != 0 };
        if noexec && self.shared {
            return Err(self.error("is on a noexec mount, and URVirt runs the guest's code from its RAM mappings"));
        }
        Ok(())
    }

    /// Pushes what the guest wrote towards the disk (the page cache already holds it: this is
    /// for a block device in a lab host, whose page cache must reach the virtual disk).
    pub fn sync(&self) {
        let _ = self.file.sync_data();
    }

    fn error(&self, why: &str) -> Error {
        Error::bad_input(format!("--mem-file {}: {why} ({})", self.path.display(), self.fs))
    }
}

/// Opens `config.path` for `size` bytes of guest RAM and checks that it can serve as RAM the
/// way asked (see the module doc). Every failure is one line, exit code 2.
pub fn open(config: &MemFileConfig, size: u64) -> Result<MemFile> {
    let path = &config.path;
    let bad = |why: String, fs: &str| Error::bad_input(format!("--mem-file {}: {why} ({fs})", path.display()));
    let meta = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(bad(io_reason(&e), &fs_of_nearest(path))),
    };
    let fs = fs_of_nearest(path);
    let kind = meta.as_ref().map(|m| m.file_type());
    match kind {
        None if !config.shared => {
            return Err(bad(
                "no such file (without --mem-share the file is only read: it holds the guest's initial RAM)".into(),
                &fs,
            ))
        }
        Some(t) if t.is_dir() => return Err(bad("is a directory, not a file".into(), &fs)),
        Some(t) if t.is_char_device() => {
            return Err(bad("is a character device: give a regular file or a block device".into(), &fs))
        }
        Some(t) if t.is_fifo() || t.is_socket() => {
            return Err(bad("is a FIFO or socket: give a regular file or a block device".into(), &fs))
        }
        _ => {}
    }
    if config.shared && is_read_only_mount(path) {
        return Err(bad("is on a read-only mount; --mem-share writes the guest's RAM into it".into(), &fs));
    }
    let file = OpenOptions::new().read(true).write(config.shared).create(config.shared).open(path).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EROFS) => "is on a read-only mount; --mem-share writes the guest's RAM into it".to_string(),
            _ if config.shared => format!("cannot open it for reading and writing: {}", io_reason(&e)),
            _ => format!("cannot open it: {}", io_reason(&e)),
        };
        bad(why, &fs)
    })?;
    let block_device = kind.is_some_and(|t| t.is_block_device());
    let fs = fs_of(&file).unwrap_or(fs);
    let mem = MemFile { file, path: path.clone(), shared: config.shared, size, block_device, fs };
    let len = mem.current_len()?;
    if len < size {
        if !config.shared || block_device {
            let what = if block_device { "the device" } else { "the file" };
            let hint = if block_device { "" } else { " (without --mem-share the file is only read, never grown)" };
            return Err(mem.error(&format!(
                "{what} holds {}, less than the {} of guest RAM{hint}",
                human_size(len),
                human_size(size)
            )));
        }
        let grown = mem.file.set_len(size).map(|_| mem.current_len());
        match grown {
            Ok(Ok(now)) if now >= size => {}
            Ok(Ok(now)) => {
                return Err(mem.error(&format!(
                "too small and cannot be resized: it holds {}, guest RAM needs {} (after ftruncate it still holds {})",
                human_size(len),
                human_size(size),
                human_size(now)
            )))
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(mem.error(&format!(
                    "too small and cannot be resized: it holds {}, guest RAM needs {} (ftruncate: {})",
                    human_size(len),
                    human_size(size),
                    io_reason(&e)
                )))
            }
        }
    }
    mem.probe_mapping()?;
    Ok(mem)
}

impl MemFile {
    fn current_len(&self) -> Result<u64> {
        if self.block_device {
            let mut bytes: u64 = 0;
            /// BLKGETSIZE64 = _IOR(0x12, 114, size_t).
            const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
            // SAFETY: BLKGETSIZE64 writes one u64 we own.
            if unsafe { libc::ioctl(self.file.as_raw_fd(), BLKGETSIZE64 as _, &mut bytes) } != 0 {
                return Err(
                    self.error(&format!("cannot read its size: {}", io_reason(&std::io::Error::last_os_error())))
                );
            }
            return Ok(bytes);
        }
        self.file.metadata().map(|m| m.len()).map_err(|e| self.error(&format!("fstat: {}", io_reason(&e))))
    }

    /// Maps the whole length once the way the backend will, and unmaps it: a file system that
    /// cannot (FUSE with direct I/O, proc, sysfs) is refused here, not in the middle of set-up.
    fn probe_mapping(&self) -> Result<()> {
        let flags = if self.shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        // SAFETY: a fresh mapping wherever the kernel likes; nothing touches it, and it is
        // unmapped just below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_NORESERVE,
                self.file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            let how = if self.shared { "shared and writable" } else { "privately" };
            return Err(self.error(&format!("the file system cannot map it {how} (mmap: {})", io_reason(&e))));
        }
        // SAFETY: exactly the mapping made above.
        unsafe { libc::munmap(p, self.size as usize) };
        Ok(())
    }
}

/// Whether `path` (or, for a file still to be created, its directory) is on a read-only mount.
fn is_read_only_mount(path: &Path) -> bool {
    let Some(c) = existing_ancestor(path).and_then(|p| std::ffi::CString::new(p.as_os_str().as_bytes()).ok()) else {
        return false;
    };
    // SAFETY: statvfs is plain data that the call fills; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
}

/// `path` itself if it exists, else its nearest existing parent ("." for a bare name).
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    loop {
        if p.as_os_str().is_empty() {
            return Some(PathBuf::from("."));
        }
        if std::fs::symlink_metadata(&p).is_ok() {
            return Some(p);
        }
        if !p.pop() {
            return None;
        }
    }
}

/// The file system `path` (or its nearest existing parent) is on, by name.
fn fs_of_nearest(path: &Path) -> String {
    let Some(c) = existing_ancestor(path).and_then(|p| std::ffi::CString::new(p.as_os_str().as_bytes()).ok()) else {
        return "unknown file system".into();
    };
    // SAFETY: statfs is plain data that the call fills; `c` is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown file system".into();
    }
    fs_name(st.f_type as u64)
}

fn fs_of(file: &File) -> Option<String> {
    // SAFETY: statfs is plain data that the call fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own and a struct to fill.
    (unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } == 0).then(|| fs_name(st.f_type as u64))
}

/// A file system's name from its statfs magic number (linux/magic.h), or the number itself.
pub fn fs_name(magic: u64) -> String {
    let name = match magic {
        0xEF53 => "ext4",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x0102_1997 => "9p",
        0x6573_5546 => "fuse",
        0x9FA0 => "proc",
        0x6265_6572 => "sysfs",
        0x9123_683E => "btrfs",
        0x5846_5342 => "xfs",
        0x6969 => "nfs",
        0x8584_58F6 => "ramfs",
        0x7371_7368 => "squashfs",
        0xE0F5_E1E2 => "erofs",
        0x4D44 => "vfat",
        0x2FC1_2FC1 => "zfs",
        0x6367_7270 => "cgroup2",
        0x6462_6720 => "debugfs",
        0x7472_6163 => "tracefs",
        0x6264_6576 => "bdev",
        0xFE53_4D42 => "smb2",
        0xFF53_4D42 => "cifs",
        _ => return format!("file system type {magic:#x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmm-mem-file-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_shared_file_is_created_grown_and_written_through() {
        let dir = temp_dir("shared");
        let path = dir.join("ram");
        let m = open(&MemFileConfig { path: path.clone(), shared: true }, 0x4000).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0x4000);
        let ram = m.guest_ram(0).unwrap();
        use vm_memory::{Bytes, GuestAddress};
        ram.write_slice(b"pattern", GuestAddress(0x1234)).unwrap();
        drop(ram);
        drop(m);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[0x1234..0x1234 + 7], b"pattern");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_private_file_is_initial_content_only() {
        let dir = temp_dir("private");
        let path = dir.join("ram");
        std::fs::write(&path, vec![7u8; 0x3000]).unwrap();
        let m = open(&MemFileConfig { path: path.clone(), shared: false }, 0x2000).unwrap();
        let ram = m.guest_ram(0x1000).unwrap();
        use vm_memory::{Bytes, GuestAddress};
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0x1000)).unwrap(), 7);
        ram.write_obj(0u8, GuestAddress(0x1000)).unwrap();
        let mut copy = vec![0u8; 0x2000];
        m.read_into(&mut copy).unwrap();
        assert!(copy.iter().all(|&b| b == 7), "the guest's write stays private");
        // Too small: never grown without --mem-share.
        let e = open(&MemFileConfig { path: path.clone(), shared: false }, 0x4000).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("less than the 16 KiB of guest RAM"), "{}", e.message);
        assert!(open(&MemFileConfig { path: dir.join("none"), shared: false }, 0x1000).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_name_the_reason_and_the_file_system() {
        let dir = temp_dir("bad");
        let e = open(&MemFileConfig { path: dir.clone(), shared: true }, 0x1000).unwrap_err();
        assert!(e.message.contains(": is a directory, not a file ("), "{}", e.message);
        let e = open(&MemFileConfig { path: "/dev/zero".into(), shared: true }, 0x1000).unwrap_err();
        assert!(
            e.message
                .starts_with("--mem-file /dev/zero: is a character device: give a regular file or a block device ("),
            "{}",
            e.message
        );
        let e = open(&MemFileConfig { path: "/nonexistent-dir/ram".into(), shared: true }, 0x1000).unwrap_err();
        assert!(e.message.starts_with("--mem-file /nonexistent-dir/ram: "), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn magic_numbers_name_file_systems() {
        assert_eq!(fs_name(0xEF53), "ext4");
        assert_eq!(fs_name(0x6573_5546), "fuse");
        assert_eq!(fs_name(0x1234), "file system type 0x1234");
    }
}
