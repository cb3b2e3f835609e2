//! `vmm`: a thin CLI. Parse arguments, pick a backend, run it, turn the outcome into an exit code.
mod cli;

use clap::Parser;
use cli::{Arch, BenchArgs, Cli, Command, InfoArgs, RunArgs};
use common::console::{restore_terminal, say, Console};
use common::error::EXIT_OK;
use common::image::Image;
use common::vm::{GuestExit, VmConfig};
use common::Result;

fn main() {
    // The terminal may be in raw mode; put it back even if something panics.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        default_hook(info);
        // A code of its own: Rust's 101 would read as a guest's status.
        std::process::exit(common::error::EXIT_INTERNAL);
    }));
    // Inside a lab host this binary is PID 1: then it is the init and never returns.
    lab::maybe_run_as_init();

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_for_usage(e),
    };
    let code = match cli.command {
        Command::Run(args) => run(&args),
        Command::Info(args) => info(&args),
        Command::Bench(args) => bench(&args),
        Command::Lab(args) => teaching::main(&args),
        Command::LabNative(args) => {
            teaching::native::main(args.arch == Arch::X86, args.lab, &args.workload, args.iterations)
        }
    }
    .unwrap_or_else(|e| {
        common::stdout_buffer::flush();
        restore_terminal();
        say(&format!("vmm: {e}"));
        e.exit_code()
    });
    common::stdout_buffer::flush();
    restore_terminal();
    std::process::exit(code);
}

/// `--help` and `--version` print as clap renders them; a usage error becomes one line, exit 2.
fn exit_for_usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        std::process::exit(EXIT_OK);
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        std::process::exit(common::error::EXIT_BAD_INPUT);
    }
    // clap's message runs until the blank line before its usage block; join it into one line.
    let text = e.render().to_string();
    let message: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let message = message.join(" ");
    say(&format!("vmm: {} (see vmm --help)", message.trim_start_matches("error: ")));
    std::process::exit(common::error::EXIT_BAD_INPUT);
}

fn run(args: &RunArgs) -> Result<i32> {
    cli::check_arch_options(args)?;
    let mem_size = match &args.mem {
        Some(s) => common::image::parse_size(s)?,
        None => match args.arch {
            Arch::X86 => cli::x86_default_mem(),
            Arch::Riscv => urvirt_riscv::config::DEFAULT_MEM,
        },
    };
    let timeout = args.timeout.as_deref().map(cli::parse_timeout).transpose()?;
    let disks = args.disk.iter().map(|d| cli::parse_disk(d)).collect::<Result<Vec<_>>>()?;
    // Open each disk once here, so a bad one is the same one-line error on every backend and
    // before a lab host boots (there qemu opens the file).
    for disk in &disks {
        common::virtio::block::Block::open(disk)?;
    }
    let gdb = args.gdb.as_deref().map(common::gdb::parse_addr).transpose()?;
    let gdb = gdb.map(|addr| common::gdb::GdbConfig { addr, wait: args.gdb_wait });
    let (trace, mem_file) = cli::trace_and_mem_file(args)?;
    // Checked (and sized) here too, so a bad one is refused before a lab host boots.
    if let Some(m) = &mem_file {
        common::mem_file::open(m, mem_size)?;
    }
    let vm = VmConfig {
        mem_size,
        timeout,
        console: Console::stdout(),
        jail: !args.no_seccomp,
        disks,
        stats_json: args.stats_json,
        gdb,
        trace,
        mem_file,
    };
    let image = Image::read(&args.image, mem_size)?;
    // Before the guest runs: starting it after the x86 vCPU thread (to take it off the guest's
    // critical path) hung 1 in 5 Linux boots in the x86 lab host, output stopped mid-line.
    common::stdout_buffer::start(vm.jail)?;
    let mut machine = match args.arch {
        Arch::X86 => cli::x86_vm(args, vm)?,
        Arch::Riscv => urvirt_riscv::new_vm(urvirt_riscv::RiscvConfig {
            vm,
            ecall_trap: args.ecall.unwrap_or(cli::Ecall::Auto).into(),
            stats: args.stats || args.stats_json,
        })?,
    };
    machine.load(&image)?;
    // The image is in guest RAM now; a 12 MB vmlinux must not stay in the monitor's RSS.
    drop(image);
    let outcome = machine.run()?;
    // All the guest printed comes before vmm's own lines.
    common::stdout_buffer::flush();
    restore_terminal();
    if args.stats && (outcome.stats.total_count() > 0 || !outcome.stats.notes.is_empty()) {
        say(outcome.stats.table().trim_end());
    }
    // A relayed lab run's inner vmm printed its own line already.
    if args.stats_json && !matches!(outcome.exit, GuestExit::Relayed(_)) {
        say(&outcome.stats.to_json());
    }
    if let GuestExit::Failed(why) = &outcome.exit {
        say(&format!("vmm: {why}"));
    }
    Ok(outcome.exit_code())
}

