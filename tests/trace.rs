//! `--trace FILE [--trace-kinds ...]`: one line per exit (x86, real /dev/kvm) or trap (RISC-V,
//! in the real riscv64 lab host), agreeing with `--stats`.
mod support;
use support::*;

/// The trace's lines without the header, split into their five tab-separated fields.
fn read_trace(path: &std::path::Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no trace at {}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("# time_us\tkind\ttarget\tvalue\thandling_ns"), "{text}");
    lines
        .map(|l| {
            let fields: Vec<String> = l.split('\t').map(String::from).collect();
            assert_eq!(fields.len(), 5, "five fields: {l:?}");
            assert!(fields[0].parse::<f64>().is_ok() && fields[4].parse::<u64>().is_ok(), "{l:?}");
            fields
        })
        .collect()
}

fn trace_path(test: &str) -> std::path::PathBuf {
    scratch_file(test, "run.trace", b"")
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_hello_traces_one_line_per_out_and_agrees_with_stats() {
    require_kvm();
    let trace = trace_path("x86-hello");
    let hello = artifact("guests/x86/hello.bin");
    let out = run_vmm(&["run", "--arch", "x86", "--stats", "--trace", path_str(&trace), path_str(&hello)], 30);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "Hello\n");
    let lines = read_trace(&trace);
    let outs: Vec<&Vec<String>> = lines.iter().filter(|f| f[1] == "io-out debug-0xf1").collect();
    assert_eq!(outs.len(), "Hello\n".len(), "one line per byte printed: {lines:?}");
    assert_eq!(row_count(&stderr(&out), "io-out debug-0xf1"), Some(outs.len() as u64), "{}", describe(&out));
    for (f, byte) in outs.iter().zip("Hello\n".bytes()) {
        assert_eq!(f[2], "port=0xf1");
        assert_eq!(f[3], format!("{byte:#x}"), "the value is the byte written");
    }
    assert_eq!(lines.last().map(|f| (f[1].as_str(), f[2].as_str())), Some(("hlt", "-")), "{lines:?}");
    assert_eq!(lines.len(), 7, "6 outs and a hlt: {lines:?}");
    let times: Vec<f64> = lines.iter().map(|f| f[0].parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "times grow: {times:?}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_trace_kinds_limit_the_lines() {
    require_kvm();
    let trace = trace_path("x86-kinds");
    let hello = artifact("guests/x86/hello.bin");
    let out = run_vmm(&["run", "--trace", path_str(&trace), "--trace-kinds", "hlt", path_str(&hello)], 30);
    assert_exit(&out, 0);
    let lines = read_trace(&trace);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0][1], "hlt");
    // A kind names the rows it starts: "io-out" takes "io-out debug-0xf1".
    let out = run_vmm(&["run", "--trace", path_str(&trace), "--trace-kinds", "io-out", path_str(&hello)], 30);
    assert_exit(&out, 0);
    assert_eq!(read_trace(&trace).len(), 6);
}

#[test]
fn bad_trace_options_are_one_line_errors() {
    let hello = artifact("guests/x86/hello.bin");
    let out = run_vmm(&["run", "--trace", "/nonexistent-dir/t.trace", path_str(&hello)], 30);
    assert_exit(&out, 2);
    assert!(stderr(&out).starts_with("vmm: --trace /nonexistent-dir/t.trace: "), "{}", describe(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", describe(&out));
    let out = run_vmm(&["run", "--trace-kinds", "hlt", path_str(&hello)], 30);
    assert_exit(&out, 2);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", describe(&out));
    let trace = trace_path("bad-kinds");
    let out = run_vmm(&["run", "--trace", path_str(&trace), "--trace-kinds", "hlt,,io-out", path_str(&hello)], 30);
    assert_exit(&out, 2);
    assert!(stderr(&out).starts_with("vmm: bad --trace-kinds 'hlt,,io-out': "), "{}", describe(&out));
}

/// A trace that cannot be written (a full disk: /dev/full) is one warning line; the guest's
/// result stays: its exit code, its failure line, --stats.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_a_failing_trace_write_keeps_the_guests_result() {
    require_kvm();
    let warning = "vmm: warning: --trace /dev/full: writing the trace failed: ";
    let out = run_vmm(&["run", "--stats", "--trace", "/dev/full", path_str(&artifact("guests/x86/hello.bin"))], 30);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "Hello\n");
    let err = stderr(&out);
    assert_eq!(err.lines().filter(|l| l.starts_with(warning)).count(), 1, "{}", describe(&out));
    assert!(row_count(&err, "io-out debug-0xf1").is_some(), "--stats is still printed: {}", describe(&out));
    let out = run_vmm(&["run", "--trace", "/dev/full", path_str(&artifact("guests/x86/badins.bin"))], 30);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.lines().any(|l| l.starts_with(warning)), "{}", describe(&out));
    assert!(err.contains("guest read of unknown I/O port 0x99"), "the failure line stays: {}", describe(&out));
}

