//! Not a test: a way to run the x86 benchmark before `vmm bench --arch x86` exists, and to
//! keep it compiling. Run with
//! `cargo test --release --test x86_bench -- --ignored --nocapture`.
#![cfg(target_arch = "x86_64")]
mod support;

#[test]
#[ignore = "a benchmark, not a test: run explicitly with --ignored"]
fn x86_bench() {
    support::require_kvm();
    let mut opts = vmm_x86::bench::BenchOptions::in_repo(&support::root()).unwrap();
    // current_exe() here is the test harness; spawn the real vmm binary instead.
    opts.vmm = env!("CARGO_BIN_EXE_vmm").into();
    println!("{}", vmm_x86::bench::run(&opts).unwrap());
}
