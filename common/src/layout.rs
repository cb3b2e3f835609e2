//! Where the running vmm finds what set-up built beside it (guests, lab kernels, the other
//! architecture's vmm): the cargo `target/` directory that holds the executable.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The `target/` directory of the running vmm (see [`target_dir_of`]).
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::bad_input(format!("cannot find the vmm binary: {e}")))?;
    Ok(target_dir_of(&exe))
}

/// The `target/` directory of the vmm at `exe`: cargo puts it at `target/<profile>/vmm`, or at
/// `target/<triple>/<profile>/vmm` when it builds for a named target (as .cargo/config.toml
/// asks for x86_64, to link it statically). A binary elsewhere gets its own directory's parent.
pub fn target_dir_of(exe: &Path) -> PathBuf {
    let profile_parent = exe.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let is_triple = profile_parent.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("-linux-"));
    match (is_triple, profile_parent.parent()) {
        (true, Some(target)) => target.to_path_buf(),
        _ => profile_parent.to_path_buf(),
    }
}

/// The repository the running vmm was built in (the parent of its `target/`), if it looks like one.
pub fn repo_root() -> Option<PathBuf> {
    let target = target_dir().ok()?;
    target.parent().filter(|r| r.join("benches").is_dir()).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_cargo_layouts_lead_to_target() {
        for exe in [
            "/r/target/release/vmm",
            "/r/target/debug/vmm",
            "/r/target/x86_64-unknown-linux-musl/release/vmm",
            "/r/target/x86_64-unknown-linux-gnu/release/vmm",
            "/r/target/riscv64gc-unknown-linux-gnu/debug/vmm",
        ] {
            assert_eq!(target_dir_of(Path::new(exe)), Path::new("/r/target"), "{exe}");
        }
        assert_eq!(target_dir_of(Path::new("/usr/local/bin/vmm")), Path::new("/usr/local"));
    }
}
