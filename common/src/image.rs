//! Reading guest images from disk with the errors a user should see.
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A guest image read fully into memory (kernels and test binaries are small).
#[derive(Debug, Clone)]
pub struct Image {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl Image {
    /// Reads `path`; a missing, unreadable or empty file is bad input.
    pub fn read(path: &Path) -> Result<Image> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::bad_input(format!("cannot read image {}: {}", path.display(), io_reason(&e))))?;
        if bytes.is_empty() {
            return Err(Error::bad_input(format!("image {} is empty", path.display())));
        }
        Ok(Image { path: path.to_path_buf(), bytes })
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
        let e = Image::read(Path::new("/nonexistent/x.bin")).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_BAD_INPUT);
        assert!(e.message.contains("no such file"), "{}", e.message);
        let p = std::env::temp_dir().join(format!("vmm-empty-{}", std::process::id()));
        std::fs::write(&p, b"").unwrap();
        let e = Image::read(&p).unwrap_err();
        assert!(e.message.contains("is empty"));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn fit_check() {
        let img = Image { path: "k".into(), bytes: vec![0; 100] };
        assert!(img.check_fits("image", 0x1000, 0x2000).is_ok());
        assert!(img.check_fits("image", 0x1000, 0x1050).is_err());
        assert!(img.check_fits("image", u64::MAX, 0x1050).is_err());
    }
}
