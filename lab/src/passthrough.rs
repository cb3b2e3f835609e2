//! What a lab host carries for `--trace` and `--mem-file`, whose files live on the outer machine.
//!
//! - `--mem-file`: the file becomes one more virtio-blk disk of the lab host, with serial
//!   `vmm-mem`; init links it as [`MEM_LINK`] and the inner vmm maps that block device (shared
//!   with `--mem-share`: its page cache is the disk; init syncs it before reporting the exit,
//!   as for `--disk`). The outer vmm has checked and sized the file before booting.
//! - `--trace`: the inner vmm writes [`TRACE_FILE`] in the lab's RAM; when it has ended, init
//!   sends the file in `T` frames before the exit frame, and the outer vmm writes them to the
//!   user's file. A trace larger than the lab host's spare RAM is cut there.
use common::vm::VmConfig;
use common::{Error, Result};
use std::io::Write;

/// Where the inner vmm writes its trace (in the initramfs, which is RAM).
pub const TRACE_FILE: &str = "/vmm-trace";
/// Where init links the lab host's disk that is the user's `--mem-file`.
pub const MEM_LINK: &str = "/dev/vmm-mem";
/// That disk's serial.
pub const MEM_SERIAL: &str = "vmm-mem";

/// The inner vmm's `--trace`/`--trace-kinds`/`--mem-file`/`--mem-share` options.
pub fn inner_args(vm: &VmConfig) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(t) = &vm.trace {
        args.extend(["--trace".to_string(), TRACE_FILE.to_string()]);
        if !t.kinds.is_empty() {
            args.extend(["--trace-kinds".to_string(), t.kinds.join(",")]);
        }
    }
    if let Some(m) = &vm.mem_file {
        args.extend(["--mem-file".to_string(), MEM_LINK.to_string()]);
        if m.shared {
            args.push("--mem-share".into());
        }
    }
    args
}

/// QEMU's arguments for the `--mem-file` disk (read-only without --mem-share: then the
/// inner vmm only reads it).
pub fn qemu_args(disk_device: &str, vm: &VmConfig) -> Result<Vec<String>> {
    let Some(m) = &vm.mem_file else { return Ok(Vec::new()) };
    let path = std::fs::canonicalize(&m.path)
        .map_err(|e| Error::bad_input(format!("--mem-file {}: {}", m.path.display(), common::image::io_reason(&e))))?;
    // QEMU's option syntax: a comma inside a value is written twice.
    let file = path.to_string_lossy().replace(',', ",,");
    let readonly = if m.shared { "" } else { ",readonly=on" };
    Ok(vec![
        "-drive".into(),
        format!("file={file},format=raw,if=none,id=vmmmem{readonly}"),
        "-device".into(),
        format!("{disk_device},drive=vmmmem,serial={MEM_SERIAL}"),
    ])
}

/// The outer side's trace file: created before booting, filled from `T` frames.
pub struct TraceOut(Option<std::fs::File>);

impl TraceOut {
    pub fn create(vm: &VmConfig) -> Result<TraceOut> {
        let Some(t) = &vm.trace else { return Ok(TraceOut(None)) };
        let file = std::fs::File::create(&t.path)
            .map_err(|e| Error::bad_input(format!("--trace {}: {}", t.path.display(), common::image::io_reason(&e))))?;
        Ok(TraceOut(Some(file)))
    }

    pub fn write(&mut self, bytes: &[u8]) {
        if let Some(f) = self.0.as_mut() {
            if f.write_all(bytes).is_err() {
                common::console::say("vmm: --trace: writing the trace failed; the rest is dropped");
                self.0 = None;
            }
        }
    }
}

/// init: the inner vmm's trace, if it wrote one, for the `T` frames.
pub fn take_trace() -> Option<Vec<u8>> {
    std::fs::read(TRACE_FILE).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::mem_file::MemFileConfig;
    use common::trace::TraceConfig;

    #[test]
    fn the_inner_vmm_gets_the_lab_hosts_paths() {
        let vm = VmConfig {
            trace: Some(TraceConfig { path: "/x/t".into(), kinds: vec!["sigsys sbi".into(), "sigill".into()] }),
            mem_file: Some(MemFileConfig { path: "/x/ram".into(), shared: true }),
            ..VmConfig::default()
        };
        assert_eq!(
            inner_args(&vm).join(" "),
            "--trace /vmm-trace --trace-kinds sigsys sbi,sigill --mem-file /dev/vmm-mem --mem-share"
        );
        assert!(inner_args(&VmConfig::default()).is_empty());
    }
}
