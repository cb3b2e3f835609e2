//! Lab workload images and their parameter block.
//!
//! Every workload image holds 16 bytes: the ASCII magic `VMMLABN\0` and a little-endian u64,
//! the number of events N each phase makes. The guest reads N from there, so `--iterations`
//! needs no rebuild: `vmm lab` copies the image with another N written after the magic.
use common::{Error, Result};
use std::path::{Path, PathBuf};

/// What marks the parameter block.
pub const MAGIC: &[u8; 8] = b"VMMLABN\0";

/// The workloads, in the order `vmm lab` runs and shows them.
pub const NAMES: &[&str] = &["console-out", "priv-reg", "page-touch", "timer", "syscall", "mmio", "compute"];

/// Where N sits in `image`: right after the one magic. Two magics would leave it unclear
/// which one the guest reads, so that is refused too.
pub fn param_offset(image: &[u8], what: &str) -> Result<usize> {
    let mut found = image.windows(MAGIC.len()).enumerate().filter(|(_, w)| *w == MAGIC).map(|(i, _)| i);
    let first = found.next();
    let (Some(at), None) = (first, found.next()) else {
        let why = if first.is_none() { "no" } else { "more than one" };
        return Err(Error::bad_input(format!("{what}: {why} VMMLABN parameter block (is it a lab workload image?)")));
    };
    let offset = at + MAGIC.len();
    if offset + 8 > image.len() {
        return Err(Error::bad_input(format!("{what}: the VMMLABN parameter block is cut off at the end")));
    }
    Ok(offset)
}

/// The N baked into `image`.
pub fn iterations(image: &[u8], what: &str) -> Result<u64> {
    let at = param_offset(image, what)?;
    Ok(u64::from_le_bytes(image[at..at + 8].try_into().expect("8 bytes")))
}

/// A copy of `image` with N set to `n`.
pub fn patch(image: &[u8], n: u64, what: &str) -> Result<Vec<u8>> {
    let at = param_offset(image, what)?;
    let mut copy = image.to_vec();
    copy[at..at + 8].copy_from_slice(&n.to_le_bytes());
    Ok(copy)
}

/// `<guests>/<arch>/lab-<workload>.bin`, where the build scripts put them.
pub fn image_path(guests: &Path, arch_dir: &str, workload: &str) -> PathBuf {
    guests.join(arch_dir).join(format!("lab-{workload}.bin"))
}

/// The image a run uses, and its N: the built image itself, or (with `iterations`) a patched
/// copy in `scratch`.
pub fn prepare(image: &Path, iterations: Option<u64>, scratch: &Path, copy_name: &str) -> Result<(PathBuf, u64)> {
    let what = image.display().to_string();
    let bytes = std::fs::read(image).map_err(|e| {
        Error::bad_input(format!(
            "cannot read the lab workload {what}: {}; run `scripts/setup.sh` (it builds the guests)",
            common::image::io_reason(&e)
        ))
    })?;
    let Some(n) = iterations else {
        return Ok((image.to_path_buf(), self::iterations(&bytes, &what)?));
    };
    let copy = scratch.join(copy_name);
    std::fs::write(&copy, patch(&bytes, n, &what)?)
        .map_err(|e| Error::bad_input(format!("cannot write {}: {e}", copy.display())))?;
    Ok((copy, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(n: u64) -> Vec<u8> {
        let mut v = vec![0x90u8; 37];
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&n.to_le_bytes());
        v.extend_from_slice(&[0xf4; 5]);
        v
    }

    #[test]
    fn reads_and_patches_n_after_the_magic() {
        let img = image(10_000);
        assert_eq!(param_offset(&img, "t").unwrap(), 45);
        assert_eq!(iterations(&img, "t").unwrap(), 10_000);
        let patched = patch(&img, 0x0102_0304_0506_0708, "t").unwrap();
        assert_eq!(iterations(&patched, "t").unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(&patched[45..53], &[8, 7, 6, 5, 4, 3, 2, 1], "little-endian");
        assert_eq!(patched.len(), img.len());
        assert_eq!(&patched[..45], &img[..45], "nothing else changes");
        assert_eq!(&patched[53..], &img[53..]);
    }

    #[test]
    fn refuses_images_without_one_whole_block() {
        let e = iterations(&[0u8; 64], "x.bin").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.message, "x.bin: no VMMLABN parameter block (is it a lab workload image?)");
        let mut two = image(1);
        two.extend_from_slice(&image(2));
        assert!(patch(&two, 5, "t").unwrap_err().message.contains("more than one"));
        let mut cut = b"abc".to_vec();
        cut.extend_from_slice(MAGIC);
        cut.extend_from_slice(&[1, 2, 3]);
        assert!(iterations(&cut, "t").unwrap_err().message.contains("cut off"));
    }

    #[test]
    fn prepare_copies_only_when_asked() {
        let dir = std::env::temp_dir().join(format!("teaching-prepare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("lab-x.bin");
        std::fs::write(&src, image(7)).unwrap();
        assert_eq!(prepare(&src, None, &dir, "copy.bin").unwrap(), (src.clone(), 7));
        let (copy, n) = prepare(&src, Some(3), &dir, "copy.bin").unwrap();
        assert_eq!((copy.file_name().unwrap().to_str().unwrap(), n), ("copy.bin", 3));
        assert_eq!(iterations(&std::fs::read(&copy).unwrap(), "c").unwrap(), 3);
        assert_eq!(iterations(&std::fs::read(&src).unwrap(), "s").unwrap(), 7, "the built image is untouched");
        let e = prepare(&dir.join("missing.bin"), None, &dir, "c").unwrap_err();
        assert!(e.message.contains("scripts/setup.sh"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
