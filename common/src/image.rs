//! Reading guest images from disk with the errors a user should see.
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A guest image read fully into memory (kernels and test binaries are small).
/// The largest image file vmm reads: far beyond any kernel, small enough to hold in memory.
pub const MAX_IMAGE: u64 = 4 << 30;

#[derive(Debug, Clone)]
pub struct Image {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl Image {
    /// Reads the guest image at `path` for a guest with `mem_size` bytes of RAM. A raw image
    /// must fit in RAM, so a larger one is refused before it is read. An ELF file may be far
    /// larger than what it loads (symbols, debug info): its loader judges the fit, and only
    /// [`MAX_IMAGE`] bounds the read.
    pub fn read(path: &Path, mem_size: u64) -> Result<Image> {
        let (file, len) = open_regular(path, "image")?;
        let mut magic = [0u8; 4];
        let is_elf = file.read_at(&mut magic, 0).map(|n| n == 4 && magic == *b"\x7fELF").unwrap_or(false);
        let limit = if is_elf { MAX_IMAGE } else { mem_size };
        read_whole(file, path, "image", len, limit)
    }

    /// Reads a file that is loaded whole into guest RAM, where `limit` bytes are free for it
    /// (`what` names it in errors, e.g. "initrd").
    pub fn read_limited(path: &Path, what: &str, limit: u64) -> Result<Image> {
        let (file, len) = open_regular(path, what)?;
        read_whole(file, path, what, len, limit)
    }

    /// Opens `path` for a caller that reads it straight into guest RAM (no copy in our heap):
    /// the same checks as [`Image::read_limited`] (a non-empty regular file of at most `limit`
    /// bytes), returning the file and its length.
    pub fn open_limited(path: &Path, what: &str, limit: u64) -> Result<(File, u64)> {
        let (file, len) = open_regular(path, what)?;
        if len > limit {
            return Err(too_big(what, path, len, limit));
        }
        Ok((file, len))
    }

    /// Checks that `len` bytes placed at `offset` fit in `mem_size` bytes of guest RAM.
    pub fn check_fits(&self, what: &str, offset: u64, mem_size: u64) -> Result<()> {
        let end = offset.checked_add(self.bytes.len() as u64);
        match end {
            Some(end) if end <= mem_size => Ok(()),
            _ => Err(Error::bad_input(format!(
                "{what} {} is {} bytes; at offset {offset:#x} it does not fit in {} of guest RAM",
                self.path.display(),
                self.bytes.len(),
                human_size(mem_size)
            ))),
        }
    }
}

/// Opens `path` and checks, on the open descriptor (no race with a rename), that it is a
/// non-empty regular file. O_NONBLOCK keeps a FIFO from blocking the open; devices, FIFOs and
/// directories are refused before anything is read, so `/dev/zero` cannot hang us.
fn open_regular(path: &Path, what: &str) -> Result<(File, u64)> {
    let cannot =
        |e: std::io::Error| Error::bad_input(format!("cannot read {what} {}: {}", path.display(), io_reason(&e)));
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(Error::bad_input(format!("{what} {} is not a regular file", path.display())));
    }
    if meta.len() == 0 {
        return Err(Error::bad_input(format!("{what} {} is empty", path.display())));
    }
    Ok((file, meta.len()))
}

/// Reads all of `file` (of `len` bytes at open time), refusing more than `limit` bytes
/// before reading them; the file may grow meanwhile, so the read itself is bounded too.
fn read_whole(file: File, path: &Path, what: &str, len: u64, limit: u64) -> Result<Image> {
    let refuse = |len: u64| {
        if limit == MAX_IMAGE {
            Error::bad_input(format!(
                "{what} {} is {len} bytes; vmm reads images of at most {}",
                path.display(),
                human_size(MAX_IMAGE)
            ))
        } else {
            too_big(what, path, len, limit)
        }
    };
    if len > limit {
        return Err(refuse(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::bad_input(format!("cannot read {what} {}: {}", path.display(), io_reason(&e))))?;
    if bytes.len() as u64 > limit {
        return Err(refuse(bytes.len() as u64));
    }
    if bytes.is_empty() {
        return Err(Error::bad_input(format!("{what} {} is empty", path.display())));
    }
    Ok(Image { path: path.to_path_buf(), bytes })
}

fn too_big(what: &str, path: &Path, len: u64, limit: u64) -> Error {
    Error::bad_input(format!(
        "{what} {} is {len} bytes; it does not fit in {} of guest RAM",
        path.display(),
        human_size(limit)
    ))
}

/// The part of an io::Error a user needs, without Rust's "(os error 2)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
    }
}

/// Parses sizes such as `128M`, `1G`, `4096K` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1u64),
        Some((i, _)) => {
            let mult = match t[i..].to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                _ => return Err(Error::bad_input(format!("bad size '{s}': use a number with K, M or G"))),
            };
            (&t[..i], mult)
        }
    };
    let n: u64 = num.parse().map_err(|_| Error::bad_input(format!("bad size '{s}': use a number with K, M or G")))?;
    n.checked_mul(mult).filter(|&b| b > 0).ok_or_else(|| Error::bad_input(format!("bad size '{s}'")))
}

pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("128M").unwrap(), 128 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn missing_and_empty_images_are_bad_input() {
        let e = Image::read(Path::new("/nonexistent/x.bin"), 1 << 20).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_BAD_INPUT);
        assert!(e.message.contains("no such file"), "{}", e.message);
        let p = std::env::temp_dir().join(format!("vmm-empty-{}", std::process::id()));
        std::fs::write(&p, b"").unwrap();
        let e = Image::read(&p, 1 << 20).unwrap_err();
        assert!(e.message.contains("is empty"));
        std::fs::write(&p, [1u8; 100]).unwrap();
        let e = Image::read_limited(&p, "initrd", 99).unwrap_err();
        assert_eq!(e.message, format!("initrd {} is 100 bytes; it does not fit in 99 bytes of guest RAM", p.display()));
        assert_eq!(Image::read_limited(&p, "initrd", 100).unwrap().bytes.len(), 100);
        assert_eq!(Image::read(&p, 100).unwrap().bytes.len(), 100);
        let e = Image::read(&p, 99).unwrap_err();
        assert!(e.message.ends_with("is 100 bytes; it does not fit in 99 bytes of guest RAM"), "{}", e.message);
        // An ELF file holds more than it loads: its loader, not the read, judges the fit.
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(100, 0);
        std::fs::write(&p, &elf).unwrap();
        assert_eq!(Image::read(&p, 64).unwrap().bytes.len(), 100);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        for p in ["/dev/zero", "/tmp"] {
            let e = Image::read(Path::new(p), 1 << 20).unwrap_err();
            assert!(e.message.ends_with("is not a regular file"), "{}", e.message);
        }
    }

    #[test]
    fn fit_check() {
        let img = Image { path: "k".into(), bytes: vec![0; 100] };
        assert!(img.check_fits("image", 0x1000, 0x2000).is_ok());
        assert!(img.check_fits("image", 0x1000, 0x1050).is_err());
        assert!(img.check_fits("image", u64::MAX, 0x1050).is_err());
    }
}
