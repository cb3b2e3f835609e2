//! virtio-blk (virtio spec 1.2, section 5.2) on a raw image file: `--disk FILE[,ro]`.
//!
//! A request is a header (type, reserved, sector: 16 device-readable bytes), data, and a
//! status byte (the last device-writable byte). Reads (IN) and writes (OUT) go straight
//! between the file and guest RAM with pread/pwrite; FLUSH is fsync; GET_ID returns the
//! file's name. Everything else about a chain is checked first, and a bad one completes with
//! VIRTIO_BLK_S_IOERR (or _UNSUPP for an unknown type) without touching the file: buffers
//! outside guest RAM, a readable buffer after a writable one, data in the wrong direction,
//! a length that is not whole sectors, sectors past the end, a write to a `ro` disk.
use super::{Buffer, VirtioDevice};
use crate::memory::{self, GuestRam};
use crate::vm::DiskConfig;
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

pub const SECTOR_SIZE: u64 = 512;
/// Data buffers per request we announce (VIRTIO_BLK_F_SEG_MAX): the queue minus header and status.
const SEG_MAX: u32 = super::mmio::QUEUE_SIZE as u32 - 2;
const HEADER_LEN: u64 = 16;

pub struct Block {
    file: File,
    read_only: bool,
    /// In 512-byte sectors; a partial last sector is not part of the disk.
    capacity: u64,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
}

impl Block {
    /// Opens the disk (read-only for `ro`). Every failure is bad input with a one-line message
    /// naming the file: missing, a directory, unreadable, not a file or block device.
    pub fn open(disk: &DiskConfig) -> Result<Block> {
        let name = disk.path.display();
        let bad = |why: String| Error::bad_input(format!("--disk {name}: {why}"));
        let meta = std::fs::metadata(&disk.path).map_err(|e| bad(crate::image::io_reason(&e)))?;
        use std::os::unix::fs::FileTypeExt;
        if meta.is_dir() {
            return Err(bad("is a directory, not a disk image".into()));
        }
        if !meta.is_file() && !meta.file_type().is_block_device() {
            return Err(bad("is neither a regular file nor a block device".into()));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(!disk.read_only)
            .open(&disk.path)
            .map_err(|e| bad(crate::image::io_reason(&e)))?;
        // A block device's metadata says 0 bytes; its end says how big it is.
        let bytes = file.seek(SeekFrom::End(0)).map_err(|e| bad(format!("cannot find its size: {e}")))?;
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let base = disk.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let n = base.len().min(id.len());
        id[..n].copy_from_slice(&base.as_bytes()[..n]);
        Ok(Block { file, read_only: disk.read_only, capacity: bytes / SECTOR_SIZE, id })
    }

    /// The disk's size in sectors, as the guest sees it.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Checks the chain and does the request; Ok(bytes written into guest data buffers).
    fn request(&mut self, mem: &GuestRam, chain: &[Buffer]) -> std::result::Result<u32, u32> {
        const IOERR: u32 = VIRTIO_BLK_S_IOERR;
        if chain.iter().any(|b| !memory::contains(mem, b.addr, b.len as u64)) {
            return Err(IOERR);
        }
        let readable = chain.iter().take_while(|b| !b.writable).count();
        let (reads, writes) = chain.split_at(readable);
        if writes.iter().any(|b| !b.writable) {
            return Err(IOERR); // device-readable after device-writable
        }
        let header = gather(mem, reads, HEADER_LEN).ok_or(IOERR)?;
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap());
        // Data: readable bytes after the header (OUT) or writable bytes before the status (IN).
        let out_data = segments(reads, HEADER_LEN, 0);
        let in_data = segments(writes, 0, 1);
        let total = |segs: &[Buffer]| segs.iter().map(|b| b.len as u64).sum::<u64>();
        match kind {
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => {
                let (data, wrong_way) =
                    if kind == VIRTIO_BLK_T_IN { (&in_data, &out_data) } else { (&out_data, &in_data) };
                let len = total(data);
                if total(wrong_way) != 0 || len % SECTOR_SIZE != 0 {
                    return Err(IOERR);
                }
                if sector.checked_add(len / SECTOR_SIZE).is_none_or(|end| end > self.capacity) {
                    return Err(IOERR);
                }
                if kind == VIRTIO_BLK_T_OUT && self.read_only {
                    return Err(IOERR);
                }
                let mut offset = sector * SECTOR_SIZE;
                for seg in data {
                    self.transfer(mem, seg, offset, kind == VIRTIO_BLK_T_IN).map_err(|_| IOERR)?;
                    offset += seg.len as u64;
                }
                Ok(if kind == VIRTIO_BLK_T_IN { len as u32 } else { 0 })
            }
            VIRTIO_BLK_T_FLUSH => self.file.sync_all().map(|_| 0).map_err(|_| IOERR),
            VIRTIO_BLK_T_GET_ID => {
                let mut written = 0u32;
                for seg in &in_data {
                    let take = (self.id.len() - written as usize).min(seg.len as usize);
                    mem.write_slice(&self.id[written as usize..][..take], GuestAddress(seg.addr)).map_err(|_| IOERR)?;
                    written += take as u32;
                }
                Ok(written)
            }
            _ => Err(VIRTIO_BLK_S_UNSUPP),
        }
    }

