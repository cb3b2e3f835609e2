//! Shared helpers for integration tests: they run the real `vmm` binary on real guests.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod gdb;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A built artifact under `target/` that set-up makes. A missing one fails the test loudly:
/// a prerequisite that is not there is never a pass.
pub fn artifact(rel: &str) -> PathBuf {
    let p = root().join("target").join(rel);
    assert!(
        p.exists(),
        "MISSING PREREQUISITE: {} does not exist. Run `scripts/setup.sh` first (it builds guests, kernels and the lab host).",
        p.display()
    );
    p
}

/// Fails loudly unless /dev/kvm can be opened read-write.
pub fn require_kvm() {
    let ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    assert!(
        ok,
        "MISSING PREREQUISITE: /dev/kvm cannot be opened read-write on this machine; the x86 tests need real KVM"
    );
}

/// The vmm binary cargo built for this test run.
pub fn vmm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmm"));
    c.stdin(Stdio::null());
    c
}

/// Runs `vmm` with `args`, with a hard wall-clock limit so no test can hang.
pub fn run_vmm(args: &[&str], limit_secs: u64) -> Output {
    run_vmm_env(args, limit_secs, &[])
}

/// [`run_vmm`] with extra environment variables (e.g. VMM_RISCV_LAB).
pub fn run_vmm_env(args: &[&str], limit_secs: u64, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("timeout");
    c.arg("--kill-after=5").arg(limit_secs.to_string()).arg(env!("CARGO_BIN_EXE_vmm")).args(args);
    c.envs(env.iter().copied());
    c.stdin(Stdio::null());
    let out = c.output().expect("spawn vmm");
    assert_ne!(out.status.code(), Some(124), "vmm hung past {limit_secs}s: {}", describe(&out));
    out
}

/// [`run_vmm_env`] with stdin a pipe (closed at once) instead of /dev/null: vmm starts its
/// console input thread only when stdin can deliver something.
pub fn run_vmm_env_piped_stdin(args: &[&str], limit_secs: u64, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("timeout");
    c.arg("--kill-after=5").arg(limit_secs.to_string()).arg(env!("CARGO_BIN_EXE_vmm")).args(args);
    c.envs(env.iter().copied());
    c.stdin(Stdio::piped());
    let out = c.output().expect("spawn vmm");
    assert_ne!(out.status.code(), Some(124), "vmm hung past {limit_secs}s: {}", describe(&out));
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn describe(o: &Output) -> String {
    format!("status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", o.status.code(), stdout(o), stderr(o))
}

/// Writes `bytes` to a fresh file in a per-test scratch folder and returns its path.
pub fn scratch_file(test: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one line `vmm run --arch riscv` prints about the lab host on a non-riscv64 machine.
pub const LAB_NOTICE: &str = "vmm: running the riscv64 build inside riscv64 Linux under qemu-system-riscv64";

pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
}

/// Through the lab host the user sees the guest and one line about the lab, never OpenSBI or
/// the kernel.
pub fn assert_no_plumbing(out: &Output) {
    let (o, e) = (stdout(out), stderr(out));
    assert!(e.starts_with(LAB_NOTICE), "the lab notice comes first on stderr: {}", describe(out));
    assert_eq!(e.matches(LAB_NOTICE).count(), 1, "{}", describe(out));
    for noise in ["OpenSBI", "Linux version", "Run /init", "Power down", "\x1b_LAB"] {
        assert!(!o.contains(noise) && !e.contains(noise), "{noise:?} leaked: {}", describe(out));
    }
}

/// The riscv64 build of vmm the lab host boots, relative to `target/`.
pub const RISCV_ENGINE: &str = "riscv64gc-unknown-linux-gnu/release/vmm";

/// Builds the riscv64 vmm (and the RISC-V guests) from the current sources. Plain `cargo test`
/// builds only this host's vmm; without this the lab tests would boot whatever riscv64 vmm
/// set-up left behind, however old. Cargo rebuilds only what changed, and locks the build
/// directory itself, so test processes running at once wait for each other.
pub fn build_riscv_engine() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(root())
        .args(["build", "--release", "--target", "riscv64gc-unknown-linux-gnu", "--bin", "vmm"])
        .stdin(Stdio::null())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cannot build the riscv64 vmm for the lab (cargo build --release --target riscv64gc-unknown-linux-gnu --bin vmm): {}",
        describe(&out)
    );
    let guests = Command::new("bash")
        .arg(root().join("scripts/build-riscv-guests.sh"))
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("run build-riscv-guests.sh");
    assert!(guests.status.success(), "cannot build the RISC-V guests: {}", describe(&guests));
}

/// The lab host, with a riscv64 vmm and guests built from the current sources: built once per
/// test process (the first caller builds, the others wait for it).
pub fn require_riscv_lab() {
    static BUILT: OnceLock<()> = OnceLock::new();
    artifact("riscv-lab/Image");
    BUILT.get_or_init(build_riscv_engine);
    artifact(RISCV_ENGINE);
}

/// The count column of a `--stats` row (`kind  count  mean  max`), if the row is there.
pub fn row_count(stats: &str, row: &str) -> Option<u64> {
    stats.lines().find_map(|l| l.strip_prefix(row)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
}

/// The one line `--lab` prints about the x86 lab host before anything else.
pub const X86_LAB_NOTICE: &str = "vmm: running the static x86_64 build inside x86_64 Linux on an emulated AMD-V CPU";

/// The lab kernel (set-up builds it) and a static x86_64 vmm built from the current sources,
/// once per test process: plain `cargo test` builds only the normal vmm, and the lab would
/// otherwise run whatever static vmm set-up left behind. The build is set-up's own step.
pub fn require_x86_lab() {
    static BUILT: OnceLock<()> = OnceLock::new();
    artifact("x86-lab/bzImage");
    BUILT.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root().join("scripts/build-x86-lab.sh"))
            .arg("vmm")
            .current_dir(root())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/build-x86-lab.sh");
        assert!(out.status.success(), "cannot build the static x86_64 vmm for the lab: {}", describe(&out));
    });
    artifact("x86_64-unknown-linux-musl/release/vmm");
}

/// A scratch disk of `sectors` whose sector s starts with the line "sector s of the vmm test disk".
pub fn test_disk(test: &str, sectors: usize) -> PathBuf {
    let mut bytes = vec![0u8; sectors * 512];
    for (s, sector) in bytes.chunks_mut(512).enumerate() {
        let line = format!("sector {s} of the vmm test disk\n");
        sector[..line.len()].copy_from_slice(line.as_bytes());
    }
    scratch_file(test, "disk.img", &bytes)
}

/// What guests/x86/virtio.bin prints on a writable disk made by [`test_disk`].
pub const X86_VIRTIO_GUEST_LINES: &str =
    "virtio-blk read status 0\nsector 0 of the vmm test disk\nvirtio-blk write status 0\nvirtio-blk flush status 0\n";