fn bench(args: &BenchArgs) -> Result<i32> {
    match (args.arch, args.linux, args.ecall.is_some()) {
        (Arch::Riscv, true, _) => return Err(common::Error::bad_input("--linux does not apply to --arch riscv")),
        (Arch::Riscv, _, _) if args.lab => {
            return Err(common::Error::bad_input("--lab does not apply to --arch riscv"))
        }
        (Arch::X86, _, true) => return Err(common::Error::bad_input("--ecall does not apply to --arch x86")),
        _ => {}
    }
    match args.arch {
        Arch::X86 => {
            // Through the lab the report arrives on the relayed stdout: nothing more to print.
            let report = cli::x86_bench(args)?;
            if !report.is_empty() {
                print_report(&report);
            }
            Ok(EXIT_OK)
        }
        Arch::Riscv => riscv_bench(args.ecall.unwrap_or(cli::Ecall::Auto).into()),
    }
}

/// On riscv64 Linux the benchmark runs here; elsewhere inside the lab host, like `vmm run`.
fn riscv_bench(ecall: urvirt_riscv::EcallTrap) -> Result<i32> {
    #[cfg(all(target_arch = "riscv64", target_os = "linux"))]
    {
        print_report(&urvirt_riscv::bench::run_benchmarks(ecall)?);
        Ok(EXIT_OK)
    }
    #[cfg(not(all(target_arch = "riscv64", target_os = "linux")))]
    {
        let config = urvirt_riscv::RiscvConfig {
            vm: VmConfig {
                mem_size: urvirt_riscv::config::DEFAULT_MEM,
                timeout: None,
                console: Console::stdout(),
                jail: true,
                ..VmConfig::default()
            },
            ecall_trap: ecall,
            stats: false,
        };
        let args = ["bench", "--arch", "riscv", "--ecall", ecall.as_str()].map(String::from).to_vec();
        Ok(urvirt_riscv::lab::run_inner(&config, &args, &[])?.exit_code())
    }
}

/// Prints a report; a closed stdout (`vmm info | head`) is not an error worth a panic.
fn print_report(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|_| out.flush());
}

fn info(args: &InfoArgs) -> Result<i32> {
    #[cfg(target_arch = "x86_64")]
    {
        if args.lab {
            let vm =
                VmConfig { mem_size: 0, timeout: None, console: Console::stdout(), jail: true, ..VmConfig::default() };
            return Ok(vmm_x86::lab::run_inner(&vm, &["info".to_string()], &[])?.exit_code());
        }
        // A host without KVM still hears about the lab, which needs none: the report says what
        // there is, then the error (exit 2) says what is missing.
        let kvm = vmm_x86::info();
        if let Ok(report) = &kvm {
            print_report(report);
        }
        print_report(&vmm_x86::lab::status());
        kvm.map(|_| EXIT_OK)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (EXIT_OK, args);
        Err(common::Error::bad_input("`vmm info` reports on KVM, which this build (not x86_64) does not use"))
    }
}