    /// pread into (`to_guest`) or pwrite from one guest buffer, whole, at `offset` of the file.
    fn transfer(&self, mem: &GuestRam, seg: &Buffer, offset: u64, to_guest: bool) -> std::io::Result<()> {
        let slice = mem.get_slice(GuestAddress(seg.addr), seg.len as usize).map_err(std::io::Error::other)?;
        let guard = slice.ptr_guard_mut();
        let (ptr, len) = (guard.as_ptr(), seg.len as usize);
        let mut done = 0usize;
        while done < len {
            let at = (offset + done as u64) as libc::off_t;
            // SAFETY: [ptr, ptr+len) is guest RAM that vm-memory checked and keeps mapped while
            // `guard` lives; the kernel copies between it and the file, nothing else aliases it
            // as a Rust reference.
            let n = unsafe {
                if to_guest {
                    libc::pread(self.file.as_raw_fd(), ptr.add(done) as *mut libc::c_void, len - done, at)
                } else {
                    libc::pwrite(self.file.as_raw_fd(), ptr.add(done) as *const libc::c_void, len - done, at)
                }
            };
            match n {
                n if n > 0 => done += n as usize,
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()), // the file shrank
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The first `len` bytes of `bufs`, or None if they are shorter.
fn gather(mem: &GuestRam, bufs: &[Buffer], len: u64) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len as usize);
    for b in bufs {
        let take = (len - out.len() as u64).min(b.len as u64) as usize;
        let start = out.len();
        out.resize(start + take, 0);
        mem.read_slice(&mut out[start..], GuestAddress(b.addr)).ok()?;
        if out.len() as u64 == len {
            return Some(out);
        }
    }
    None
}

/// `bufs` without their first `skip_front` and last `skip_back` bytes, as buffers.
fn segments(bufs: &[Buffer], skip_front: u64, skip_back: u64) -> Vec<Buffer> {
    let total: u64 = bufs.iter().map(|b| b.len as u64).sum();
    let end = total.saturating_sub(skip_back);
    let mut out = Vec::new();
    let mut at = 0u64;
    for b in bufs {
        let (start, stop) = (at.max(skip_front), (at + b.len as u64).min(end));
        if start < stop {
            out.push(Buffer { addr: b.addr + (start - at), len: (stop - start) as u32, writable: b.writable });
        }
        at += b.len as u64;
    }
    out
}

impl VirtioDevice for Block {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let mut features = (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX);
        if self.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    /// capacity (le64 at 0), size_max (unused), seg_max (le32 at 12); the rest of
    /// virtio_blk_config reads as zero.
    fn config_space(&self) -> Vec<u8> {
        let mut config = vec![0u8; std::mem::size_of::<virtio_blk_config>()];
        config[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config
    }

    fn serve(&mut self, mem: &GuestRam, chain: &[Buffer]) -> u32 {
        // The status byte is the last byte of the last buffer; without one we cannot even say
        // it failed, so the chain completes with nothing written.
        let Some(last) = chain.last() else { return 0 };
        if !last.writable || last.len == 0 || !memory::contains(mem, last.addr, last.len as u64) {
            return 0;
        }
        let (status, written) = match self.request(mem, chain) {
            Ok(n) => (VIRTIO_BLK_S_OK, n),
            Err(status) => (status, 0),
        };
        let status_at = GuestAddress(last.addr + last.len as u64 - 1);
        if mem.write_obj(status as u8, status_at).is_err() {
            return 0;
        }
        written + 1
    }

    fn finish(&mut self) {
        if !self.read_only {
            let _ = self.file.sync_all();
        }
    }
}
