//! `vmm lab` for real: the workloads on this host's KVM and under URVirt in the riscv lab
//! host, the table they fill, and the HTML report opened in headless Chromium.
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

/// The table's cells of the row for (phase, backend) (the workload cell is blank after its
/// first row), split on runs of two or more spaces.
fn row<'a>(table: &'a str, phase: &str, backend: &str) -> Option<Vec<&'a str>> {
    table.lines().find_map(|l| {
        let cells: Vec<&str> = l.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        let at = cells.iter().position(|c| *c == phase)?;
        (cells.get(at + 1) == Some(&backend)).then(|| cells[at..].to_vec())
    })
}

/// Checks every phase of every workload has its row for `backend`, with `events` events.
fn assert_all_rows(table: &str, backend: &str, workloads: &[(&str, &[(&str, &str)])], events: u64) {
    for (workload, phases) in workloads {
        assert!(table.lines().any(|l| l.starts_with(workload)), "no rows for {workload}:\n{table}");
        for (phase, _) in *phases {
            let cells = row(table, phase, backend).unwrap_or_else(|| panic!("no row {phase} / {backend}:\n{table}"));
            assert_eq!(cells[2], events.to_string(), "{phase} on {backend}:\n{table}");
        }
    }
}

/// The exits-or-signals-per-event cell of a row, as a number.
fn per_event(table: &str, phase: &str, backend: &str) -> f64 {
    let cells = row(table, phase, backend).unwrap_or_else(|| panic!("no row {phase} / {backend}:\n{table}"));
    cells[3].trim_end_matches(" sig").parse().unwrap_or_else(|_| panic!("{phase}: {:?}\n{table}", cells[3]))
}

/// Every event key names one phase of the same workload on each architecture (pure data).
#[test]
fn event_keys_pair_one_x86_phase_with_one_riscv_phase() {
    let keys = |w: &[(&'static str, &'static [(&'static str, &'static str)])]| {
        let mut k: Vec<(&str, &str)> =
            w.iter().flat_map(|(wl, p)| p.iter().filter(|(_, e)| !e.is_empty()).map(move |(_, e)| (*wl, *e))).collect();
        k.sort();
        k
    };
    let (x86, riscv) = (keys(vmm_x86::teach::WORKLOADS), keys(urvirt_riscv::teach::WORKLOADS));
    assert_eq!(x86, riscv);
    let mut unique = x86.clone();
    unique.dedup();
    assert_eq!(unique, x86);
}

#[test]
fn quick_run_on_both_backends_fills_the_table() {
    require_kvm();
    require_riscv_lab();
    artifact("guests/x86/lab-priv-reg.bin");
    let out = run_vmm(&["lab", "--arch", "both", "--x86-host", "kvm", "--iterations", "40"], 1200);
    assert_exit(&out, 0);
    let table = stdout(&out);
    assert_all_rows(&table, "x86-kvm", vmm_x86::teach::WORKLOADS, 40);
    assert_all_rows(&table, "riscv", urvirt_riscv::teach::WORKLOADS, 40);
    // Every console byte reaches vmm on both (an `out` exit; an SBI call's SIGSYS); every
    // trapped CSR read is a signal under URVirt; a syscall stays inside the guest on KVM.
    assert_eq!(per_event(&table, "out to debug port", "x86-kvm"), 1.0, "{table}");
    assert_eq!(per_event(&table, "sbi putchar", "riscv"), 1.0, "{table}");
    assert_eq!(per_event(&table, "csrr sscratch", "riscv"), 1.0, "{table}");
    assert_eq!(per_event(&table, "syscall+iretq", "x86-kvm"), 0.0, "{table}");
    assert_eq!(per_event(&table, "mmio read", "x86-kvm"), 1.0, "{table}");
    assert!(row(&table, "csrr sscratch", "riscv").unwrap()[3].ends_with(" sig"), "{table}");
    // Ratios pair phases by event: sbi putchar and csrw sscratch have no x86 counterpart; the x86 timer's ns/ev is
    // the tick period, not a cost, so neither it nor a ratio to it is shown.
    assert_eq!(row(&table, "sbi putchar", "riscv").unwrap()[5], "-", "{table}");
    assert_eq!(row(&table, "csrw sscratch", "riscv").unwrap()[5], "-", "{table}");
    assert_eq!(row(&table, "timer interrupt", "x86-kvm").unwrap()[4..6], ["-", "-"], "{table}");
    assert_eq!(row(&table, "timer interrupt", "riscv").unwrap()[5], "-", "{table}");
    // The ratio column is to x86-kvm, and every backend says where it was measured.
    assert!(table.lines().next().unwrap().contains("vs x86-kvm"), "{table}");
    assert!(table.contains("  x86-kvm  this host's /dev/kvm: "), "{table}");
    assert!(table.contains("  riscv    riscv64 Linux under QEMU TCG (the riscv lab host)"), "{table}");
    for backend in ["x86-kvm", "riscv"] {
        assert!(
            table.lines().any(|l| l.starts_with("compute with the guest's 100 Hz timer running reaches ")
                && l.contains(&format!(" of native on {backend} "))),
            "no compute figure for {backend}:\n{table}"
        );
    }
    // Progress went to stderr, one line per run.
    let err = stderr(&out);
    assert_eq!(err.matches("vmm lab: [").count(), 14, "{err}");
    assert!(err.contains("] compute on riscv (N=40) ... "), "{err}");
}

