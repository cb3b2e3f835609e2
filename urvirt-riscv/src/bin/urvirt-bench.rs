//! `urvirt-bench [auto|seccomp|sud]`: runs URVirt's benchmarks on a riscv64 Linux host.
//! The same code is what `vmm bench --arch riscv` reports; this binary lets the engine be
//! measured on its own (also as the lab host's /init, which re-runs it as a child).
fn main() {
    #[cfg(all(target_arch = "riscv64", target_os = "linux"))]
    {
        use urvirt_riscv::EcallTrap;
        urvirt_riscv::lab::maybe_run_as_init();
        let trap = match std::env::args().nth(1).as_deref() {
            None | Some("auto") => EcallTrap::Auto,
            Some("seccomp") => EcallTrap::Seccomp,
            Some("sud") => EcallTrap::Sud,
            Some(other) => {
                eprintln!("urvirt-bench: unknown ecall trap '{other}' (auto, seccomp or sud)");
                std::process::exit(2);
            }
        };
        match urvirt_riscv::bench::run_benchmarks(trap) {
            Ok(report) => print!("{report}"),
            Err(e) => {
                eprintln!("urvirt-bench: {e}");
                std::process::exit(e.exit_code());
            }
        }
    }
    #[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
    {
        eprintln!("urvirt-bench runs on riscv64 Linux only; on other hosts use `vmm bench --arch riscv`");
        std::process::exit(2);
    }
}
