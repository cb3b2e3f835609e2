//! A tiny writer for the "newc" cpio format, the format Linux unpacks as an initramfs.
//!
//! Each entry is a 110-byte ASCII header (the magic `070701` and 13 eight-digit hex fields),
//! the NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes. The archive ends
//! with an entry named `TRAILER!!!`. We write it uncompressed: the kernel then skips a
//! decompressor, which is faster than reading fewer bytes under an emulator.

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// An initramfs being built in memory.
pub struct Cpio {
    bytes: Vec<u8>,
    next_ino: u32,
}

impl Cpio {
    pub fn new() -> Self {
        Cpio { bytes: Vec::new(), next_ino: 1 }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, 2, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, S_IFREG | mode, 1, (0, 0), data);
    }

    /// A character device node, e.g. /dev/console is (5, 1).
    pub fn char_dev(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | mode, 1, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.bytes
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor (of the file system holding it)
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1, // namesize, with the NUL
            0,                     // check (only for the "070702" crc format)
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        let padded = self.bytes.len().next_multiple_of(4);
        self.bytes.resize(padded, 0);
    }
}

impl Default for Cpio {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the archive back: (name, mode, rdev major, rdev minor, data).
    fn parse(mut b: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {offset}");
            let field =
                |i: usize| u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap();
            let (mode, size, major, minor, namesize) = (field(1), field(6), field(9), field(10), field(11));
            let name_end = 110 + namesize as usize;
            let name = std::str::from_utf8(&b[110..name_end - 1]).unwrap().to_string();
            assert_eq!(b[name_end - 1], 0);
            let data_start = name_end.next_multiple_of(4);
            let data_end = data_start + size as usize;
            let data = b[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            offset += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, major, minor, data));
        }
    }

    #[test]
    fn entries_round_trip_with_alignment() {
        let mut c = Cpio::new();
        c.dir("dev");
        c.char_dev("dev/console", 0o600, 5, 1);
        c.file("init", 0o755, b"\x7fELF...");
        c.file("a", 0o644, b"");
        let bytes = c.finish();
        assert_eq!(bytes.len() & 3, 0);
        let entries = parse(&bytes);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0], ("dev".into(), 0o040755, 0, 0, vec![]));
        assert_eq!(entries[1], ("dev/console".into(), 0o020600, 5, 1, vec![]));
        assert_eq!(entries[2], ("init".into(), 0o100755, 0, 0, b"\x7fELF...".to_vec()));
        assert_eq!(entries[3], ("a".into(), 0o100644, 0, 0, vec![]));
    }

    #[test]
    fn header_is_110_ascii_bytes() {
        let mut c = Cpio::new();
        c.file("x", 0o644, b"hi");
        let bytes = c.finish();
        // header, "x\0" padded to 112, "hi" padded to 116.
        assert_eq!(&bytes[..14], b"07070100000001");
        assert_eq!(&bytes[110..112], b"x\0");
        assert_eq!(&bytes[112..116], b"hi\0\0");
        assert_eq!(&bytes[116..122], b"070701");
    }
}