#[test]
fn x86_lab_host_is_a_backend_of_its_own() {
    require_x86_lab();
    artifact("guests/x86/lab-console-out.bin");
    let out =
        run_vmm(&["lab", "--arch", "x86", "--x86-host", "lab", "--only", "console-out", "--iterations", "20"], 900);
    assert_exit(&out, 0);
    let table = stdout(&out);
    assert_eq!(per_event(&table, "out to debug port", "x86-lab"), 1.0, "{table}");
    assert!(table.contains("x86-lab  SVM emulated by QEMU TCG"), "{table}");
}

/// Headless Chromium on `page`: (the DOM after load, its log on stderr), and a screenshot.
fn chromium(page: &Path, screenshot: &Path) -> (String, String) {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.is_file(),
        "MISSING PREREQUISITE: /usr/bin/chromium (Debian package chromium); run scripts/install-deps.sh"
    );
    let url = format!("file://{}", page.display());
    let headless = |extra: &[&str]| {
        let mut c = Command::new("timeout");
        c.args(["--kill-after=5", "120"]).arg(chromium);
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]).args(extra);
        c.arg(&url).stdin(Stdio::null());
        let out = c.output().expect("run chromium");
        assert!(out.status.success(), "chromium {extra:?}: {}", describe(&out));
        out
    };
    let dom = headless(&["--dump-dom"]);
    headless(&[&format!("--screenshot={}", screenshot.display()), "--window-size=1000,3000"]);
    (stdout(&dom), stderr(&dom))
}

#[test]
fn report_opens_in_chromium_with_one_chart_per_workload() {
    require_kvm();
    artifact("guests/x86/lab-compute.bin");
    let dir: PathBuf = std::env::temp_dir().join(format!("vmm-test-{}-lab-report", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out =
        run_vmm(&["lab", "--arch", "x86", "--x86-host", "kvm", "--iterations", "30", "--report", path_str(&dir)], 600);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains(&format!("vmm lab: report written to {}", dir.join("index.html").display())));
    let workloads = vmm_x86::teach::WORKLOADS.len();
    let shot = dir.join("screenshot.png");
    let (dom, log) = chromium(&dir.join("index.html"), &shot);
    // The page's script ran to the end, and saw one chart per workload.
    assert!(dom.contains(&format!("data-charts=\"{workloads}\"")) && dom.contains("data-loaded=\"yes\""), "{dom}");
    assert_eq!(dom.matches("<svg").count(), workloads, "one SVG chart per workload");
    for (workload, _) in vmm_x86::teach::WORKLOADS {
        assert!(dom.contains(&format!("id=\"chart-{workload}\"")), "no chart for {workload}");
    }
    // The console holds the page's one message and nothing else: no error, no exception.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert_eq!(console.len(), 1, "{log}");
    assert!(console[0].contains(&format!("\"vmm lab report loaded: {workloads} charts\"")), "{log}");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.len() > 10_000 && png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} bytes", png.len());
    // The raw data: one CSV line per phase (plus the header), and the same in the JSON.
    let phases: usize = vmm_x86::teach::WORKLOADS.iter().map(|(_, p)| p.len()).sum();
    let csv = std::fs::read_to_string(dir.join("lab.csv")).unwrap();
    assert_eq!(csv.lines().count(), phases + 1, "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    assert_eq!(json["vmm_lab"]["measures"].as_array().unwrap().len(), phases);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_options_are_one_line_and_exit_2() {
    require_kvm();
    let cases: &[(&[&str], &str)] = &[
        (&["lab", "--only", "cpuid"], "vmm: --only: no workload 'cpuid' (workloads: console-out, priv-reg, "),
        (&["lab", "--iterations", "0"], "vmm: --iterations must be at least 1"),
        (
            &["lab", "--arch", "x86", "--x86-host", "kvm", "--guests", "/nonexistent"],
            "vmm: the lab workload image /nonexistent/x86/lab-",
        ),
        (&["lab-native", "--arch", "riscv", "--lab", "compute", "5"], "vmm: lab-native: --lab applies to --arch x86"),
        (&["lab", "--report", "/dev/null/report"], "vmm: --report: cannot make /dev/null/report: "),
    ];
    for (args, start) in cases {
        let out = run_vmm(args, 60);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.starts_with(start) && err.lines().count() == 1, "{args:?}: {}", describe(&out));
    }
}