/// The check before the run opens nothing: a FIFO nobody reads is not blocked on, an existing
/// file is not truncated when the run is refused for another reason.
#[test]
fn the_trace_check_opens_nothing() {
    let dir = std::env::temp_dir().join(format!("vmm-trace-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let kept = dir.join("kept.trace");
    std::fs::write(&kept, "old trace\n").unwrap();
    let missing = dir.join("missing.bin");
    for trace in [&fifo, &kept] {
        // The image is missing: the run is refused after the trace check.
        let out = run_vmm(&["run", "--trace", path_str(trace), path_str(&missing)], 30);
        assert_exit(&out, 2);
        assert!(!stderr(&out).contains("--trace"), "the trace path passed the check: {}", describe(&out));
    }
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old trace\n", "the check truncated the file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn riscv_hello_traces_one_line_per_sbi_call() {
    require_riscv_lab();
    let trace = trace_path("riscv-hello");
    let hello = artifact("guests/riscv/hello.bin");
    let out = run_vmm(&["run", "--arch", "riscv", "--stats", "--trace", path_str(&trace), path_str(&hello)], 180);
    assert_exit(&out, 0);
    let text = "I wrote this with SBI calls\n";
    assert_eq!(stdout(&out), text);
    let lines = read_trace(&trace);
    let sbi: Vec<&Vec<String>> = lines.iter().filter(|f| f[1].starts_with("sigsys sbi ")).collect();
    let putchar: Vec<&&Vec<String>> = sbi.iter().filter(|f| f[1] == "sigsys sbi legacy-putchar").collect();
    assert_eq!(putchar.len(), text.len(), "one line per character: {lines:?}");
    assert_eq!(row_count(&stderr(&out), "sigsys sbi legacy-putchar"), Some(text.len() as u64), "{}", describe(&out));
    for (f, byte) in putchar.iter().zip(text.bytes()) {
        assert_eq!(f[2], "eid=0x1 fid=0x0");
        assert_eq!(f[3], format!("{byte:#x}"), "a0 is the character");
    }
    assert_eq!(sbi.len(), text.len() + 1, "and the shutdown: {lines:?}");
    assert_eq!(sbi.last().map(|f| f[2].as_str()), Some("eid=0x8 fid=0x0"));
    // --trace-kinds passes through the lab host too.
    let out = run_vmm(
        &[
            "run",
            "--arch",
            "riscv",
            "--trace",
            path_str(&trace),
            "--trace-kinds",
            "sigsys sbi legacy-shutdown",
            path_str(&hello),
        ],
        180,
    );
    assert_exit(&out, 0);
    let lines = read_trace(&trace);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0][1], "sigsys sbi legacy-shutdown");
}

/// A trace far larger than the tracer's 64 KiB buffer: the buffer is written out from inside
/// the signal handler, under the guest thread's jail, many times over, and no line is lost.
#[test]
fn riscv_trace_larger_than_its_buffer_agrees_with_stats() {
    require_riscv_lab();
    let trace = trace_path("riscv-priv-reg");
    let guest = artifact("guests/riscv/lab-priv-reg.bin");
    let out = run_vmm(&["run", "--arch", "riscv", "--stats", "--trace", path_str(&trace), path_str(&guest)], 300);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("lab priv-reg done N=10000"), "{}", describe(&out));
    let size = std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0);
    assert!(size > 8 * (64 << 10), "the trace ({size} bytes) is many buffers long");
    let lines = read_trace(&trace);
    let stats = stderr(&out);
    // One line per trap: as many as --stats counted traps, and per kind as many as its row.
    let traps = row_count(&stats, "trap from s-mode").unwrap_or(0) + row_count(&stats, "trap from u-mode").unwrap_or(0);
    assert_eq!(lines.len() as u64, traps, "{stats}");
    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    for f in &lines {
        *kinds.entry(f[1].as_str()).or_default() += 1;
    }
    assert_eq!(kinds.get("sigill csrrw"), Some(&10_000), "the N csrw sscratch: {kinds:?}");
    for (kind, n) in &kinds {
        assert_eq!(row_count(&stats, kind), Some(*n), "{kind}: {stats}");
    }
}
